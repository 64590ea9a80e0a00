"""Multi-layer causal linear attention: the model of THEORY §2 made deeper, still without softmax.

**Stream.** The token at stream position t = 1..T is the *previous* reward: ``x_1 = s`` (a learned
start token, zero at initialisation) and ``x_t = emb(R_{t−1})`` for t ≥ 2, with
``emb(R) = [R; 1; 0_d]`` (``width=None``: the theory's token ``e = [R; 1]`` plus a d-channel output
slot that starts at zero) or ``emb(R) = P [R; 1]`` (``width=w``: a learned projection). Every layer
attends to positions ``j ≤ t`` of this shifted stream, so the output at t depends on
``R_1..R_{t−1}`` only (strict causality).

**Layer.** With per-head query, key and value maps ``Q_h, K_h, V_h`` and output map ``O_h``,

    a_t^h = Σ_{j≤t} (V_h x_j) · ((K_h x_j)ᵀ (Q_h x_t)) = M_t^h Q_h x_t,
    M_t^h = Σ_{j≤t} (V_h x_j)(K_h x_j)ᵀ                 (prefix sum of outer products),
    x_t  ← x_t + Σ_h O_h a_t^h                            (residual; no softmax, no 1/t).

Two exact evaluations (``algorithm``):

- ``"masked"`` (default): ``A = ((Q Kᵀ) ⊙ L) V`` with the lower-triangular mask ``L``,
  O(T²(K+V)) time and O(T²) memory per head. At the horizons of this project (T of a few
  hundred) it is the faster one: it is matmul-shaped and never materialises the T states
  ``M_t`` of size K×V. On CPU, ``benchmarks/bench_models.py`` (B = 1024, T = 100, width 64,
  4 heads of size 16, depth 2) measured the forward pass 2.2× and the training step 2.8× faster
  than with the prefix sum.
- ``"prefix-sum"``: ``M_t`` by a parallel (associative) scan over t, O(T·K·V) memory per head and
  linear in T up to the scan's log factor: the form of THEORY §2, for long horizons.

``normalise=True`` divides ``a_t`` by the number of attended tokens ``t`` (a causal mean; off by
default, as in THEORY §2). Without it, a depth-L stack is a polynomial of degree up to 3^L in
the rewards whose terms grow like powers of t; with Adam, learning rates ≲ 3e-3 keep depth ≥ 2
stable (tests/test_models_deep.py), and depth ≥ 4 trains poorly.

**Readout.** ``g_t`` is the output slot of the final stream (``width=None``) or ``U x_t^L``.

**Relation to the single-layer LSA.** With ``width=None`` and depth 1, the choice
``Q = e_1 e_{d+1}ᵀ``, ``K = e_1 [k; 0]ᵀ``, ``V = [V_LSA | 0]`` written into the slot, and ``s = 0``
gives ``g_t = Σ_{i<t} (V_LSA e_i)(e_iᵀ k)``, the LSA output of THEORY §2 for ``k = Kᵀ Q c``; see
``params_from_lsa``. Layers whose output maps are zero leave the stream unchanged, so the same
holds at any depth.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rmft_theory.models.lsa import key_vector
from rmft_theory.validation import check_choice, check_nonnegative, check_positive_int


def shift_right(x_TxW: jax.Array, start_W: jax.Array) -> jax.Array:
    """Drop the last position and prepend ``start`` along axis 0; extra middle axes broadcast."""
    start = jnp.broadcast_to(start_W.astype(x_TxW.dtype), (1, *x_TxW.shape[1:]))
    return jnp.concatenate([start, x_TxW[:-1]], axis=0)


def over_extra_axes(fn, n_extra: int):
    """Map a per-sequence ``fn(*arrays)`` (time on axis 0) over ``n_extra`` axes after time."""
    for _ in range(n_extra):
        fn = jax.vmap(fn, in_axes=1, out_axes=1)
    return fn


ALGORITHMS = ("masked", "prefix-sum")


def causal_linear_attention(
    q_TxHxK: jax.Array, k_TxHxK: jax.Array, v_TxHxV: jax.Array, normalise: bool = False
) -> jax.Array:
    """Prefix-sum form ``a_t = M_t q_t``, ``M_t = Σ_{j≤t} v_j k_jᵀ``, per head; (T, H, V).

    ``M_t`` comes from an associative scan over t (O(T·K·V) memory). With ``normalise``, ``a_t``
    is divided by ``t`` (the number of attended positions).
    """
    outer_TxHxVxK = jnp.einsum("thv,thk->thvk", v_TxHxV, k_TxHxK)
    M_TxHxVxK = jax.lax.associative_scan(jnp.add, outer_TxHxVxK, axis=0)
    a_TxHxV = jnp.einsum("thvk,thk->thv", M_TxHxVxK, q_TxHxK)
    if normalise:
        count = jnp.arange(1, a_TxHxV.shape[0] + 1, dtype=a_TxHxV.dtype)
        a_TxHxV = a_TxHxV / count[:, None, None]
    return a_TxHxV


def causal_linear_attention_masked(
    q_TxHxK: jax.Array, k_TxHxK: jax.Array, v_TxHxV: jax.Array, normalise: bool = False
) -> jax.Array:
    """Masked form ``a_t = Σ_{j≤t} (k_jᵀ q_t) v_j = [((Q Kᵀ) ⊙ L) V]_t`` per head; (T, H, V)."""
    T = q_TxHxK.shape[0]
    scores_HxTxT = jnp.einsum("thk,jhk->htj", q_TxHxK, k_TxHxK)
    mask_1xTxT = jnp.tril(jnp.ones((T, T), dtype=bool))[None]
    scores_HxTxT = jnp.where(mask_1xTxT, scores_HxTxT, 0.0)
    a_TxHxV = jnp.einsum("htj,jhv->thv", scores_HxTxT, v_TxHxV)
    if normalise:
        count = jnp.arange(1, T + 1, dtype=a_TxHxV.dtype)
        a_TxHxV = a_TxHxV / count[:, None, None]
    return a_TxHxV


def head_dim_for(width: int, heads: int, head_dim: int | None) -> int:
    """Per-head key/value size: ``head_dim`` if given, else ``max(1, width // heads)``."""
    return head_dim if head_dim is not None else max(1, width // heads)


def fan_in_normal(scale: float, in_axis, out_axis):
    """Normal initialiser with variance ``scale² / fan_in`` over ``in_axis`` (zeros if scale=0)."""
    if scale == 0:
        return nn.initializers.zeros
    return nn.initializers.variance_scaling(scale**2, "fan_in", "normal", in_axis, out_axis)


# Learned embeddings keep ‖P e‖ ≈ ‖e‖ (variance 1/width per entry), as the identity embedding
# does, so that the un-normalised attention sums start at the same scale for every width.
EMBED_INIT = nn.initializers.variance_scaling(1.0, "fan_out", "normal")


def check_linear_attention_options(module) -> None:
    """Validate the options shared by the linear-attention models (each error names the field)."""
    check_positive_int("depth", module.depth)
    check_positive_int("heads", module.heads)
    if module.width is not None:
        check_positive_int("width", module.width)
    if module.head_dim is not None:
        check_positive_int("head_dim", module.head_dim)
    check_nonnegative("out_scale", module.out_scale)
    check_choice("algorithm", module.algorithm, ALGORITHMS)


class LinearAttentionLayer(nn.Module):
    """One multi-head causal linear-attention update ``Σ_h O_h a_t^h`` of a (T, ..., W) stream."""

    heads: int = 1
    head_dim: int | None = None
    normalise: bool = False
    out_scale: float = 0.0
    algorithm: str = "masked"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_TxW: jax.Array) -> jax.Array:
        W, H = x_TxW.shape[-1], self.heads
        attention = (
            causal_linear_attention_masked
            if self.algorithm == "masked"
            else causal_linear_attention
        )
        K = V = head_dim_for(W, H, self.head_dim)
        proj_init = fan_in_normal(1.0, 0, (1, 2))
        Wq = self.param("query", proj_init, (W, H, K), self.param_dtype)
        Wk = self.param("key", proj_init, (W, H, K), self.param_dtype)
        Wv = self.param("value", proj_init, (W, H, V), self.param_dtype)
        out_init = fan_in_normal(self.out_scale, (0, 1), 2)
        Wo = self.param("out", out_init, (H, V, W), self.param_dtype)
        q = jnp.einsum("...w,whk->...hk", x_TxW, Wq)
        k = jnp.einsum("...w,whk->...hk", x_TxW, Wk)
        v = jnp.einsum("...w,whv->...hv", x_TxW, Wv)

        def attend(q_, k_, v_):
            return attention(q_, k_, v_, self.normalise)

        a = over_extra_axes(attend, x_TxW.ndim - 2)(q, k, v)
        return jnp.einsum("...hv,hvw->...w", a, Wo)


def attention_layer(module, i: int) -> LinearAttentionLayer:
    """Residual layer ``i`` (named ``layer_i``) of a linear-attention stack, built from the
    module's shared options (call inside the module's ``nn.compact`` method)."""
    return LinearAttentionLayer(
        heads=module.heads,
        head_dim=module.head_dim,
        normalise=module.normalise,
        algorithm=module.algorithm,
        out_scale=module.out_scale,
        param_dtype=module.param_dtype,
        name=f"layer_{i}",
    )


class LinearAttention(nn.Module):
    """Multi-layer causal linear attention (module docstring); ``apply -> g_TxD``.

    Attributes:
      d: reward dimension.
      depth: number of residual linear-attention layers.
      width: stream width of a learned embedding ``P [R; 1]``; ``None`` uses the identity
        embedding ``[R; 1; 0_d]`` (width 2d+1) and reads ``g`` from the output slot.
      heads: attention heads per layer.
      head_dim: per-head key/value size (default ``width // heads``).
      normalise: divide each layer's attention by t (off: THEORY §2 has no 1/t).
      out_scale: initial scale of the output maps, relative to ``1/√fan_in``. The default 0
        starts every layer as the identity map (so ``g ≡ 0`` at initialisation); the
        un-normalised outputs grow like t per layer, and random output maps would start the
        model far from the targets.
      algorithm: ``"masked"`` (O(T²), default) or ``"prefix-sum"`` (O(T) memory in T).
      param_dtype: parameter dtype (``jnp.float64`` for float64 runs).
    """

    d: int
    depth: int = 2
    width: int | None = None
    heads: int = 1
    head_dim: int | None = None
    normalise: bool = False
    out_scale: float = 0.0
    algorithm: str = "masked"
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        check_positive_int("d", self.d)
        check_linear_attention_options(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, rewards_TxD: jax.Array) -> jax.Array:
        check_rewards(rewards_TxD, self.d)
        dtype = jnp.result_type(rewards_TxD.dtype, self.param_dtype)
        R = rewards_TxD.astype(dtype)
        e_TxE = jnp.concatenate([R, jnp.ones((R.shape[0], 1), dtype)], axis=-1)
        if self.width is None:
            x_TxW = jnp.concatenate([e_TxE, jnp.zeros_like(R)], axis=-1)
        else:
            x_TxW = nn.Dense(
                self.width,
                use_bias=False,
                kernel_init=EMBED_INIT,
                param_dtype=self.param_dtype,
                name="embed",
            )(e_TxE)
        start_W = self.param("start", nn.initializers.zeros, (x_TxW.shape[-1],), self.param_dtype)
        x_TxW = shift_right(x_TxW, start_W)
        for i in range(self.depth):
            x_TxW = x_TxW + attention_layer(self, i)(x_TxW)
        if self.width is None:
            return x_TxW[:, self.d + 1 :]
        readout = nn.Dense(
            self.d,
            use_bias=False,
            kernel_init=nn.initializers.zeros,
            param_dtype=self.param_dtype,
            name="readout",
        )
        return readout(x_TxW)


def check_rewards(rewards_TxD: jax.Array, d: int) -> None:
    """Raise a ValueError unless the rewards are one (T, d) history."""
    if rewards_TxD.ndim != 2 or rewards_TxD.shape[-1] != d:
        raise ValueError(
            f"rewards_TxD must have shape (T, {d}) (one history; vmap to batch), "
            f"got {rewards_TxD.shape}"
        )


def params_from_lsa(params: dict, lsa_params: dict) -> dict:
    """Parameters of an identity-embedding ``LinearAttention`` that reproduce the LSA exactly.

    ``params`` is any parameter tree of ``LinearAttention(d, width=None, ...)`` (it fixes depth and
    heads). Layer 0, head 0 gets ``Q = e_1 e_{d+1}ᵀ`` (the constant channel), ``K = e_1 [k; 0]ᵀ``
    with ``k = Kᵀ Q c`` of ``lsa_params``, ``V = [V_LSA | 0]`` and an output map into the slot;
    everything else in layer 0, the start token and the output maps of later layers are zero.
    Then ``g_t = Σ_{i<t} (V_LSA e_i)(e_iᵀ k)``, which is ``lsa_apply(lsa_params, R)``; with
    ``params_from_weights(W)`` that is FTRL's raw output ``W S_{t−1}`` (THEORY §2–3).
    """
    V_lsa = jnp.asarray(lsa_params["V"])
    d = V_lsa.shape[0]
    layer0 = params["layer_0"]
    W, H, K = layer0["query"].shape
    Vdim = layer0["value"].shape[-1]
    if W != 2 * d + 1 or "embed" in params:
        raise ValueError(f"params must come from LinearAttention(d={d}, width=None)")
    if Vdim < d:
        raise ValueError(f"head_dim must be >= d={d} to hold the LSA values, got {Vdim}")
    dtype = layer0["query"].dtype
    k_E = key_vector(lsa_params).astype(dtype)
    new = dict(params)
    new["start"] = jnp.zeros_like(params["start"])
    new["layer_0"] = {
        "query": jnp.zeros((W, H, K), dtype).at[d, 0, 0].set(1.0),
        "key": jnp.zeros((W, H, K), dtype).at[: d + 1, 0, 0].set(k_E),
        "value": jnp.zeros((W, H, Vdim), dtype).at[: d + 1, 0, :d].set(V_lsa.T.astype(dtype)),
        "out": jnp.zeros((H, Vdim, W), dtype).at[0, jnp.arange(d), d + 1 + jnp.arange(d)].set(1.0),
    }
    for name, sub in params.items():
        if name.startswith("layer_") and name != "layer_0":
            new[name] = {**sub, "out": jnp.zeros_like(sub["out"])}
    return new
