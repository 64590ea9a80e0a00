"""The single-layer linear self-attention model of THEORY §2, in its exact parameterisation.

Tokens embed past rewards as ``e_i = [R_i; 1] ∈ R^{d+1}``. With value ``V ∈ R^{d×(d+1)}``,
key ``K`` and query ``Q`` in ``R^{(d+1)×(d+1)}`` and the fixed query vector ``c = e_{d+1}``,

    g_t = Σ_{i<t} (V e_i) · (e_iᵀ Kᵀ Q c)        (no softmax, no 1/t normalisation).

Because the query is constant, the score ``e_iᵀ k`` with ``k = Kᵀ Q c`` is a scalar per token,
and ``g_t = V z_{t−1}`` with the (d+1)-vector prefix sum ``z_{t−1} = Σ_{i<t} e_i (e_iᵀ k)``:
O(T) time, O(T d) memory, and no (d+1)×(d+1) state.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from rmft_theory.validation import check_nonnegative, check_positive_int


def embed(rewards_TxD: jax.Array) -> jax.Array:
    """Token embeddings ``e_t = [R_t; 1]``, shape (T, d+1)."""
    ones = jnp.ones((*rewards_TxD.shape[:-1], 1), rewards_TxD.dtype)
    return jnp.concatenate([rewards_TxD, ones], axis=-1)


def query_vector(d: int, dtype=jnp.float32) -> jax.Array:
    """The fixed query vector ``c = e_{d+1}`` (the constant feature)."""
    return jnp.zeros((d + 1,), dtype).at[d].set(1.0)


def key_vector(params) -> jax.Array:
    """``k = Kᵀ Q c``, the only combination of K and Q that the output depends on."""
    K, Q = params["K"], params["Q"]
    return K.T @ (Q @ query_vector(K.shape[0] - 1, K.dtype))


def exclusive_prefix_sum(x):
    """``z_{t−1} = Σ_{i<t} x_i`` for t = 1..T (``z_0 = 0``), one ``lax.scan`` over t.

    ``x`` is a (T, ...) array or a pytree of them, summed leaf by leaf in the one scan.
    A sequential scan rather than ``jnp.cumsum``: on CPU XLA lowers ``cumsum`` to a blocked
    reduce-window, which was slower in the vmapped LSA (the fine-tuning step's comparison is in
    benchmarks/bench_finetune.py: the scan 1.0-1.2× faster at C = 64-4096 tasks).
    """
    # zeros_like: keeps x's sharding type inside shard_map
    z_0 = jax.tree.map(lambda x_T: jnp.zeros_like(x_T[0]), x)
    _, z_prev = jax.lax.scan(lambda z, x_t: (jax.tree.map(jnp.add, z, x_t), z), z_0, x)
    return z_prev


def split_layout(d: int) -> bool:
    """Whether :func:`lsa_apply` scans the d reward columns and the constant as two carries.

    The layout is chosen by measurement: XLA on CPU vectorises the vmapped scan's carry well
    when its width fills whole vectors. The embedding layout's time over the split layout's,
    forward and gradient, vmapped over M = 256 tasks at T = 100 (one core, AVX-512):

    ====  =====  =====  =====  =====  =====  =====  =====  =====  =====  =====  =====
    d     1      2      3      4      5      7      8      12     16     32     64
    fwd   1.68   3.17   0.30   1.48   0.95   0.51   1.86   1.41   1.26   1.16   1.21
    grad  0.72   1.34   0.45   0.84   0.70   0.47   1.05   1.11   1.32   2.31   1.76
    ====  =====  =====  =====  =====  =====  =====  =====  =====  =====  =====  =====

    So the split layout for d = 2 and for multiples of 4 from 8 (faster forward everywhere,
    gradient faster or within 8% at M = 64, T = 200), the embedding otherwise.
    """
    return d == 2 or (d >= 8 and d % 4 == 0)


def lsa_apply(params, rewards_TxD: jax.Array) -> jax.Array:
    """O(T) causal evaluation by an exclusive prefix sum; returns the (T, d) outputs ``g_t``.

    ``g_t = V z_{t−1}`` with ``z_{t−1} = Σ_{i<t} e_i s_i`` and the score ``s_i = e_iᵀk``. In
    the split layout (:func:`split_layout`), with ``k = [k_R; κ]`` and ``V = [V_R, v_0]``,
    ``s_i = R_iᵀk_R + κ`` and ``g_t = V_R Σ_{i<t} R_i s_i + v_0 Σ_{i<t} s_i``: the reward
    columns and the constant are prefix-summed as two carries of one scan, and the embedding
    is never formed. At d = 8 (M = 64, T = 200, one core) that made the forward pass 1.9×
    faster: the headline's one-core model stage in benchmarks/RESULTS.md went from 0.203 ms at
    commit 38c87de to 0.11 ms.
    """
    return lsa_apply_layout(params, rewards_TxD, split_layout(rewards_TxD.shape[-1]))


def lsa_apply_layout(params, rewards_TxD: jax.Array, split: bool) -> jax.Array:
    """:func:`lsa_apply` in the layout ``split`` names (the same function up to rounding)."""
    k = key_vector(params)
    V = params["V"]
    if split:
        s_T = rewards_TxD @ k[:-1] + k[-1]
        z_TxD, z_T = exclusive_prefix_sum((rewards_TxD * s_T[:, None], s_T))
        return z_TxD @ V[:, :-1].T + z_T[:, None] * V[None, :, -1]
    e_TxE = embed(rewards_TxD)
    return exclusive_prefix_sum(e_TxE * (e_TxE @ k)[:, None]) @ V.T


def lsa_apply_quadratic(params, rewards_TxD: jax.Array) -> jax.Array:
    """The O(T²) direct form ``g_t = Σ_{i<t} (V e_i)(e_iᵀ Kᵀ Q c)``: a test reference only."""
    e_TxE = embed(rewards_TxD)
    T = e_TxE.shape[0]
    Qc = params["Q"] @ query_vector(e_TxE.shape[1] - 1, e_TxE.dtype)
    keys_TxE = e_TxE @ params["K"].T
    scores_T = keys_TxE @ Qc  # (K e_i)ᵀ (Q c); the query token is the same for every t
    values_TxD = e_TxE @ params["V"].T
    mask_TxT = jnp.tril(jnp.ones((T, T), e_TxE.dtype), k=-1)  # i < t
    return (mask_TxT * scores_T[None, :]) @ values_TxD


class LinearSelfAttention(nn.Module):
    """Flax module for THEORY §2; ``apply({'params': p}, rewards_TxD) -> g_TxD``.

    Attributes:
      d: reward dimension, an integer >= 1.
      init_scale: standard deviation of the Gaussian initialisation of V, K, Q around
        ``(0, I, I)``; the identity start puts κ = 1 so that training is not at the saddle
        ``V = k = 0``. A finite number >= 0: 0 is the deterministic start ``(0, I, I)``, still
        off the saddle (κ = 1); a negative standard deviation has no meaning and NaN or ±inf
        would make every parameter, and so every output and gradient, non-finite.
    """

    d: int
    init_scale: float = 0.1

    def __post_init__(self):
        check_positive_int("d", self.d)
        check_nonnegative("init_scale", self.init_scale)
        super().__post_init__()

    @nn.compact
    def __call__(self, rewards_TxD: jax.Array) -> jax.Array:
        if rewards_TxD.ndim != 2 or rewards_TxD.shape[-1] != self.d:
            raise ValueError(
                f"rewards_TxD must have shape (T, {self.d}) (one history; vmap to batch), "
                f"got {rewards_TxD.shape}"
            )
        E = self.d + 1
        normal = nn.initializers.normal(self.init_scale)

        def near_identity(key, shape, dtype=jnp.float32):
            return jnp.eye(*shape, dtype=dtype) + normal(key, shape, dtype)

        params = {
            "V": self.param("V", normal, (self.d, E)),
            "K": self.param("K", near_identity, (E, E)),
            "Q": self.param("Q", near_identity, (E, E)),
        }
        return lsa_apply(params, rewards_TxD)


class Invariants(NamedTuple):
    """Reparameterisation-invariant parts of the LSA output (THEORY §2).

    ``g_t = W_eff S_{t−1} + Σ_{i<t} quad[:, b, c] R_{i,b} R_{i,c} + drift · (t − 1)``.
    """

    W_eff: jax.Array  # (d, d): κ V_R + v_0 k_Rᵀ
    quad: jax.Array  # (d, d, d): quad[a, b, c] = V_R[a, b] k_R[c]
    drift: jax.Array  # (d,): κ v_0


def invariants(params) -> Invariants:
    """``W_eff``, the quadratic tensor ``V_R ⊗ k_R`` and the drift ``κ v_0`` of LSA parameters."""
    k = key_vector(params)
    k_R, kappa = k[:-1], k[-1]
    V = params["V"]
    V_R, v_0 = V[:, :-1], V[:, -1]
    return Invariants(
        W_eff=kappa * V_R + jnp.outer(v_0, k_R),
        quad=V_R[:, :, None] * k_R[None, None, :],
        drift=kappa * v_0,
    )


def params_from_weights(W_DxD) -> dict:
    """LSA parameters realising ``W_eff = W`` exactly, with zero quadratic and drift terms.

    ``V = [W | 0]``, ``K = Q = I``, so ``k = Kᵀ Q c = e_{d+1}``: ``k_R = 0``, ``κ = 1``.
    """
    W = jnp.asarray(W_DxD)
    d = W.shape[0]
    if W.shape != (d, d):
        raise ValueError(f"W must be a square (d, d) matrix, got shape {W.shape}")
    E = d + 1
    return {
        "V": jnp.concatenate([W, jnp.zeros((d, 1), W.dtype)], axis=1),
        "K": jnp.eye(E, dtype=W.dtype),
        "Q": jnp.eye(E, dtype=W.dtype),
    }
