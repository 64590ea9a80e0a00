"""Closed forms of THEORY §3: the FTRL weights that both objectives of the theory select.

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
