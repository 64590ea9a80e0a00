"""Closed forms of THEORY §3: the FTRL weights that both objectives select within the linear
class, and the posterior comparator that they select over all causal policies.

These run on the host in float64 (NumPy/SciPy); they are constants, not hot paths.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, special

from rmft_theory.validation import check_positive, check_positive_int


def expected_norm(d: int) -> float:
    """``E‖Z‖`` for ``Z ~ N(0, I_d)``: ``√2 Γ((d+1)/2) / Γ(d/2)`` (computed in log space)."""
    check_positive_int("d", d)
    return math.sqrt(2.0) * math.exp(special.gammaln((d + 1) / 2) - special.gammaln(d / 2))


def eta_star(d: int, horizon: int, sigma: float = 1.0, radius: float = 1.0) -> float:
    """Optimal FTRL learning rate for isotropic rewards ``N(0, σ² I)`` on ``B(0, ρ)``.

    THEORY §3: ``η* = ρ E‖Z‖ / (d σ √T)``. For ρ = σ = 1: (d, T) = (2, 25) → 0.1253.
    """
    check_positive_int("horizon", horizon)
    check_positive("sigma", sigma)
    check_positive("radius", radius)
    return radius * expected_norm(d) / (d * sigma * math.sqrt(horizon))


def _check_cov(cov) -> np.ndarray:
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 1:
        raise ValueError(f"cov must be a square (d, d) matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("cov must be finite")
    if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12):
        raise ValueError("cov must be symmetric")
    if np.linalg.eigvalsh(c).min() <= 0:
        raise ValueError("cov must be positive definite")
    return c


def expected_outer_over_norm(cov_S) -> np.ndarray:
    """``E[S Sᵀ / ‖S‖]`` for ``S ~ N(0, C)`` by one-dimensional quadrature (THEORY §3).

    In the eigenbasis of C (eigenvalues ``λ_a``) the matrix is diagonal with
    ``E[S_a²/‖S‖] = (2/√π) ∫_0^∞ λ_a (1+2u²λ_a)^{-3/2} Π_{b≠a} (1+2u²λ_b)^{-1/2} du``.
    The integral is taken over ``θ ∈ [0, π/2)`` with ``u = tan θ / √(2 λ_max)``, which makes
    the integration range finite.
    """
    C = _check_cov(cov_S)
    lam, U = np.linalg.eigh(C)
    scale = math.sqrt(2.0 * lam.max())

    def integrand(theta: float, a: int) -> float:
        u = math.tan(theta) / scale
        du = 1.0 / (scale * math.cos(theta) ** 2)
        w = 1.0 + 2.0 * u * u * lam
        return lam[a] / w[a] * float(np.prod(w**-0.5)) * du

    m = np.empty_like(lam)
    for a in range(lam.size):
        val, _ = integrate.quad(
            integrand, 0.0, math.pi / 2, args=(a,), epsabs=0, epsrel=1e-11, limit=200
        )
        m[a] = 2.0 / math.sqrt(math.pi) * val
    return (U * m) @ U.T


def ftrl_weights(cov, horizon: int, radius: float = 1.0) -> np.ndarray:
    """The unique minimiser ``W*`` of both objectives of THEORY §3 for ``R_t ~ N(0, Σ)``.

    ``W* = (ρ/T) · E[S Sᵀ/‖S‖] · Σ^{-1}`` with ``S ~ N(0, T Σ)``. For ``Σ = σ² I`` this is
    ``η* I`` (:func:`eta_star`); for diagonal Σ it is diagonal (per-coordinate FTRL).

    Args:
      cov: (d, d) positive-definite reward covariance Σ.
      horizon: number of rounds T.
      radius: ball radius ρ.

    Returns:
      (d, d) float64 array W*.
    """
    check_positive_int("horizon", horizon)
    check_positive("radius", radius)
    Sigma = _check_cov(cov)
    M = expected_outer_over_norm(horizon * Sigma)
    return radius / horizon * M @ np.linalg.inv(Sigma)


def posterior_comparator_policies(rewards_NxTxD, sigma: float = 1.0, radius: float = 1.0):
    """The minimiser of both objectives of THEORY §3 over all causal policies (THEORY §3, "Beyond
    the linear class"): ``π_t = ρ E[S_T/‖S_T‖ | S_{t−1}]``.

    Beyond the linear class of THEORY §3, over *all* causal policies, and for zero-mean rewards
    ``N(0, σ² I)``:

    - imitation (objective (1)) is minimised by the conditional mean ``E[π* | R_{<t}]``;
    - the squared regret-loss (objective (2)) separates over t, because the cross terms
      ``E[<g_s, R_s><g_t, R_t>]`` (s < t) vanish, and is minimised by
      ``g_t = Σ^{-1} E[ρ‖S_T‖ R_t | R_{<t}]``, which Stein's lemma turns into the same mean.

    With ``S_T = S_{t−1} + Z``, ``Z ~ N(0, v_t I)``, ``v_t = (T − t + 1) σ²``, and
    ``∇_μ E‖μ + Z‖`` for the non-central chi mean:

        π_t = ρ · E‖Z₁‖ / (d √v_t) · ₁F₁(1/2; d/2 + 1; −‖S_{t−1}‖²/(2 v_t)) · S_{t−1},

    with ``Z₁ ~ N(0, I_d)``. It is FTRL with a round- and state-dependent rate: at small
    ``‖S_{t−1}‖`` the rate is ``η* √(T/(T−t+1))`` (``η*`` at t = 1), and for large ones the
    policy saturates at ``ρ S_{t−1}/‖S_{t−1}‖`` (follow-the-leader). Its norm never exceeds ρ.

    Args:
      rewards_NxTxD: (N, T, d) reward sequences (host arrays; SciPy in float64).
      sigma: reward standard deviation σ (isotropic covariance).
      radius: ball radius ρ.

    Returns:
      (N, T, d) float64 policies.
    """
    R = np.asarray(rewards_NxTxD, dtype=np.float64)
    if R.ndim != 3 or R.shape[1] < 1 or R.shape[2] < 1:
        raise ValueError(f"rewards must have shape (N, T, d) with T, d >= 1, got {R.shape}")
    check_positive("sigma", sigma)
    check_positive("radius", radius)
    _, T, d = R.shape
    S_prev = np.concatenate([np.zeros_like(R[:, :1]), np.cumsum(R, axis=1)[:, :-1]], axis=1)
    v_1xTx1 = (T - np.arange(T, dtype=np.float64))[None, :, None] * sigma**2
    x = np.sum(S_prev**2, axis=-1, keepdims=True) / (2.0 * v_1xTx1)
    coef = radius * expected_norm(d) / (d * np.sqrt(v_1xTx1)) * special.hyp1f1(0.5, d / 2 + 1, -x)
    return coef * S_prev
