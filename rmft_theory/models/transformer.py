"""A nonlinear causal softmax Transformer over one reward history (pre-norm, GELU MLP, residual).

**Stream.** As in ``linear_attention``: position t = 1..T holds the previous reward,
``x_1 = s`` (a learned start token) and ``x_t = P R_{t−1} + b`` for t ≥ 2, so with a causal mask
(``j ≤ t``) the output at t depends on ``R_1..R_{t−1}`` only.

**Block** (pre-norm). With ``N`` a LayerNorm or RMSNorm,

    a_t^h = Σ_{j≤t} softmax_j( (Q_h N(x)_t)ᵀ (K_h N(x)_j) / √K + b_h(t, j) ) · V_h N(x)_j,
    x ← x + Σ_h O_h a^h,        x ← x + W_2 GELU(W_1 N(x) + c_1) + c_2.

The output is ``g_t = U N(x_t^L) + u`` (raw outputs; heads are applied separately).

**Position information** (``positional``), chosen so that a model trained on horizon T can be run
on 2T and 4T:

- ``"none"`` (default, NoPE): no encoding. The causal mask already reveals position (uniform
  attention puts weight 1/t on the start token), and NoPE length-generalises better than absolute
  encodings (Kazemnejad et al., 2023). FTRL weighs every past round equally, which needs no
  notion of recency.
- ``"sinusoidal"``: ``sin/cos(t / 10000^{2i/W})`` added to the stream; defined for every t.
- ``"alibi"``: the bias ``b_h(t, j) = −m_h (t − j)`` with slopes ``m_h = 2^{−8h/H}``
  (Press et al., 2022), a recency prior suited to non-stationary tasks.

Learned absolute positions are deliberately not offered: they are undefined beyond the trained
horizon.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rmft_theory.models.linear_attention import (
    check_rewards,
    head_dim_for,
    over_extra_axes,
    shift_right,
)
from rmft_theory.validation import check_choice, check_positive_int

POSITIONALS = ("none", "sinusoidal", "alibi")
NORMS = ("layer", "rms")


def causal_softmax_attention(
    q_TxHxK: jax.Array,
    k_TxHxK: jax.Array,
    v_TxHxV: jax.Array,
    bias_HxTxT: jax.Array | None = None,
) -> jax.Array:
    """``a_t = Σ_{j≤t} softmax_j(q_tᵀ k_j/√K + b(t, j)) v_j`` per head; returns (T, H, V).

    Masked scores are ``−∞`` before the softmax, so their weights and gradients are exactly 0.
    """
    T, _, K = q_TxHxK.shape
    scores_HxTxT = jnp.einsum("thk,jhk->htj", q_TxHxK, k_TxHxK) / math.sqrt(K)
    if bias_HxTxT is not None:
        scores_HxTxT = scores_HxTxT + bias_HxTxT.astype(scores_HxTxT.dtype)
    mask_1xTxT = jnp.tril(jnp.ones((T, T), dtype=bool))[None]
    scores_HxTxT = jnp.where(mask_1xTxT, scores_HxTxT, -jnp.inf)
    weights_HxTxT = jax.nn.softmax(scores_HxTxT, axis=-1)
    return jnp.einsum("htj,jhv->thv", weights_HxTxT, v_TxHxV)


def sinusoidal_positions(T: int, width: int, dtype=jnp.float32) -> jax.Array:
    """``pe[t, 2i] = sin(t ω_i)``, ``pe[t, 2i+1] = cos(t ω_i)``, ``ω_i = 10000^{−2i/W}``; (T, W)."""
    t_Tx1 = jnp.arange(T, dtype=dtype)[:, None]
    omega_1xF = jnp.exp(-math.log(10000.0) * jnp.arange(0, width, 2, dtype=dtype)[None, :] / width)
    angles_TxF = t_Tx1 * omega_1xF
    pe = jnp.stack([jnp.sin(angles_TxF), jnp.cos(angles_TxF)], axis=-1).reshape(T, -1)
    return pe[:, :width]


def alibi_bias(T: int, heads: int, dtype=jnp.float32) -> jax.Array:
    """ALiBi bias ``b_h(t, j) = −m_h (t − j)``, ``m_h = 2^{−8h/H}`` (h = 1..H); (H, T, T)."""
    slopes_Hx1x1 = 2.0 ** (-8.0 * jnp.arange(1, heads + 1, dtype=dtype) / heads)[:, None, None]
    t = jnp.arange(T, dtype=dtype)
    distance_1xTxT = (t[:, None] - t[None, :])[None]
    return -slopes_Hx1x1 * distance_1xTxT


def make_norm(norm: str, param_dtype, name: str | None = None) -> nn.Module:
    """A LayerNorm (``"layer"``) or RMSNorm (``"rms"``) over the last axis."""
    if norm == "layer":
        return nn.LayerNorm(param_dtype=param_dtype, name=name)
    return nn.RMSNorm(param_dtype=param_dtype, name=name)


class SoftmaxSelfAttention(nn.Module):
    """Multi-head causal softmax self-attention of a (T, ..., W) stream (time on axis 0)."""

    heads: int = 2
    head_dim: int | None = None
    positional: str = "none"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_TxW: jax.Array) -> jax.Array:
        T, W, H = x_TxW.shape[0], x_TxW.shape[-1], self.heads
        K = head_dim_for(W, H, self.head_dim)

        def proj(name):
            return nn.DenseGeneral((H, K), param_dtype=self.param_dtype, name=name)(x_TxW)

        q, k, v = proj("query"), proj("key"), proj("value")
        bias = alibi_bias(T, H, x_TxW.dtype) if self.positional == "alibi" else None

        def attend(q_, k_, v_):
            return causal_softmax_attention(q_, k_, v_, bias)

        a = over_extra_axes(attend, x_TxW.ndim - 2)(q, k, v)
        return nn.DenseGeneral(W, axis=(-2, -1), param_dtype=self.param_dtype, name="out")(a)


class MLP(nn.Module):
    """``W_2 GELU(W_1 x + c_1) + c_2`` with hidden size ``ratio · W``."""

    ratio: int = 4
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_TxW: jax.Array) -> jax.Array:
        W = x_TxW.shape[-1]
        h = nn.Dense(self.ratio * W, param_dtype=self.param_dtype, name="hidden")(x_TxW)
        return nn.Dense(W, param_dtype=self.param_dtype, name="out")(nn.gelu(h))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + Attn(N(x))``, then ``x + MLP(N(x))``."""

    heads: int = 2
    head_dim: int | None = None
    mlp_ratio: int = 4
    positional: str = "none"
    norm: str = "layer"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_TxW: jax.Array) -> jax.Array:
        x_TxW = x_TxW + SoftmaxSelfAttention(
            self.heads, self.head_dim, self.positional, self.param_dtype, name="attention"
        )(make_norm(self.norm, self.param_dtype, name="norm_attention")(x_TxW))
        return x_TxW + MLP(self.mlp_ratio, self.param_dtype, name="mlp")(
            make_norm(self.norm, self.param_dtype, name="norm_mlp")(x_TxW)
        )


def check_transformer_options(module) -> None:
    """Validate the options shared by the Transformer models, naming the bad one."""
    check_positive_int("width", module.width)
    check_positive_int("depth", module.depth)
    check_positive_int("heads", module.heads)
    check_positive_int("mlp_ratio", module.mlp_ratio)
    if module.head_dim is not None:
        check_positive_int("head_dim", module.head_dim)
    check_choice("positional", module.positional, POSITIONALS)
    check_choice("norm", module.norm, NORMS)


class CausalTransformer(nn.Module):
    """Causal softmax Transformer (module docstring); ``apply -> g_TxD``.

    Attributes:
      d: reward dimension.
      width: stream width W.
      depth: number of blocks.
      heads: attention heads per block.
      head_dim: per-head size (default ``width // heads``).
      mlp_ratio: MLP hidden size over W.
      positional: ``"none"``, ``"sinusoidal"`` or ``"alibi"`` (module docstring).
      norm: ``"layer"`` (LayerNorm) or ``"rms"`` (RMSNorm).
      param_dtype: parameter dtype (``jnp.float64`` for float64 runs).
    """

    d: int
    width: int = 32
    depth: int = 2
    heads: int = 2
    head_dim: int | None = None
    mlp_ratio: int = 4
    positional: str = "none"
    norm: str = "layer"
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        check_positive_int("d", self.d)
        check_transformer_options(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, rewards_TxD: jax.Array) -> jax.Array:
        check_rewards(rewards_TxD, self.d)
        x_TxW = nn.Dense(self.width, param_dtype=self.param_dtype, name="embed")(rewards_TxD)
        start_W = self.param("start", nn.initializers.normal(0.02), (self.width,), self.param_dtype)
        x_TxW = shift_right(x_TxW, start_W)
        if self.positional == "sinusoidal":
            x_TxW = x_TxW + sinusoidal_positions(x_TxW.shape[0], self.width, x_TxW.dtype)
        for i in range(self.depth):
            x_TxW = TransformerBlock(
                self.heads,
                self.head_dim,
                self.mlp_ratio,
                self.positional,
                self.norm,
                self.param_dtype,
                name=f"block_{i}",
            )(x_TxW)
        x_TxW = make_norm(self.norm, self.param_dtype, name="norm_out")(x_TxW)
        readout = nn.Dense(
            self.d, kernel_init=nn.initializers.zeros, param_dtype=self.param_dtype, name="readout"
        )
        return readout(x_TxW)
