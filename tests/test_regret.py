"""Regret definitions (THEORY §1) against hand-computed values and textbook bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmft_theory.baselines import ftrl_policies, hedge_policies, uniform_policies
from rmft_theory.objectives import imitation_loss, squared_regret_loss
from rmft_theory.regret import (
    best_fixed_value,
    comparator,
    cumulative_regret,
    growth_exponent,
    growth_exponent_bootstrap,
    static_regret,
)

R = jnp.array([[1.0, 0.0], [0.0, 2.0], [2.0, 0.0]])  # S_T = (3, 2)
PI = jnp.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])  # earns 0 + 0 + 1 = 1


def test_ball_fixture():
    # max_{‖π‖≤2} <π, (3,2)> = 2·√13; earned 1.
    assert float(static_regret(R, PI, "ball", radius=2.0)) == pytest.approx(
        2 * np.sqrt(13) - 1, rel=1e-6
    )


def test_simplex_fixture():
    # Best coordinate of S_T = 3; earned 1.
    assert float(static_regret(R, PI, "simplex")) == pytest.approx(2.0, rel=1e-6)


def test_unconstrained_and_unknown_spaces_are_rejected():
    with pytest.raises(ValueError, match="space must be one of"):
        static_regret(R, PI, "unconstrained")
    with pytest.raises(ValueError, match="space must be one of"):
        static_regret(R, PI, "box")


@pytest.mark.parametrize("radius", [-1.0, 0.0, float("nan"), float("inf")])
def test_a_bad_radius_is_named(radius):
    # A negative radius would flip the comparator and make the zero policy's regret negative.
    S = jnp.sum(R, axis=0)
    for call in (
        lambda: static_regret(R, PI, "ball", radius),
        lambda: cumulative_regret(R, PI, "ball", radius),
        lambda: best_fixed_value(S, "ball", radius),
        lambda: comparator(S, "ball", radius),
        lambda: imitation_loss(PI, R, radius),
        lambda: squared_regret_loss(PI, R, radius),
    ):
        with pytest.raises(ValueError, match=r"^radius must be"):
            call()


def test_shape_mismatch_names_both_arrays():
    with pytest.raises(ValueError, match="rewards and policies"):
        static_regret(R, PI[:2], "ball")


@given(
    seed=st.integers(0, 10_000),
    space=st.sampled_from(["ball", "simplex"]),
    radius=st.sampled_from([0.5, 1.0, 4.0]),
)
def test_comparator_has_zero_regret(seed, space, radius):
    rewards = jax.random.normal(jax.random.key(seed), (13, 4))
    pi_star = comparator(rewards.sum(0), space, radius)
    policies = jnp.broadcast_to(pi_star, rewards.shape)
    # float32: ρ‖S_T‖ (up to ≈ 40 at ρ = 4) minus 13 products that sum to it. Measured over
    # 20,000 seeds: at most 1.5e-5 at ρ = 4, 1.9e-6 on the simplex; 1e-4 leaves 6x.
    assert abs(float(static_regret(rewards, policies, space, radius))) < 1e-4


@given(seed=st.integers(0, 10_000), radius=st.sampled_from([0.5, 1.0, 4.0]))
def test_ball_regret_matches_numpy_loop(seed, radius):
    rng = np.random.default_rng(seed)
    rewards, policies = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    expected = radius * np.linalg.norm(rewards.sum(0)) - sum(
        float(p @ r) for p, r in zip(policies, rewards)
    )
    got = static_regret(jnp.asarray(rewards), jnp.asarray(policies), "ball", radius)
    assert float(got) == pytest.approx(expected, abs=1e-4)  # float32, 20 terms of O(1)


def test_cumulative_regret_ends_at_static_regret():
    rewards = jax.random.normal(jax.random.key(3), (30, 4))
    pols = ftrl_policies(rewards, 0.2, 1.0)
    curve = cumulative_regret(rewards, pols, "ball")
    assert curve.shape == (30,)
    # The same float32 sums of 30 terms of O(1), accumulated in a different order (cumsum vs
    # sum): rounding differences of a few 1e-6 at most.
    assert float(curve[-1]) == pytest.approx(float(static_regret(rewards, pols, "ball")), abs=1e-5)
    # FTRL's first policy is 0, so Regret_1 = ρ‖R_1‖ (ρ = 1): one float32 norm of O(1), a few
    # ulp (~2e-7) apart between the two computations.
    assert float(curve[0]) == pytest.approx(float(jnp.linalg.norm(rewards[0])), abs=1e-6)


@given(
    seed=st.integers(0, 10_000),
    eta=st.sampled_from([0.01, 0.1, 1.0]),
    kind=st.sampled_from(["gaussian", "alternating"]),
)
def test_ftrl_obeys_textbook_bound(seed, eta, kind):
    # Orabona (2019), Cor. 7.9: FTRL with the 1/η-strongly-convex ψ(π) = ‖π‖²/(2η) on B(0, ρ)
    # has Regret_T ≤ ρ²/(2η) + (η/2) Σ_t ‖R_t‖² against every comparator in the ball.
    rng = np.random.default_rng(seed)
    T, d, radius = 60, 3, 1.0
    if kind == "gaussian":
        rewards = rng.normal(size=(T, d))
        rewards /= np.maximum(1.0, np.linalg.norm(rewards, axis=1, keepdims=True))  # ‖R_t‖ ≤ 1
    else:
        u = rng.normal(size=d)
        u /= np.linalg.norm(u)
        signs = np.where(np.arange(T) % 2 == 0, 0.5, -1.0)[:, None]
        signs[0] = 0.5
        rewards = signs * u
    rewards = jnp.asarray(rewards, jnp.float32)
    regret = float(static_regret(rewards, ftrl_policies(rewards, eta, radius), "ball", radius))
    bound = radius**2 / (2 * eta) + eta / 2 * float(jnp.sum(rewards**2))
    assert regret <= bound + 1e-4


# Bernoulli rewards with means 0.3, 0.4, …, 0.7 over T = 200 rounds. The arms are separated,
# so uniform play has regret ≈ T · 0.2 = 40 (45.0 on this sequence) and Hedge with its sign
# reversed (following the worst arm) more still, while every bound below is at most 33.4.
HEDGE_T, HEDGE_D = 200, 5
HEDGE_REWARDS = jax.random.bernoulli(
    jax.random.key(0), jnp.broadcast_to(jnp.linspace(0.3, 0.7, HEDGE_D), (HEDGE_T, HEDGE_D))
).astype(jnp.float32)


def hedge_regret_reference(rewards: np.ndarray, eta: float) -> float:
    """Hedge step by step in float64: π_t ∝ exp(η S_{t−1}), regret max_i S_T(i) − Σ <π_t, R_t>."""
    S, earned = np.zeros(rewards.shape[1]), 0.0
    for r in rewards:
        w = np.exp(eta * (S - S.max()))
        earned += float(w @ r) / w.sum()
        S += r
    return float(S.max() - earned)


@pytest.mark.parametrize("eta", [0.05, 0.2, 1.0])
def test_hedge_matches_numpy_reference(eta):
    rewards = np.asarray(HEDGE_REWARDS, np.float64)
    got = float(static_regret(HEDGE_REWARDS, hedge_policies(HEDGE_REWARDS, eta), "simplex"))
    # 0/1 rewards keep every prefix sum exact in float32; what differs is the float32 softmax
    # (relative error ~1e-7 per probability, up to ~1e-5 where η S_t reaches 140 at η = 1)
    # summed over 200 rounds of reward ≤ 1. Measured: ≤ 6e-6; a one-round shift of S_{t−1} or
    # a sign error changes the regret by more than 1.
    assert got == pytest.approx(hedge_regret_reference(rewards, eta), abs=1e-4)


def test_hedge_obeys_textbook_bound():
    # Hedge on rewards in [0, 1]^d: Regret_T ≤ ln d / η + η T / 8 (Cesa-Bianchi & Lugosi 2006,
    # Thm. 2.2), for every sequence. On HEDGE_REWARDS uniform play (45.0) and sign-reversed
    # Hedge (the NumPy reference at −η: 66 to 85) exceed every bound checked (13.0 to 33.4),
    # so the check tells learning from not learning. A fixed sequence: no Monte-Carlo error;
    # float32 regrets are within 1e-4 of float64 (test_hedge_matches_numpy_reference), far
    # inside the margins (Hedge is 3.7 or more below each bound, the others 5 or more above).
    rewards = HEDGE_REWARDS
    uniform = float(static_regret(rewards, uniform_policies(rewards), "simplex"))
    for eta in (0.05, 0.2, 1.0):
        bound = np.log(HEDGE_D) / eta + eta * HEDGE_T / 8
        assert uniform > bound + 5  # the sequence discriminates at this η
        assert hedge_regret_reference(np.asarray(rewards, np.float64), -eta) > bound + 5
        assert float(static_regret(rewards, hedge_policies(rewards, eta), "simplex")) <= bound


def test_growth_exponent_recovers_power_law():
    t = np.arange(1, 401, dtype=np.float64)
    fit = growth_exponent(3.0 * t**0.5)
    assert fit.beta == pytest.approx(0.5, abs=1e-10) and fit.se < 1e-8
    assert fit.n_points == 200


def test_growth_exponent_bootstrap_on_noisy_curves():
    # Curves c_i · t^0.7 with a per-run factor c_i ~ LogNormal: the mean curve is an exact
    # power law, so β̂ = 0.7 to rounding, and the bootstrap SE is ~0 (the factor only rescales).
    rng = np.random.default_rng(0)
    t = np.arange(1, 101, dtype=np.float64)
    curves = np.exp(rng.normal(size=(50, 1))) * t**0.7
    fit = growth_exponent_bootstrap(curves, n_boot=50)
    assert fit.beta == pytest.approx(0.7, abs=1e-9) and fit.se < 1e-8


def test_growth_exponent_rejects_bad_input():
    with pytest.raises(ValueError, match="curve_T"):
        growth_exponent(-np.ones(10))
    with pytest.raises(ValueError, match="start_fraction"):
        growth_exponent(np.ones(10), start_fraction=1.5)
    t = np.arange(1, 101, dtype=np.float64)
    for bad in (np.nan, np.inf):
        curve = t**0.5
        curve[80] = bad  # in the fitted range: once silently dropped
        with pytest.raises(ValueError, match="curve_T must be finite"):
            growth_exponent(curve)
        curves = np.stack([t**0.5, t**0.5])
        curves[1, 10] = bad  # outside the fitted range, but a NaN run is still bad data
        with pytest.raises(ValueError, match="curves_NxT must be finite"):
            growth_exponent_bootstrap(curves)


def test_growth_exponent_drops_non_positive_points_and_counts_them():
    # Regret can be ≤ 0; those points have no log and are left out, and n_dropped says so.
    # The rest is an exact power law, so β̂ is 0.5 to rounding (1e-10, as in the clean fit).
    t = np.arange(1, 401, dtype=np.float64)
    curve = 3.0 * t**0.5
    curve[[250, 300, 399]] = [0.0, -1.0, -5.0]
    fit = growth_exponent(curve)
    assert fit.n_dropped == 3 and fit.n_points == 197
    assert fit.beta == pytest.approx(0.5, abs=1e-10)
    assert growth_exponent(3.0 * t**0.5).n_dropped == 0


@pytest.mark.parametrize("n_boot", [0, 1, -3, 2.5, True])
def test_growth_exponent_bootstrap_rejects_bad_n_boot(n_boot):
    curves = np.ones((4, 1)) * np.arange(1, 21, dtype=np.float64)
    with pytest.raises(ValueError, match="n_boot"):
        growth_exponent_bootstrap(curves, n_boot=n_boot)


def test_growth_exponent_bootstrap_never_returns_a_nan_standard_error():
    # Three runs, each positive (1) at one point of the fitted range only and slightly negative
    # (−0.01) elsewhere there. The mean curve has 3 positive points and fits; a resample fits
    # only if it holds all three runs (probability 3!/3³ = 2/9). With n_boot = 2, fewer than 2
    # resamples fit with probability 1 − (2/9)² ≈ 0.95 per seed: that must raise, not return
    # se = NaN. Over 20 seeds, none raising has probability 0.05²⁰.
    curves = np.full((3, 20), -0.01)
    curves[:, :10] = 1.0  # the first half is outside the fitted range
    for run, point in enumerate((12, 15, 18)):
        curves[run, point] = 1.0
    raised = 0
    for seed in range(20):
        try:
            fit = growth_exponent_bootstrap(curves, seed=seed, n_boot=2)
        except ValueError as err:
            assert "curves_NxT" in str(err) and "bootstrap resamples" in str(err)
            raised += 1
        else:
            assert np.isfinite(fit.se)
    assert raised > 0
