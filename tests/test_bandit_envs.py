"""Bandit environments: reward statistics, trend shapes and V_T against their definitions.

Monte-Carlo checks compare a sample statistic with its definition within 5 standard errors (SE
stated at each check); the seeds are fixed, so each check is deterministic. Where a check runs
over K entries at once, the chance that a correct implementation fails it is at most
K·5.7e-7 (two-sided normal tail at 5 SE).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmft_theory import metrics
from rmft_theory.envs import SwitchingBandit, make_env
from rmft_theory.envs.processes import SineTask, TrendTask


def tables(env, n, seed, task):
    """``n`` reward tables (n, T, d) of one task, float64."""
    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(jax.jit(jax.vmap(env.sample_rewards, (0, None)))(keys, task), np.float64)


def tasks(env, n, seed):
    """``n`` tasks drawn with ``env.sample_task``."""
    return jax.vmap(env.sample_task)(jax.random.split(jax.random.key(seed), n))


def within(sample, expected, se, k=5.0):
    """|sample − expected| < k·SE, elementwise."""
    err = np.abs(np.asarray(sample, np.float64) - np.asarray(expected, np.float64))
    assert np.all(err < k * np.asarray(se)), f"max error {err.max()} vs {k}·SE {np.max(se)}"


# ----------------------------------------------------------------------------- stationary


def test_bernoulli_bandit_fixed_means():
    p = np.array([0.5, 0.6, 0.7])
    env = make_env("bernoulli-bandit", means=tuple(p), horizon=50)
    task = env.sample_task(jax.random.key(0))
    np.testing.assert_allclose(task, p, rtol=1e-7)
    np.testing.assert_allclose(env.mean_rewards(task), np.broadcast_to(p, (50, 3)), rtol=1e-7)
    n = 2000
    r = tables(env, n, 1, task)
    assert set(np.unique(r)) == {0.0, 1.0}
    # Per-arm mean over n·T draws: SE = √(p(1 − p)/(nT)).
    within(r.mean(axis=(0, 1)), p, np.sqrt(p * (1 - p) / (n * 50)))
    # Per-round means over n draws (K = 150 entries): SE = √(p(1 − p)/n).
    within(r.mean(axis=0), np.broadcast_to(p, (50, 3)), np.sqrt(p * (1 - p) / n))


def test_bernoulli_bandit_random_means():
    env = make_env("bernoulli-bandit", d=4, horizon=5, low=0.2, high=0.9)
    n = 4000
    mu = np.asarray(tasks(env, n, 2))
    assert mu.min() >= 0.2 and mu.max() <= 0.9
    # U[0.2, 0.9]: mean 0.55 and variance 0.7²/12; SE(mean) = 0.7/√(12n),
    # SE(var) = √((μ4 − σ⁴)/n) with μ4 = 0.7⁴/80 for a uniform.
    within(mu.mean(0), 0.55, 0.7 / math.sqrt(12 * n))
    var = 0.7**2 / 12
    within(mu.var(0), var, math.sqrt((0.7**4 / 80 - var**2) / n))


def test_gaussian_bandit_statistics():
    env = make_env("gaussian-bandit", means=(-1.0, 0.0, 2.0), sigma=0.5, horizon=40)
    task = env.sample_task(jax.random.key(0))
    n = 2000
    r = tables(env, n, 3, task)
    N = n * 40
    within(r.mean(axis=(0, 1)), [-1.0, 0.0, 2.0], 0.5 / math.sqrt(N))
    within(r.var(axis=(0, 1)), 0.25, 0.25 * math.sqrt(2 / (N - 1)))
    # Random task means: N(0, mean_scale²).
    env = make_env("gaussian-bandit", d=3, mean_scale=2.0, horizon=2)
    mu = np.asarray(tasks(env, 4000, 4))
    within(mu.mean(0), 0.0, 2.0 / math.sqrt(4000))
    within(mu.var(0), 4.0, 4.0 * math.sqrt(2 / 3999))


# ----------------------------------------------------------------------------- non-stationary


def test_sine_bandit_shape_and_rewards():
    env = make_env("sine-bandit", d=2, horizon=8, offset=0.5, amplitude=0.4)
    task = SineTask(jnp.array([1.0, 0.5]), jnp.array([0.0, math.pi]))
    # Arm 0: 0.5 + 0.4 sin(2π t/8); arm 1: 0.5 + 0.4 sin(π t/8 + π) = 0.5 − 0.4 sin(π t/8).
    t = np.arange(1, 9)
    expected = np.stack([0.5 + 0.4 * np.sin(np.pi * t / 4), 0.5 - 0.4 * np.sin(np.pi * t / 8)], 1)
    mu = np.asarray(env.mean_rewards(task))
    np.testing.assert_allclose(mu, expected, atol=1e-6)
    n = 4000
    r = tables(env, n, 5, task)
    # Bernoulli(μ_t(a)) per entry (K = 16 entries): SE = √(μ(1 − μ)/n).
    within(r.mean(0), mu, np.sqrt(mu * (1 - mu) / n))
    # V_T = Σ_t ‖μ_t − μ_{t−1}‖_∞ computed in float64 from the formula.
    v = np.sum(np.max(np.abs(np.diff(expected, axis=0)), axis=1))
    assert float(metrics.variation_budget(mu)) == pytest.approx(v, abs=1e-5)


def test_sine_bandit_random_tasks():
    env = make_env("sine-bandit", d=5, horizon=100, offset=0.5, amplitude=0.45)
    n = 400
    mus = np.asarray(jax.vmap(env.mean_rewards)(tasks(env, n, 6)), np.float64)
    assert mus.min() >= 0.05 - 1e-6 and mus.max() <= 0.95 + 1e-6
    # With φ ~ U[0, 2π), E sin(2π f t/T + φ) = 0 and E sin²(·) = 1/2 for every t and f, so at
    # each round the mean over tasks and arms is the offset with SE = A·√(1/2)/√(n·d)
    # (K = 100 rounds checked).
    within(mus.mean(axis=(0, 2)), 0.5, 0.45 * math.sqrt(0.5 / (n * 5)))
    # The variance about the offset is A²/2 at each t; one round's estimate has SE
    # A²·√(Var sin²)/√(n·d) = A²·√(1/8)/√(n·d), and the average over rounds has at most that.
    sq = ((mus - 0.5) ** 2).mean(axis=(0, 2)).mean()
    within(sq, 0.45**2 / 2, 0.45**2 * math.sqrt(1 / 8) / math.sqrt(n * 5))


def test_sine_bandit_gaussian_noise():
    env = make_env("sine-bandit", d=3, horizon=30, noise="gaussian", sigma=0.2)
    task = env.sample_task(jax.random.key(7))
    r = tables(env, 1000, 8, task)
    resid = r - np.asarray(env.mean_rewards(task))[None]
    within(resid.mean(), 0.0, 0.2 / math.sqrt(resid.size))
    within(resid.var(), 0.04, 0.04 * math.sqrt(2 / (resid.size - 1)))


def test_linear_trend_bandit():
    env = make_env("linear-trend-bandit", horizon=11, start=(0.1, 0.9), end=(0.6, 0.2))
    task = env.sample_task(jax.random.key(0))
    assert isinstance(task, TrendTask)
    mu = np.asarray(env.mean_rewards(task), np.float64)
    np.testing.assert_allclose(mu[0], [0.1, 0.9], atol=1e-7)
    np.testing.assert_allclose(mu[-1], [0.6, 0.2], atol=1e-7)
    np.testing.assert_allclose(np.diff(mu, 2, axis=0), 0.0, atol=1e-6)
    # Linear: ‖μ_t − μ_{t−1}‖_∞ = max_a |end_a − start_a|/(T − 1), so V_T = 0.7.
    assert float(metrics.variation_budget(jnp.asarray(mu))) == pytest.approx(0.7, abs=1e-5)
    n = 4000
    r = tables(env, n, 9, task)
    within(r.mean(0), mu, np.sqrt(mu * (1 - mu) / n))  # K = 22 entries


def test_switching_bandit_segments_and_variation():
    segs = ((0.2, 0.8, 0.5), (0.9, 0.1, 0.5), (0.9, 0.4, 0.0))
    env = make_env("switching-bandit", horizon=12, n_switches=2, segment_means=segs)
    assert env.d == 3
    # k(t) = ⌊(t − 1)·3/12⌋: rounds 1–4, 5–8, 9–12.
    assert env.switch_rounds == (5, 9)
    mu = np.asarray(env.mean_rewards(env.sample_task(jax.random.key(0))))
    np.testing.assert_allclose(mu, np.repeat(np.asarray(segs), 4, axis=0), atol=1e-7)
    # V_T = ‖m_1 − m_0‖_∞ + ‖m_2 − m_1‖_∞ = 0.7 + 0.5.
    assert float(metrics.variation_budget(jnp.asarray(mu))) == pytest.approx(1.2, abs=1e-6)
    # Dynamic regret of always playing arm 1: (0.8−0.8)·4 + (0.9−0.1)·4 + (0.9−0.4)·4 = 5.2.
    a = jnp.ones((12,), jnp.int32)
    assert float(metrics.dynamic_regret(jnp.asarray(mu), a)) == pytest.approx(5.2, abs=1e-5)


@given(
    T=st.sampled_from([5, 7, 100]),
    n_switches=st.sampled_from([0, 1, 4]),
    seed=st.integers(0, 2**16),
)
def test_switching_bandit_random_segments(T, n_switches, seed):
    env = make_env("switching-bandit", d=3, horizon=T, n_switches=n_switches, low=0.3, high=0.6)
    task = env.sample_task(jax.random.key(seed))
    mu = np.asarray(env.mean_rewards(task))
    assert mu.min() >= 0.3 and mu.max() <= 0.6
    changes = np.flatnonzero(np.any(np.diff(mu, axis=0) != 0, axis=1)) + 2  # 1-indexed rounds
    assert set(changes) <= set(env.switch_rounds)
    assert len(env.switch_rounds) == n_switches
    # Segments are as even as the integers allow: lengths differ by at most one.
    lengths = np.bincount(env.segment_index)
    assert lengths.max() - lengths.min() <= 1 and lengths.sum() == T


def test_bandit_validation_names_the_field():
    with pytest.raises(ValueError, match="amplitude must keep"):
        make_env("sine-bandit", d=2, horizon=5, offset=0.8, amplitude=0.4)
    with pytest.raises(ValueError, match="noise must be one of"):
        make_env("sine-bandit", d=2, horizon=5, noise="poisson")
    with pytest.raises(ValueError, match="n_switches must lie in"):
        make_env("switching-bandit", d=2, horizon=5, n_switches=5)
    with pytest.raises(ValueError, match="segment_means must be 2 rows"):
        SwitchingBandit(d=2, horizon=5, n_switches=1, segment_means=((0.1, 0.2),))
    with pytest.raises(ValueError, match="start must lie in"):
        make_env("linear-trend-bandit", horizon=5, start=(0.1, 1.5), end=(0.2, 0.3))
    with pytest.raises(ValueError, match="high must lie in"):
        make_env("bernoulli-bandit", d=2, horizon=5, high=1.5)
    with pytest.raises(ValueError, match="means must be 3 finite numbers"):
        make_env("gaussian-bandit", d=3, horizon=5, means=(0.0, 1.0))
    # Gaussian noise lifts the [0, 1] restriction on the means.
    env = make_env("linear-trend-bandit", horizon=5, noise="gaussian", start=(-2.0,), end=(3.0,))
    assert env.reward_range == (-math.inf, math.inf)
