"""Closed forms of THEORY §3 against the reference values and Monte-Carlo least squares."""

import math

import numpy as np
import pytest

from rmft_theory.theory import (
    eta_star,
    expected_norm,
    expected_outer_over_norm,
    ftrl_weights,
    posterior_comparator_policies,
)

FULL_COV = np.array([[1.0, 0.6, 0.2], [0.6, 1.5, -0.4], [0.2, -0.4, 0.8]])


@pytest.mark.parametrize(
    ("d", "T", "expected"), [(2, 25, 0.1253), (3, 25, 0.1064), (5, 100, 0.0426), (10, 200, 0.0218)]
)
def test_eta_star_reference_values(d, T, expected):
    # THEORY §3 quotes four digits.
    assert eta_star(d, T) == pytest.approx(expected, abs=5e-5)


def test_expected_norm_small_cases():
    assert expected_norm(1) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-12)
    assert expected_norm(2) == pytest.approx(math.sqrt(math.pi / 2), rel=1e-12)


def test_eta_star_scaling():
    assert eta_star(4, 100, sigma=2.0, radius=3.0) == pytest.approx(
        1.5 * eta_star(4, 100), rel=1e-12
    )


@pytest.mark.parametrize(("d", "T"), [(1, 5), (2, 25), (7, 40)])
def test_isotropic_weights_are_eta_star(d, T):
    W = ftrl_weights(2.0**2 * np.eye(d), T, radius=1.5)
    # Quadrature (epsrel 1e-11) against eta_star's closed form; rtol 1e-8 leaves room for the
    # eigendecomposition and inverse in float64, atol 1e-14 for off-diagonal rounding only.
    np.testing.assert_allclose(W, eta_star(d, T, 2.0, 1.5) * np.eye(d), rtol=1e-8, atol=1e-14)


def test_diagonal_covariance_gives_diagonal_weights():
    W = ftrl_weights(np.diag([0.5, 1.0, 3.0]), 20)
    # Exactly diagonal in exact arithmetic; with entries of order 0.1 (ulp 1.4e-17), 1e-14
    # allows only float64 rounding of the eigenbasis products (measured: exactly 0).
    np.testing.assert_allclose(W - np.diag(np.diag(W)), 0, atol=1e-14)
    # Coordinates with more variance get a smaller per-coordinate rate.
    assert W[0, 0] > W[1, 1] > W[2, 2] > 0


def test_quadrature_matches_monte_carlo():
    # E[S Sᵀ/‖S‖] for S ~ N(0, C); 4·10⁵ samples, |error| < 5 standard errors elementwise.
    rng = np.random.default_rng(0)
    n = 400_000
    S = rng.multivariate_normal(np.zeros(3), 10 * FULL_COV, size=n)
    samples = S[:, :, None] * S[:, None, :] / np.linalg.norm(S, axis=1)[:, None, None]
    mc, se = samples.mean(0), samples.std(0) / math.sqrt(n)
    np.testing.assert_array_less(np.abs(expected_outer_over_norm(10 * FULL_COV) - mc), 5 * se)


def _mc_least_squares(cov, T, radius, objective, n_batches, batch, seed):
    """Per-batch least-squares solutions of the two objectives of THEORY §3 (NumPy, float64)."""
    rng = np.random.default_rng(seed)
    d = cov.shape[0]
    L = np.linalg.cholesky(cov)
    sols = []
    for _ in range(n_batches):
        R = rng.normal(size=(batch, T, d)) @ L.T
        S = np.cumsum(R, axis=1)
        S_prev = np.concatenate([np.zeros((batch, 1, d)), S[:, :-1]], axis=1)
        S_T = S[:, -1]
        norm = np.linalg.norm(S_T, axis=1)
        if objective == "imitation":
            # min Σ ‖W S_{t−1} − π*‖²: W = (Σ π* S_{t−1}ᵀ)(Σ S_{t−1} S_{t−1}ᵀ)^{-1}.
            pi_star = radius * S_T / norm[:, None]
            A = np.einsum("bi,btj->ij", pi_star, S_prev)
            B = np.einsum("bti,btj->ij", S_prev, S_prev)
            sols.append(A @ np.linalg.inv(B))
        else:
            # min (ρ‖S_T‖ − Σ_ij W_ij X_ij)² with X_ij = Σ_t R_{t,i} S_{t−1,j}.
            X = np.einsum("bti,btj->bij", R, S_prev).reshape(batch, d * d)
            w, *_ = np.linalg.lstsq(X, radius * norm, rcond=None)
            sols.append(w.reshape(d, d))
    return np.array(sols)


@pytest.mark.parametrize("objective", ["imitation", "regret-loss"])
@pytest.mark.parametrize("cov", [np.eye(2), FULL_COV], ids=["isotropic", "full"])
def test_ftrl_weights_match_monte_carlo_least_squares(objective, cov):
    # Both objectives' empirical minimisers converge to W*. 40 independent batches give a mean
    # and a standard error per entry; |mean − W*| must be under 4.5 standard errors (a
    # Bonferroni-style bound over ≤ 9 entries at ~1e-4 two-sided each). The bias of a batch's
    # least-squares solution is O(1/batch), far below the standard error here.
    T, radius = 10, 1.0
    batch = 4000 if objective == "imitation" else 20000
    sols = _mc_least_squares(cov, T, radius, objective, 40, batch, seed=1)
    mean, se = sols.mean(0), sols.std(0, ddof=1) / math.sqrt(len(sols))
    W_star = ftrl_weights(cov, T, radius)
    np.testing.assert_array_less(np.abs(mean - W_star), 4.5 * se)
    # And the test has power: the error allowed is a few percent of W* at most.
    assert np.max(4.5 * se) < 0.05 * np.abs(W_star).max()


def test_closed_forms_validate_input():
    with pytest.raises(ValueError, match="horizon"):
        eta_star(2, 0)
    with pytest.raises(ValueError, match="sigma"):
        eta_star(2, 10, sigma=-1.0)
    with pytest.raises(ValueError, match="d must be"):
        eta_star(0, 10)
    with pytest.raises(ValueError, match="positive definite"):
        ftrl_weights(np.array([[1.0, 2.0], [2.0, 1.0]]), 10)
    with pytest.raises(ValueError, match="symmetric"):
        ftrl_weights(np.array([[1.0, 0.5], [0.0, 1.0]]), 10)
    with pytest.raises(ValueError, match="square"):
        ftrl_weights(np.ones(3), 10)


# ---------------------------------------------------------------- beyond the linear class

POSTERIOR_D, POSTERIOR_T = 3, 12


def _rewards(n: int, seed: int) -> np.ndarray:
    """(n, T, d) standard Gaussian reward sequences (float64)."""
    return np.random.default_rng(seed).standard_normal((n, POSTERIOR_T, POSTERIOR_D))


def test_posterior_comparator_matches_monte_carlo():
    # ρ E[S_T/‖S_T‖ | S_{t−1}] against a Monte Carlo mean over 200 000 continuations
    # S_T = S_{t−1} + √((T−t+1)σ²) Z. Each coordinate's MC standard error is ≤ ρ/√200000 ≈
    # 0.0022ρ; tolerance 0.01ρ (> 4 SE). Rounds t = 2, 6, 12 span ‖S‖/√v from ≈ 0.3 to ≈ 3.
    sigma, radius = 1.5, 0.7
    rewards = _rewards(n=2, seed=3) * sigma
    pi = posterior_comparator_policies(rewards, sigma, radius)
    T = POSTERIOR_T
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((200_000, POSTERIOR_D))
    for n in range(2):
        for t in (2, 6, 12):
            S_prev = rewards[n, : t - 1].sum(axis=0)
            S_T = S_prev + np.sqrt((T - t + 1) * sigma**2) * Z
            mc = radius * np.mean(S_T / np.linalg.norm(S_T, axis=1, keepdims=True), axis=0)
            np.testing.assert_allclose(pi[n, t - 1], mc, atol=0.01 * radius)
    assert np.all(pi[:, 0] == 0.0)
    assert np.all(np.linalg.norm(pi, axis=-1) <= radius)


def test_posterior_comparator_beats_ftrl_on_imitation():
    # It is the unrestricted minimiser of objective (1), so on 4096 sequences its imitation loss
    # is below FTRL's at W* (the best linear policy). Measured ratio 0.963 at d = 3, T = 12;
    # the check only asks for < 0.99 (the SE of the ratio is < 0.005).
    rewards = _rewards(n=4096, seed=5)
    S_T = rewards.sum(axis=1)
    target = S_T / np.linalg.norm(S_T, axis=1, keepdims=True)
    W_star = ftrl_weights(np.eye(POSTERIOR_D), POSTERIOR_T)
    S_prev = np.concatenate([np.zeros_like(rewards[:, :1]), np.cumsum(rewards, 1)[:, :-1]], 1)
    loss_ftrl = np.mean(np.sum((S_prev @ W_star.T - target[:, None]) ** 2, axis=-1))
    posterior = posterior_comparator_policies(rewards)
    loss_post = np.mean(np.sum((posterior - target[:, None]) ** 2, axis=-1))
    assert loss_post / loss_ftrl < 0.99


def test_posterior_comparator_rejects_bad_input_by_name():
    with pytest.raises(ValueError, match="sigma"):
        posterior_comparator_policies(_rewards(1, 0), sigma=0.0)
    with pytest.raises(ValueError, match="radius"):
        posterior_comparator_policies(_rewards(1, 0), radius=-1.0)
    with pytest.raises(ValueError, match="rewards"):
        posterior_comparator_policies(np.zeros((4, 3)))
