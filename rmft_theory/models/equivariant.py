"""Arm-equivariant models: one shared per-arm temporal model whose parameters do not depend on d.

**Tokens.** Arm a at round i is described by its own reward and permutation-invariant statistics
of the round, ``f_{i,a} = [R_{i,a}, mean_b R_{i,b}, max_b R_{i,b}, min_b R_{i,b}]`` (F = 4 for any
d). The stream is shifted along time exactly as in ``linear_attention`` (a start token at t = 1,
round t−1's features at t), so ``g_{t,a}`` depends on ``R_1..R_{t−1}`` only.

**Temporal model.** The same causal attention blocks (softmax for ``EquivariantTransformer``,
linear for ``EquivariantLinearAttention``) run along time on every arm's sequence, with weights
shared across arms (``vmap`` over the arm axis).

**Cross-arm mixing** (DeepSets). After each block, ``x_{t,a} ← x_{t,a} + φ(mean_b x_{t,b})`` with
``φ = Dense ∘ N`` (Transformer) or a linear map (linear attention).

**Output.** One shared scalar per arm, ``g_{t,a} = u · N(x_{t,a}) + c`` (or the output slot).

**Equivariance.** For a permutation matrix P of the arms, the features satisfy ``f(R P) = f(R) P``
(pooled statistics are invariant), every per-arm map is shared, and means over arms are
invariant; hence ``g(R P) = g(R) P``. No parameter shape involves d, so parameters initialised
for one number of arms apply to any other.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rmft_theory.models.linear_attention import (
    EMBED_INIT,
    attention_layer,
    check_linear_attention_options,
    fan_in_normal,
    shift_right,
)
from rmft_theory.models.transformer import (
    TransformerBlock,
    check_transformer_options,
    make_norm,
    sinusoidal_positions,
)
from rmft_theory.validation import check_positive_int

N_ARM_FEATURES = 4


def arm_features(rewards_TxD: jax.Array) -> jax.Array:
    """Per-arm features ``[R_{t,a}, mean_b R_{t,b}, max_b R_{t,b}, min_b R_{t,b}]``, (T, d, 4)."""
    pooled_TxDx3 = jnp.broadcast_to(
        jnp.stack(
            [
                jnp.mean(rewards_TxD, axis=-1),
                jnp.max(rewards_TxD, axis=-1),
                jnp.min(rewards_TxD, axis=-1),
            ],
            axis=-1,
        )[:, None, :],
        (*rewards_TxD.shape, 3),
    )
    return jnp.concatenate([rewards_TxD[..., None], pooled_TxDx3], axis=-1)


def _check_history(rewards_TxD: jax.Array) -> None:
    """Raise a ValueError unless the rewards are one (T, d) history (any d)."""
    if rewards_TxD.ndim != 2:
        raise ValueError(
            f"rewards_TxD must have shape (T, d) (one history; vmap to batch), "
            f"got {rewards_TxD.shape}"
        )


class ArmMixing(nn.Module):
    """DeepSets cross-arm update ``φ(mean_b N(x_{t,b}))`` of a (T, d, W) stream, same per arm."""

    norm: str = "layer"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_TxDxW: jax.Array) -> jax.Array:
        h = make_norm(self.norm, self.param_dtype, name="norm")(x_TxDxW)
        pooled_Tx1xW = jnp.mean(h, axis=1, keepdims=True)
        update = nn.Dense(x_TxDxW.shape[-1], param_dtype=self.param_dtype, name="dense")(
            pooled_Tx1xW
        )
        return jnp.broadcast_to(update, x_TxDxW.shape)


class EquivariantTransformer(nn.Module):
    """Arm-equivariant causal softmax Transformer (module docstring); ``apply -> g_TxD``.

    Attributes:
      d: number of arms the registry built it for; the module itself accepts any d.
      width, depth, heads, head_dim, mlp_ratio, positional, norm: as in ``CausalTransformer``.
      arm_mixing: add the DeepSets cross-arm update after each block.
      param_dtype: parameter dtype.
    """

    d: int
    width: int = 32
    depth: int = 2
    heads: int = 2
    head_dim: int | None = None
    mlp_ratio: int = 4
    positional: str = "none"
    norm: str = "layer"
    arm_mixing: bool = True
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        check_positive_int("d", self.d)
        check_transformer_options(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, rewards_TxD: jax.Array) -> jax.Array:
        _check_history(rewards_TxD)
        x = nn.Dense(self.width, param_dtype=self.param_dtype, name="embed")(
            arm_features(rewards_TxD)
        )
        start_W = self.param("start", nn.initializers.normal(0.02), (self.width,), self.param_dtype)
        x_TxDxW = shift_right(x, start_W)
        if self.positional == "sinusoidal":
            pe_TxW = sinusoidal_positions(x_TxDxW.shape[0], self.width, x_TxDxW.dtype)
            x_TxDxW = x_TxDxW + pe_TxW[:, None, :]
        for i in range(self.depth):
            x_TxDxW = TransformerBlock(
                self.heads,
                self.head_dim,
                self.mlp_ratio,
                self.positional,
                self.norm,
                self.param_dtype,
                name=f"block_{i}",
            )(x_TxDxW)
            if self.arm_mixing:
                x_TxDxW = x_TxDxW + ArmMixing(self.norm, self.param_dtype, name=f"mix_{i}")(x_TxDxW)
        x_TxDxW = make_norm(self.norm, self.param_dtype, name="norm_out")(x_TxDxW)
        readout = nn.Dense(
            1, kernel_init=nn.initializers.zeros, param_dtype=self.param_dtype, name="readout"
        )
        return readout(x_TxDxW)[..., 0]


class EquivariantLinearAttention(nn.Module):
    """Arm-equivariant multi-layer linear attention (module docstring); ``apply -> g_TxD``.

    With ``width=None`` the per-arm token is ``[f_{t,a}; 1; 0]`` (width 6) and ``g_{t,a}`` is read
    from the last (slot) channel; per-coordinate FTRL ``g_t = η S_{t−1}`` is then exactly
    representable (``ftrl_params``). Cross-arm mixing is linear: ``x_{t,a} += M mean_b x_{t,b}``.

    Attributes:
      d: number of arms the registry built it for; the module itself accepts any d.
      depth, width, heads, head_dim, normalise, out_scale, algorithm: as in ``LinearAttention``.
      arm_mixing: add the linear cross-arm update after each layer.
      param_dtype: parameter dtype.
    """

    d: int
    depth: int = 2
    width: int | None = None
    heads: int = 1
    head_dim: int | None = None
    normalise: bool = False
    out_scale: float = 0.0
    algorithm: str = "masked"
    arm_mixing: bool = True
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        check_positive_int("d", self.d)
        check_linear_attention_options(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, rewards_TxD: jax.Array) -> jax.Array:
        _check_history(rewards_TxD)
        dtype = jnp.result_type(rewards_TxD.dtype, self.param_dtype)
        f_TxDxF = arm_features(rewards_TxD.astype(dtype))
        ones_TxDx1 = jnp.ones((*f_TxDxF.shape[:2], 1), dtype)
        e_TxDxE = jnp.concatenate([f_TxDxF, ones_TxDx1], axis=-1)
        if self.width is None:
            x = jnp.concatenate([e_TxDxE, jnp.zeros_like(ones_TxDx1)], axis=-1)
        else:
            x = nn.Dense(
                self.width,
                use_bias=False,
                kernel_init=EMBED_INIT,
                param_dtype=self.param_dtype,
                name="embed",
            )(e_TxDxE)
        W = x.shape[-1]
        start_W = self.param("start", nn.initializers.zeros, (W,), self.param_dtype)
        x_TxDxW = shift_right(x, start_W)
        for i in range(self.depth):
            x_TxDxW = x_TxDxW + attention_layer(self, i)(x_TxDxW)
            if self.arm_mixing:
                M_WxW = self.param(
                    f"mix_{i}", fan_in_normal(self.out_scale, 0, 1), (W, W), self.param_dtype
                )
                pooled_Tx1xW = jnp.mean(x_TxDxW, axis=1, keepdims=True)
                x_TxDxW = x_TxDxW + pooled_Tx1xW @ M_WxW
        if self.width is None:
            return x_TxDxW[..., -1]
        readout = nn.Dense(
            1,
            use_bias=False,
            kernel_init=nn.initializers.zeros,
            param_dtype=self.param_dtype,
            name="readout",
        )
        return readout(x_TxDxW)[..., 0]


def ftrl_params(params: dict, eta: float) -> dict:
    """Parameters of ``EquivariantLinearAttention(width=None)`` with ``g_t = η S_{t−1}`` exactly.

    Layer 0, head 0: query and key read the constant channel (score 1 for every past token), the
    value is ``η R_{t,a}``, written into the slot; the start token, the mixing maps and the output
    maps of later layers are zero. This is per-coordinate FTRL's raw output (THEORY §3), for any d.
    """
    layer0 = params["layer_0"]
    W, H, K = layer0["query"].shape
    Vdim = layer0["value"].shape[-1]
    if W != N_ARM_FEATURES + 2 or "embed" in params:
        raise ValueError("params must come from EquivariantLinearAttention(width=None)")
    dtype = layer0["query"].dtype
    const, slot = N_ARM_FEATURES, N_ARM_FEATURES + 1
    new = dict(params)
    new["start"] = jnp.zeros_like(params["start"])
    new["layer_0"] = {
        "query": jnp.zeros((W, H, K), dtype).at[const, 0, 0].set(1.0),
        "key": jnp.zeros((W, H, K), dtype).at[const, 0, 0].set(1.0),
        "value": jnp.zeros((W, H, Vdim), dtype).at[0, 0, 0].set(eta),
        "out": jnp.zeros((H, Vdim, W), dtype).at[0, 0, slot].set(1.0),
    }
    for name, sub in params.items():
        if name.startswith("mix_"):
            new[name] = jnp.zeros_like(sub)
        elif name.startswith("layer_") and name != "layer_0":
            new[name] = {**sub, "out": jnp.zeros_like(sub["out"])}
    return new
