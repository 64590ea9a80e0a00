"""Regret definitions (THEORY §1) against hand-computed values and textbook bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmft_theory.baselines import ftrl_policies, hedge_policies
from rmft_theory.regret import (
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
    # float32 sums of 13 unit-variance terms: absolute error a few 1e-6.
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
    assert float(curve[-1]) == pytest.approx(float(static_regret(rewards, pols, "ball")), abs=1e-5)
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


def test_hedge_obeys_textbook_bound():
    # Hedge on rewards in [0, 1]^d: Regret_T ≤ ln d / η + η T / 8 (Cesa-Bianchi & Lugosi 2006,
    # Thm. 2.2), for every sequence; checked on a uniform random one.
    rewards = jax.random.uniform(jax.random.key(0), (200, 5))
    for eta in (0.05, 0.2, 1.0):
        regret = float(static_regret(rewards, hedge_policies(rewards, eta), "simplex"))
        assert regret <= np.log(5) / eta + eta * 200 / 8


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
