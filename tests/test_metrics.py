"""Bandit metrics (THEORY §1): hand-computed fixtures, regret invariants, bootstrap intervals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmft_theory import metrics

MU = jnp.array([[0.5, 0.7]] * 4)  # stationary, best arm 1, gap 0.2
ACTIONS = jnp.array([0, 1, 0, 1])
# Best arm swaps after round 2: V_T = 0.4 (one jump of 0.4 in sup norm).
MU_SWITCH = jnp.array([[0.7, 0.3], [0.7, 0.3], [0.3, 0.7], [0.3, 0.7]])


def test_pseudo_regret_fixture():
    # Regret_t = t·0.7 − Σ μ_{a_s}: 0.2, 0.2, 0.4, 0.4.
    np.testing.assert_allclose(
        metrics.pseudo_regret_curve(MU, ACTIONS), [0.2, 0.2, 0.4, 0.4], atol=1e-6
    )
    assert float(metrics.pseudo_regret(MU, ACTIONS)) == pytest.approx(0.4, abs=1e-6)
    # Stationary: dynamic regret equals pseudo-regret.
    np.testing.assert_allclose(
        metrics.dynamic_regret_curve(MU, ACTIONS), [0.2, 0.2, 0.4, 0.4], atol=1e-6
    )


def test_dynamic_regret_and_variation_fixture():
    actions = jnp.array([0, 0, 0, 1])  # misses the switch once: dynamic regret 0.4
    np.testing.assert_allclose(
        metrics.dynamic_regret_curve(MU_SWITCH, actions), [0, 0, 0.4, 0.4], atol=1e-6
    )
    # Best fixed arm: both sum to 2.0; the learner earns 0.7+0.7+0.3+0.7 = 2.4: regret −0.4.
    assert float(metrics.pseudo_regret(MU_SWITCH, actions)) == pytest.approx(-0.4, abs=1e-6)
    assert float(metrics.variation_budget(MU_SWITCH)) == pytest.approx(0.4, abs=1e-6)
    assert float(metrics.variation_budget(MU)) == 0.0
    # Uniform play earns 0.5 a round: dynamic 4·0.7 − 2 = 0.8, static 2.0 − 2.0 = 0.
    assert float(metrics.uniform_regret(MU_SWITCH, dynamic=True)) == pytest.approx(0.8, abs=1e-6)
    assert float(metrics.uniform_regret(MU_SWITCH)) == pytest.approx(0.0, abs=1e-6)


def test_realised_regret_fixture():
    r = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])  # arm sums 2, 3
    # Best prefix sums: 1, 1, 2, 3.
    a = jnp.array([0, 0, 0, 0])  # earns 1, 0, 1, 0 (cumulative 1, 1, 2, 2)
    np.testing.assert_allclose(metrics.realised_regret_curve(r, a), [0, 0, 0, 1], atol=1e-6)
    assert float(metrics.realised_regret(r, a)) == pytest.approx(1.0)
    a = jnp.array([1, 1, 0, 0])  # earns 0, 1, 1, 0 (cumulative 0, 1, 2, 2)
    np.testing.assert_allclose(metrics.realised_regret_curve(r, a), [1, 0, 0, 1], atol=1e-6)
    # Switching with the winner beats every fixed arm: realised regret can be negative.
    a = jnp.array([0, 1, 0, 1])  # earns 1, 1, 1, 1
    np.testing.assert_allclose(metrics.realised_regret_curve(r, a), [0, -1, -1, -1], atol=1e-6)


def test_exploration_fixtures():
    a = jnp.array([2, 0, 2, 2, 1, 2])
    np.testing.assert_array_equal(metrics.pull_counts(a, 4), [1, 1, 4, 0])
    assert float(metrics.min_pull_fraction(a, 4)) == 0.0
    assert float(metrics.min_pull_fraction(a, 3)) == pytest.approx(1 / 6)
    assert int(metrics.last_pull(a, 2)) == 6
    assert int(metrics.last_pull(a, 0)) == 2
    assert int(metrics.last_pull(a, 3)) == 0  # never pulled
    assert int(metrics.best_arm(MU)) == 1
    # Runs whose last pull of the best arm is 0 (never), 2, 2 and 5, horizon 5.
    f = metrics.never_pulled_after(np.array([0, 2, 2, 5]), 5)
    np.testing.assert_allclose(f, [0.25, 0.25, 0.75, 0.75, 0.75, 1.0])


D_MENU = [2, 3, 5]


@given(
    seed=st.integers(0, 2**16),
    d=st.sampled_from(D_MENU),
    stationary=st.booleans(),
)
def test_regret_invariants(seed, d, stationary):
    T = 30
    key_mu, key_a = jax.random.split(jax.random.key(seed))
    shape = (1, d) if stationary else (T, d)
    mu = jnp.broadcast_to(jax.random.uniform(key_mu, shape), (T, d))
    actions = jax.random.randint(key_a, (T,), 0, d)
    # Each regret is a difference of two float32 sums of 30 terms in [0, 1] (sums ≤ 30);
    # worst-case rounding of one such sum is 30·ε·30 ≈ 5e-5 (ε = 6e-8), so allow 1e-4.
    tol = 1e-4
    dyn = metrics.dynamic_regret_curve(mu, actions)
    assert np.all(np.asarray(dyn) >= -tol)
    assert np.all(np.diff(np.asarray(dyn)) >= -tol)  # non-decreasing
    # Σ_t max_a μ_t(a) ≥ max_a Σ_t μ_t(a): dynamic regret ≥ static pseudo-regret.
    assert float(dyn[-1]) >= float(metrics.pseudo_regret(mu, actions)) - tol
    # The per-round oracle has zero dynamic regret; the best fixed arm zero pseudo-regret.
    oracle_t = jnp.argmax(mu, axis=-1)
    assert abs(float(metrics.dynamic_regret(mu, oracle_t))) < tol
    best = jnp.full((T,), metrics.best_arm(mu))
    np.testing.assert_allclose(metrics.pseudo_regret_curve(mu, best)[-1], 0.0, atol=tol)
    if stationary:
        pseudo = metrics.pseudo_regret_curve(mu, actions)
        assert np.all(np.asarray(pseudo) >= -tol)
        np.testing.assert_allclose(metrics.pseudo_regret_curve(mu, best), 0.0, atol=tol)
        assert float(metrics.variation_budget(mu)) == 0.0


def test_shape_errors_name_both_arrays():
    with pytest.raises(ValueError, match=r"\(T, d\) table and \(T,\) actions"):
        metrics.pseudo_regret(MU, ACTIONS[:3])


def test_normalised_regret_anchors():
    assert metrics.normalised_regret(10.0, 10.0, 2.0) == 0.0  # uniform → 0
    assert metrics.normalised_regret(2.0, 10.0, 2.0) == 1.0  # reference → 1
    assert metrics.normalised_regret(6.0, 10.0, 2.0) == 0.5
    assert metrics.normalised_regret(0.0, 10.0, 2.0) == 1.25  # better than the reference
    with pytest.raises(ValueError, match="R_uniform != R_ref"):
        metrics.normalised_regret(1.0, 3.0, 3.0)


def test_bootstrap_ci_matches_normal_theory():
    # For the mean of N = 400 normal values, the percentile interval is ≈ mean ± 1.96·SE. Its
    # half-width is itself random (Monte-Carlo error of 4000 resamples: ~2% of the
    # half-width; the bootstrap's own bias at N = 400: ~1%); we allow 8%.
    x = np.random.default_rng(0).normal(3.0, 2.0, 400)
    ci = metrics.bootstrap_ci(x, level=0.95, n_boot=4000, seed=1)
    mean, se = metrics.mean_and_se(x)
    assert ci.estimate == pytest.approx(mean, rel=1e-12)
    assert ci.low < mean < ci.high
    assert (ci.high - ci.low) / 2 == pytest.approx(1.96 * se, rel=0.08)
    assert abs((ci.high + ci.low) / 2 - mean) < 0.1 * se


def test_bootstrap_is_seeded_and_block_invariant():
    x = np.random.default_rng(2).exponential(1.0, 57)
    a = metrics.bootstrap_ci(x, n_boot=500, seed=3)
    b = metrics.bootstrap_ci(x, n_boot=500, seed=3, block=57 * 7)  # 7 resamples per block
    assert a == b
    assert metrics.bootstrap_ci(x, n_boot=500, seed=4) != a
    c = metrics.bootstrap_ci(np.full(10, 2.5), n_boot=100)
    assert (c.estimate, c.low, c.high) == (2.5, 2.5, 2.5)


def test_paired_bootstrap_statistic():
    rng = np.random.default_rng(5)
    alg = rng.normal(4.0, 1.0, 300)
    uni = alg + 6.0 + rng.normal(0, 0.1, 300)  # uniform is worse by ≈ 6
    ref = alg - 2.0 + rng.normal(0, 0.1, 300)  # the reference better by ≈ 2
    ci = metrics.bootstrap_ci(
        np.stack([alg, uni, ref], 1),
        statistic=lambda m: metrics.normalised_regret(m[..., 0], m[..., 1], m[..., 2]),
    )
    # (uni − alg)/(uni − ref) ≈ 6/8 = 0.75; paired resampling keeps the interval tight.
    assert ci.estimate == pytest.approx(0.75, abs=0.01)
    assert ci.low < ci.estimate < ci.high and ci.high - ci.low < 0.01


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="values"):
        metrics.bootstrap_ci(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="level"):
        metrics.bootstrap_ci(np.ones(3), level=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        metrics.bootstrap_ci(np.ones(3), n_boot=0)


def test_growth_summary_recovers_the_exponent_and_the_final_regret():
    # Runs c_n · t^0.5 with c_n spread around 1: every resample's mean curve is exactly ∝ √t,
    # so β̂ = 0.5 to float rounding (1e-9) with a bootstrap spread of the same size.
    rng = np.random.default_rng(0)
    c = 1.0 + 0.1 * rng.standard_normal(50)
    t = np.arange(1, 201)
    curves = c[:, None] * np.sqrt(t)[None, :]
    s = metrics.growth_summary(curves, n_boot=50)
    assert s["beta"] == pytest.approx(0.5, abs=1e-9) and s["beta_se"] < 1e-9
    final, se = metrics.mean_and_se(curves[:, -1])
    assert (s["final_regret"], s["final_regret_se"]) == (final, se)


def test_seed_summary_of_one_seed_has_no_spread():
    assert metrics.seed_summary([2.0])["std"] == 0.0
    s = metrics.seed_summary([1.0, 3.0])
    assert (s["mean"], s["std"], s["min"], s["max"]) == (2.0, np.sqrt(2.0), 1.0, 3.0)
