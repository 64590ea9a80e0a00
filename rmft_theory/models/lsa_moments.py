"""The regret filter's MSE fine-tuning loss of the single-layer LSA from sufficient statistics.

For the LSA (:mod:`rmft_theory.models.lsa`), ``g_t = V z_t`` with ``z_t = A_t k``, where
``A_t = Σ_{s<t} e_s e_sᵀ`` is an E × E matrix (E = d + 1, ``e_s = [R_s; 1]``) and
``k = Kᵀ Q c``. The fine-tuning objective on a kept set of C tasks
(:func:`rmft_theory.rmft.finetune` with ``loss="mse"``),

    ℓ(θ) = Σ_c ω_c Σ_t ‖V A_{c,t} k − y_{c,t}‖²,        ω_c = w_c / (T Σ_c' w_c'),

is a polynomial in ``(V, k)`` whose coefficients are moments of the data:

    ℓ = Σ_{a,b} (VᵀV)_{ab} S_{ab}(k) − 2 Σ_{m,a} V_{ma} Y_{ma}(k) + c,
    S_{ab}(k) = Σ_{i,j} P_{(a,i),(b,j)} k_i k_j,    P = Σ_{c,t} ω_c vec(A_{c,t}) vec(A_{c,t})ᵀ,
    Y_{ma}(k) = Σ_i B_{m,(a,i)} k_i,                B = Σ_{c,t} ω_c y_{c,t} vec(A_{c,t})ᵀ,
    c = Σ_{c,t} ω_c ‖y_{c,t}‖².

``P`` (E² × E²), ``B`` (d × E²) and ``c`` are computed once per fine-tuning call in one pass over
the kept set (O(C T E⁴) flops, as matrix products over chunks of tasks); every optimiser step
then costs O(E⁴), independent of C and T. ``A`` is symmetric, so only its E(E+1)/2
upper-triangle entries are accumulated (3.2× fewer flops at d = 8).

Exact up to float rounding, but the rounding falls differently from the direct form: the loss
is assembled from terms that nearly cancel when the model fits its targets, so its absolute
error scales with ``c`` rather than with the loss (near an exact fit the value can come out
slightly negative, about −4e-6 for ``c`` ≈ 1). Measured against float64
(``tests/test_lsa_moments.py``): at a realistic filter fit (loss ≈ 0.1 c, T = 50 and 200) the
loss was within 3.5e-7 c and the V-gradient within 8e-7 of its scale (the direct form: 2e-8 c,
6e-7). Far from a fit (random parameters, C = 4096, T = 200, d = 8), the gradient was within
4e-7 of its largest entry and the direct form's within 5e-5, whose backward pass sums over T
sequentially. 300 Adam steps in either form ended at the same float64 loss to 1e-8.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.models.lsa import embed, exclusive_prefix_sum, key_vector

# Floats of prefix-sum entries (tasks · T · E(E+1)/2) per chunk of tasks. Measured on the 2-core
# CPU (C ∈ {64, 256, 4096}, T ∈ {100, 200}, d ∈ {5, 8}): chunks of ~2^18 floats were within 10% of
# the fastest chunk size in every case, whole-batch products up to 3.6× slower at C = 4096.
CHUNK_ELEMENTS = 2**18


class MSEMoments(NamedTuple):
    """Sufficient statistics of the LSA's weighted MSE fine-tuning loss (module docstring)."""

    P: jax.Array  # (E², E²): Σ ω vec(A) vec(A)ᵀ
    B: jax.Array  # (d, E²):  Σ ω y vec(A)ᵀ
    c: jax.Array  # ():       Σ ω ‖y‖²


def _triangle(E: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle index pairs (I, J) of an E × E matrix and the (E²,) map back to them."""
    I, J = np.triu_indices(E)
    back = np.zeros((E, E), np.int32)
    back[I, J] = back[J, I] = np.arange(I.size)
    return I, J, back.reshape(-1)


def prefix_outer(rewards_TxD: jax.Array) -> jax.Array:
    """``A_t = Σ_{s<t} e_s e_sᵀ`` of one task, its upper triangle flattened: (T, E(E+1)/2)."""
    e_TxE = embed(rewards_TxD)
    I, J, _ = _triangle(e_TxE.shape[1])
    return exclusive_prefix_sum(e_TxE[:, I] * e_TxE[:, J])


def mse_moments(
    rewards_CxTxD: jax.Array,
    targets_CxTxD: jax.Array,
    weights_C: jax.Array,
    total: jax.Array | None = None,
) -> MSEMoments:
    """The moments ``(P, B, c)`` of a kept set (module docstring), ``ω_c = w_c / (T · total)``.

    ``total`` defaults to ``Σ_c w_c`` (at least the smallest normal float); pass the sum over
    all shards when this is one device's share of the kept set.
    """
    C, T, d = rewards_CxTxD.shape
    E = d + 1
    if total is None:
        total = jnp.sum(weights_C)
    total = jnp.maximum(total, jnp.finfo(weights_C.dtype).tiny)
    omega_C = weights_C / (T * total)
    n = E * (E + 1) // 2
    chunk = max(1, min(C, CHUNK_ELEMENTS // (T * n)))
    n_chunks = -(-C // chunk)
    pad = n_chunks * chunk - C  # padded tasks get weight 0

    def chunked(x):
        if pad:
            x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape(n_chunks, chunk, *x.shape[1:])

    def one_chunk(xs):
        rewards, targets, omega = xs
        A_cxTxN = jax.vmap(prefix_outer)(rewards)
        Aw_cxTxN = A_cxTxN * omega[:, None, None]
        return (
            jnp.einsum("ctx,cty->xy", Aw_cxTxN, A_cxTxN),
            jnp.einsum("ctm,ctx->mx", targets, Aw_cxTxN),
            jnp.sum(omega * jnp.sum(targets * targets, axis=(1, 2))),
        )

    per_chunk = jax.lax.map(one_chunk, tuple(map(chunked, (rewards_CxTxD, targets_CxTxD, omega_C))))
    P_half, B_half, c = (jnp.sum(x, axis=0) for x in per_chunk)
    _, _, back = _triangle(E)
    return MSEMoments(P_half[back][:, back], B_half[:, back], c)


def mse_loss_from_moments(params, moments: MSEMoments) -> jax.Array:
    """``ℓ(θ) = <VᵀV, S(k)> − 2 <V, Y(k)> + c`` (module docstring): the kept set's MSE loss."""
    V, k = params["V"], key_vector(params)
    E = k.shape[0]
    S_ExE = jnp.einsum("aibj,i,j->ab", moments.P.reshape(E, E, E, E), k, k)
    Y_DxE = moments.B.reshape(V.shape[0], E, E) @ k
    return jnp.sum((V.T @ V) * S_ExE) - 2.0 * jnp.sum(V * Y_DxE) + moments.c
