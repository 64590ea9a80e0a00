"""Full-information reward processes and the environment registry.

Monte-Carlo checks compare a sample statistic with its definition within 5 standard errors
(SE stated at each check); with the fixed seeds below each check is deterministic.
"""

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmft_theory.baselines import ftl_policies, hedge_policies
from rmft_theory.envs import (
    ENVS,
    GaussianFOL,
    GaussianFOLEnv,
    as_environment,
    env_name,
    make_env,
    registry,
)
from rmft_theory.envs import gaussian as gaussian_module
from rmft_theory.envs.processes import SineTask, TrendTask, alternating_sequence
from rmft_theory.regret import static_regret

MINIMAL = {name: {"horizon": 9, "d": 3} for name in ENVS}
MINIMAL["alternating-fol"] = {"horizon": 9}


def tables(env, n, seed, task=None):
    """``n`` reward tables (n, T, d) of one task (``task``) or of ``n`` fresh tasks."""
    key_task, key_rew = jax.random.split(jax.random.key(seed))
    keys = jax.random.split(key_rew, n)
    if task is not None:
        return np.asarray(jax.jit(jax.vmap(env.sample_rewards, (0, None)))(keys, task), np.float64)
    tasks = jax.vmap(env.sample_task)(jax.random.split(key_task, n))
    return np.asarray(jax.jit(jax.vmap(env.sample_rewards))(keys, tasks), np.float64)


def within(sample_mean, expected, se, k=5.0):
    """|sample − expected| < k·SE, elementwise."""
    err = np.abs(np.asarray(sample_mean) - np.asarray(expected))
    assert np.all(err < k * np.asarray(se)), f"max error {err.max()} vs {k}·SE {np.max(se)}"


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", sorted(ENVS))
def test_every_registered_env_follows_the_interface(name):
    env = make_env(name, **MINIMAL[name])
    assert env_name(env) == name
    assert env.feedback in ("full", "bandit")
    assert ("bandit" in name) == (env.feedback == "bandit")
    assert isinstance(env.stationary, bool) and env.reward_scale > 0
    hash(env)  # frozen, hashable config: usable as a static jit argument
    key_task, key_rew = jax.random.split(jax.random.key(0))
    task = env.sample_task(key_task)
    mu = env.mean_rewards(task)
    r = env.sample_rewards(key_rew, task)
    assert mu.shape == r.shape == (env.horizon, env.d)
    assert r.dtype == jnp.result_type(float)
    lo, hi = env.reward_range
    assert np.all(np.asarray(r) >= lo) and np.all(np.asarray(r) <= hi)
    # The module-level interface agrees, and vmap over keys equals a loop.
    np.testing.assert_array_equal(registry.sample_rewards(key_rew, env, task), r)
    np.testing.assert_array_equal(registry.mean_rewards(task, env), mu)
    keys = jax.random.split(jax.random.key(1), 3)
    tasks = jax.vmap(env.sample_task)(keys)
    batched = jax.jit(jax.vmap(env.sample_rewards))(keys, tasks)
    for i in range(3):
        one = env.sample_rewards(keys[i], jax.tree.map(lambda x, i=i: x[i], tasks))
        # jit may fuse differently from eager: sine angles up to 8π carry float32 rounding of
        # ≈ 2e-6 (ulp at 25), so allow 1e-5 absolute.
        np.testing.assert_allclose(batched[i], one, rtol=1e-6, atol=1e-5)


def test_make_env_errors_name_the_option():
    with pytest.raises(ValueError, match="env must be one of"):
        make_env("nope", horizon=5, d=2)
    with pytest.raises(ValueError, match="has no option 'sigma'"):
        make_env("bernoulli-fol", horizon=5, d=2, sigma=1.0)
    with pytest.raises(ValueError, match="needs option 'd'"):
        make_env("sine-fol", horizon=5)
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        make_env("sine-fol", horizon=0, d=2)
    with pytest.raises(ValueError, match="means must lie in"):
        make_env("bernoulli-fol", horizon=5, means=(0.2, 1.2))
    with pytest.raises(ValueError, match="start and end must be given together"):
        make_env("linear-trend-fol", horizon=5, start=(0.0, 1.0))
    with pytest.raises(ValueError, match="d must be >= 2"):
        make_env("alternating-fol", horizon=5, d=1)
    with pytest.raises(ValueError, match="freq_low must be <= freq_high"):
        make_env("sine-fol", horizon=5, d=2, freq_low=3.0, freq_high=1.0)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_env("sine-fol", ENVS["linear-trend-fol"])


@dataclasses.dataclass(frozen=True)
class ToyFOL:
    """A plugin-style environment whose methods' outputs the tests below vary."""

    d: int
    horizon: int
    shift: tuple = ()
    out: str = "ok"
    feedback: ClassVar[str] = "full"
    stationary: ClassVar[bool] = True
    reward_range = (-float("inf"), float("inf"))
    reward_scale = 1.0

    def sample_task(self, key):
        return jnp.zeros(self.d)

    def mean_rewards(self, task):
        if self.out == "transposed":
            return jnp.zeros((self.d, self.horizon))
        return jnp.broadcast_to(task, (self.horizon, self.d))

    def sample_rewards(self, key, task):
        if self.out == "int":
            return jnp.zeros((self.horizon, self.d), jnp.int32)
        return task[None] + jax.random.normal(key, (self.horizon, self.d))


@pytest.fixture
def toy_registered():
    """``toy-fol`` registered for one test, then removed."""
    registry.register_env("toy-fol", registry.EnvEntry(ToyFOL, "test env"))
    yield
    ENVS.pop("toy-fol", None)


def test_registration_is_validated_and_names_what_does_not_fit():
    with pytest.raises(ValueError, match=r"takes an EnvEntry"):
        registry.register_env("bad", ToyFOL)  # the class, not an EnvEntry
    with pytest.raises(ValueError, match=r"EnvEntry.cls must be a dataclass"):
        registry.register_env("bad", registry.EnvEntry(object, "x"))

    @dataclasses.dataclass(frozen=True)
    class Typo(ToyFOL):
        feedback: ClassVar[str] = "Bandit"

    with pytest.raises(ValueError, match=r"Typo.feedback must be one of \('full', 'bandit'\)"):
        registry.register_env("bad", registry.EnvEntry(Typo, "x"))

    @dataclasses.dataclass(frozen=True)
    class NoHorizon:
        d: int

    with pytest.raises(ValueError, match=r"NoHorizon has no \['horizon', 'sample_task'"):
        registry.register_env("bad", registry.EnvEntry(NoHorizon, "x"))
    assert "bad" not in ENVS


def test_the_same_class_may_register_its_name_again(toy_registered):
    # Re-running a notebook cell or importlib.reload registers the same class again.
    registry.register_env("toy-fol", registry.EnvEntry(ToyFOL, "again"))
    assert ENVS["toy-fol"].summary == "again"


def test_make_env_makes_list_options_hashable(toy_registered):
    # TOML and --set give vector options as lists; jit takes the env as a static argument.
    env = make_env("toy-fol", d=2, horizon=3, shift=[1.0, [2.0, 3.0]])
    assert env.shift == (1.0, (2.0, 3.0))
    hash(env)


def test_make_env_checks_the_methods_output_shapes_and_dtypes(toy_registered):
    with pytest.raises(ValueError, match=r"'toy-fol': mean_rewards must return .* \(3, 2\)"):
        make_env("toy-fol", d=2, horizon=3, out="transposed")
    with pytest.raises(ValueError, match=r"'toy-fol': sample_rewards must return a floating"):
        make_env("toy-fol", d=2, horizon=3, out="int")
    with pytest.raises(ValueError, match=r"must be hashable"):
        registry.check_environment(ToyFOL(d=2, horizon=3, shift=[1.0]), "toy-fol")


def test_only_the_builtin_gaussian_env_gets_its_closed_forms():
    @dataclasses.dataclass(frozen=True)
    class Louder(GaussianFOLEnv):
        def sample_rewards(self, key, task):
            return 100.0 * super().sample_rewards(key, task)

    plain = GaussianFOL(d=2, horizon=3)
    assert registry.is_gaussian_fol(plain) and registry.is_gaussian_fol(as_environment(plain))
    assert not registry.is_gaussian_fol(Louder(d=2, horizon=3))
    with pytest.raises(ValueError, match="Louder is not registered"):
        env_name(Louder(d=2, horizon=3))  # not taken for the plain Gaussian env


def test_d_is_inferred_from_a_fixed_vector():
    assert make_env("bernoulli-fol", horizon=5, means=(0.1, 0.2, 0.3)).d == 3
    env = make_env("gaussian-fol", horizon=5, means=[1.0, -1.0])
    assert env.d == 2 and env.mean_kind == "fixed" and env.mean == (1.0, -1.0)


def test_gaussian_fol_env_is_the_gaussian_module():
    env = make_env("gaussian-fol", horizon=7, d=3, sigma=2.0, mean_scale=1.0)
    assert isinstance(env, GaussianFOL) and env.mean_kind == "random"
    key_task, key_rew = jax.random.split(jax.random.key(4))
    task = env.sample_task(key_task)
    np.testing.assert_array_equal(task, gaussian_module.sample_task(key_task, env))
    np.testing.assert_array_equal(
        env.sample_rewards(key_rew, task), gaussian_module.sample_rewards(key_rew, env, task)
    )
    np.testing.assert_array_equal(env.mean_rewards(task), jnp.broadcast_to(task, (7, 3)))
    plain = GaussianFOL(d=3, horizon=7, sigma=2.0, mean_kind="random", mean_scale=1.0)
    assert as_environment(plain) == env and type(as_environment(plain)) is GaussianFOLEnv
    np.testing.assert_array_equal(
        registry.sample_rewards(key_rew, plain, task), env.sample_rewards(key_rew, task)
    )


# ----------------------------------------------------------------------------- linear trend


def test_linear_trend_fixture_and_statistics():
    env = make_env("linear-trend-fol", horizon=5, start=(0.0, 1.0), end=(1.0, -1.0), sigma=0.5)
    task = env.sample_task(jax.random.key(0))
    expected = [[0, 1], [0.25, 0.5], [0.5, 0], [0.75, -0.5], [1, -1]]
    np.testing.assert_allclose(env.mean_rewards(task), expected, atol=1e-7)
    n = 4000
    r = tables(env, n, seed=1, task=task)
    # Per-entry mean: SE = σ/√n.
    within(r.mean(0), expected, 0.5 / math.sqrt(n))
    # Pooled residual variance over n·T·d normal draws: SE(s²) = σ²·√(2/(N − 1)).
    resid = r - np.asarray(expected)[None]
    N = resid.size
    within(resid.var(), 0.25, 0.25 * math.sqrt(2 / (N - 1)))


def test_linear_trend_random_tasks():
    env = make_env("linear-trend-fol", horizon=4, d=3, low=-2.0, high=1.0)
    n = 4000
    tasks = jax.vmap(env.sample_task)(jax.random.split(jax.random.key(2), n))
    for x in (np.asarray(tasks.start), np.asarray(tasks.end)):
        assert x.min() >= -2.0 and x.max() <= 1.0
        # U[−2, 1]: mean −0.5, SE = 3/√12/√n per coordinate.
        within(x.mean(0), -0.5, 3 / math.sqrt(12 * n))
    # Start and end are independent draws: their correlation is 0 within 5/√n.
    c = np.corrcoef(np.asarray(tasks.start[:, 0]), np.asarray(tasks.end[:, 0]))[0, 1]
    assert abs(c) < 5 / math.sqrt(n)


# ----------------------------------------------------------------------------- sine trend


def test_sine_fixture():
    env = make_env("sine-fol", horizon=4, d=2, amplitude=2.0, offset=1.0)
    task = SineTask(jnp.array([1.0, 2.0]), jnp.array([0.0, math.pi / 2]))
    # Coordinate 0: 1 + 2 sin(2π t/4) = 3, 1, −1, 1. Coordinate 1: 1 + 2 sin(π t + π/2) =
    # 1 + 2 cos(π t) = −1, 3, −1, 3.
    np.testing.assert_allclose(
        env.mean_rewards(task), [[3, -1], [1, 3], [-1, -1], [1, 3]], atol=1e-5
    )


def test_sine_task_distribution_and_noise():
    env = make_env("sine-fol", horizon=50, d=4, freq_low=1.0, freq_high=3.0, sigma=0.3)
    n = 4000
    tasks = jax.vmap(env.sample_task)(jax.random.split(jax.random.key(3), n))
    f, phi = np.asarray(tasks.freq), np.asarray(tasks.phase)
    assert f.min() >= 1.0 and f.max() <= 3.0 and phi.min() >= 0 and phi.max() < 2 * math.pi
    within(f.mean(0), 2.0, 2 / math.sqrt(12 * n))  # U[1, 3]
    within(phi.mean(0), math.pi, 2 * math.pi / math.sqrt(12 * n))  # U[0, 2π)
    # Frequencies of different arms are independent.
    assert abs(np.corrcoef(f[:, 0], f[:, 1])[0, 1]) < 5 / math.sqrt(n)
    task = jax.tree.map(lambda x: x[0], tasks)
    r = tables(env, 1000, seed=4, task=task)
    resid = r - np.asarray(env.mean_rewards(task))[None]
    within(resid.mean(), 0.0, 0.3 / math.sqrt(resid.size))
    within(resid.var(), 0.09, 0.09 * math.sqrt(2 / (resid.size - 1)))


# ----------------------------------------------------------------------------- alternating


def test_alternating_sequence_and_ftl_linear_regret():
    np.testing.assert_array_equal(alternating_sequence(5), [0.5, -1, 1, -1, 1])
    for T in (11, 200):
        env = make_env("alternating-fol", horizon=T, d=3, scale=2.0)
        r = env.sample_rewards(jax.random.key(0), env.sample_task(jax.random.key(1)))
        np.testing.assert_array_equal(r[:, 2], 0.0)
        np.testing.assert_array_equal(r[:, 0], -r[:, 1])
        # S_T = ±(0.5, −0.5, 0)·scale, so the best coordinate earns scale/2 = 1. FTL earns 0
        # in round 1 (uniform) and −scale = −2 in every later round: regret 1 + 2(T − 1).
        ftl = float(static_regret(r, ftl_policies(r, "simplex"), "simplex"))
        assert float(jnp.max(r.sum(0))) == pytest.approx(1.0)
        assert ftl == pytest.approx(1.0 + 2.0 * (T - 1), rel=1e-6)
        # Hedge with η = √(8 ln d/T)/w (w = 2·scale, the reward range) stays within its
        # bound w·√(T ln d/2): sublinear.
        w = 4.0
        eta = math.sqrt(8 * math.log(3) / T) / w
        hedge = float(static_regret(r, hedge_policies(r, eta), "simplex"))
        assert hedge <= w * math.sqrt(T * math.log(3) / 2)


def test_alternating_random_sign():
    env = make_env("alternating-fol", horizon=4, random_sign=True)
    signs = np.asarray(jax.vmap(env.sample_task)(jax.random.split(jax.random.key(0), 400)))
    assert set(np.unique(signs)) == {-1.0, 1.0}
    within(signs.mean(), 0.0, 1 / math.sqrt(400))  # fair ±1: SE = 1/√n


# ----------------------------------------------------------------------------- Bernoulli


def test_bernoulli_fol_statistics():
    p = (0.1, 0.5, 0.85)
    env = make_env("bernoulli-fol", horizon=20, means=p)
    n = 2000
    r = tables(env, n, seed=5, task=env.sample_task(jax.random.key(0)))
    assert set(np.unique(r)) <= {0.0, 1.0}
    m = r.mean(axis=(0, 1))
    se = np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / (n * env.horizon))
    within(m, p, se)
    # Coordinates and rounds are independent: correlations 0 within 5/√N.
    flat = r.reshape(-1, 3)
    assert abs(np.corrcoef(flat[:, 0], flat[:, 1])[0, 1]) < 5 / math.sqrt(flat.shape[0])
    lag = np.corrcoef(r[:, :-1, 1].ravel(), r[:, 1:, 1].ravel())[0, 1]
    assert abs(lag) < 5 / math.sqrt(n * (env.horizon - 1))


def test_bernoulli_fol_random_tasks():
    env = make_env("bernoulli-fol", horizon=3, d=2, low=0.2, high=0.6)
    n = 4000
    p = np.asarray(jax.vmap(env.sample_task)(jax.random.split(jax.random.key(6), n)))
    assert p.min() >= 0.2 and p.max() <= 0.6
    within(p.mean(0), 0.4, 0.4 / math.sqrt(12 * n))


# ----------------------------------------------------------------------------- properties


@given(
    seed=st.integers(0, 2**16),
    name=st.sampled_from(["linear-trend-fol", "sine-fol", "alternating-fol"]),
    T=st.sampled_from([2, 17]),
)
def test_noise_free_rewards_equal_their_means(seed, name, T):
    env = make_env(name, horizon=T, d=3, sigma=0.0)
    key_task, key_rew = jax.random.split(jax.random.key(seed))
    task = env.sample_task(key_task)
    np.testing.assert_array_equal(env.sample_rewards(key_rew, task), env.mean_rewards(task))
    lo, hi = env.reward_range
    mu = np.asarray(env.mean_rewards(task))
    assert mu.min() >= lo - 1e-6 and mu.max() <= hi + 1e-6


@given(seed=st.integers(0, 2**16), T=st.sampled_from([2, 9, 30]))
def test_linear_trend_is_linear(seed, T):
    env = make_env("linear-trend-fol", horizon=T, d=2)
    task = env.sample_task(jax.random.key(seed))
    mu = np.asarray(env.mean_rewards(task), np.float64)
    np.testing.assert_allclose(mu[0], task.start, atol=1e-6)
    np.testing.assert_allclose(mu[-1], task.end, atol=1e-6)
    np.testing.assert_allclose(np.diff(mu, 2, axis=0), 0.0, atol=1e-5)  # float32, |μ| ≤ 1
    assert isinstance(task, TrendTask)


# ----------------------------------------------------------------------------- symmetric noise

FULL_INFO = sorted(name for name in ENVS if "bandit" not in name)


@pytest.mark.parametrize("name", FULL_INFO)
def test_symmetric_noise_is_declared_and_true_to_the_noise(name):
    # Every built-in full-information env declares symmetric_noise (antithetic direct training
    # relies on it). Where it is True, the sample skewness of R − μ is 0 within 5 SE (SE of a
    # skewness ≈ sqrt(6/n) = 0.0105 for n = 2000·9·3 = 54000 values, with the noise on:
    # sigma = 1); Bernoulli noise with p = (0.1, 0.2, 0.3) has skewness (1 − 2p)/sqrt(p(1 − p))
    # ≥ 0.87, so it must be declared False.
    env_cls = ENVS[name].cls
    assert isinstance(getattr(env_cls, "symmetric_noise", None), bool), name
    opts = dict(MINIMAL[name])
    if name == "bernoulli-fol":
        opts["means"] = (0.1, 0.2, 0.3)
    elif name != "gaussian-fol":
        opts["sigma"] = 1.0
    env = make_env(name, **opts)
    key_task, key_rew = jax.random.split(jax.random.key(5))
    n = 2000
    tasks = jax.vmap(env.sample_task)(jax.random.split(key_task, n))
    noise = np.asarray(
        jax.vmap(env.sample_rewards)(jax.random.split(key_rew, n), tasks)
        - jax.vmap(env.mean_rewards)(tasks),
        np.float64,
    ).reshape(-1, env.d)
    z = (noise - noise.mean(0)) / noise.std(0)
    skew = np.mean(z**3, axis=0)
    if env_cls.symmetric_noise:
        within(skew, 0.0, math.sqrt(6 / noise.shape[0]) * np.ones(env.d))
    else:
        assert np.all(np.abs(skew) > 0.5), skew
