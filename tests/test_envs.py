"""Gaussian full-information environment: statistics, vmap, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmft_theory.envs import GaussianFOL, sample_rewards, sample_task

FULL = ((1.0, 0.6, 0.2), (0.6, 1.5, -0.4), (0.2, -0.4, 0.8))


@pytest.mark.parametrize(
    "env",
    [
        GaussianFOL(d=3, horizon=50, sigma=2.0),
        GaussianFOL(d=3, horizon=50, cov_kind="diagonal", cov=(0.5, 1.0, 3.0)),
        GaussianFOL(
            d=3, horizon=50, cov_kind="full", cov=FULL, mean_kind="fixed", mean=(1.0, -1.0, 0.5)
        ),
    ],
    ids=["isotropic", "diagonal", "full+fixed-mean"],
)
def test_reward_statistics_match_definition(env):
    # 400 tasks × 50 rounds = 2·10⁴ draws per coordinate. Mean: |error| < 5 SE with
    # SE = sqrt(Σ_ii / n). Covariance: |error| < 5 SE with SE(Σ̂_ij) ≈ sqrt((Σ_ii Σ_jj + Σ_ij²)/n).
    keys = jax.random.split(jax.random.key(0), 400)
    means = jax.vmap(sample_task, in_axes=(0, None))(keys, env)
    rewards = jax.vmap(sample_rewards, in_axes=(0, None, 0))(keys, env, means)
    x = np.asarray(rewards, np.float64).reshape(-1, env.d)
    n = x.shape[0]
    cov = env.cov_matrix
    mu = np.asarray(env.mean) if env.mean_kind == "fixed" else np.zeros(env.d)
    np.testing.assert_array_less(np.abs(x.mean(0) - mu), 5 * np.sqrt(np.diag(cov) / n))
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_array_less(np.abs(np.cov(x.T) - cov), 5 * se_cov)


def test_random_task_means_have_the_configured_scale():
    env = GaussianFOL(d=4, horizon=3, mean_kind="random", mean_scale=0.5)
    means = jax.vmap(sample_task, in_axes=(0, None))(jax.random.split(jax.random.key(1), 4000), env)
    # std of 16000 N(0, 0.25) draws: SE of the sample std ≈ 0.5/sqrt(2·16000) ≈ 0.0028.
    assert float(jnp.std(means)) == pytest.approx(0.5, abs=5 * 0.0028)
    # The rewards of one task are centred on its mean, not on zero.
    r = sample_rewards(jax.random.key(2), GaussianFOL(d=4, horizon=4000, sigma=1.0), means[0])
    np.testing.assert_array_less(np.abs(np.asarray(r.mean(0) - means[0])), 5 / np.sqrt(4000))


def test_same_key_same_rewards():
    env = GaussianFOL(d=2, horizon=7)
    a = sample_rewards(jax.random.key(5), env, jnp.zeros(2))
    b = sample_rewards(jax.random.key(5), env, jnp.zeros(2))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"d": 0, "horizon": 5}, "d must be"),
        ({"d": 2, "horizon": 0}, "horizon"),
        ({"d": 2, "horizon": 5, "sigma": -1.0}, "sigma"),
        ({"d": 2, "horizon": 5, "sigma": 0.0}, "sigma"),
        ({"d": 2, "horizon": 5, "cov_kind": "banded"}, "cov_kind"),
        ({"d": 2, "horizon": 5, "cov_kind": "diagonal", "cov": (1.0,)}, "cov must be"),
        ({"d": 2, "horizon": 5, "cov_kind": "full", "cov": ((1, 2), (2, 1))}, "positive definite"),
        ({"d": 2, "horizon": 5, "cov_kind": "full", "cov": ((1, 0.5), (0, 1))}, "symmetric"),
        ({"d": 2, "horizon": 5, "mean_kind": "fixed", "mean": (1.0,)}, "mean must be"),
        ({"d": 2, "horizon": 5, "mean_kind": "drifting"}, "mean_kind"),
        ({"d": 2, "horizon": 5, "mean_scale": float("nan")}, "mean_scale"),
        # Settings read by one kind only, given under another, are not silently dropped.
        ({"d": 2, "horizon": 5, "mean_scale": 0.3}, "^mean_scale=0.3 needs mean_kind='random'"),
        ({"d": 2, "horizon": 5, "mean": (1.0, 2.0)}, "^mean needs mean_kind='fixed'"),
        (
            {"d": 2, "horizon": 5, "mean_kind": "random", "mean_scale": 1.0, "mean": (1.0, 2.0)},
            "^mean needs",
        ),
        ({"d": 2, "horizon": 5, "cov": (1.0, 2.0)}, "^cov needs cov_kind"),
        ({"d": 2, "horizon": 5, "mean_kind": "random"}, "^mean_scale must be > 0"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GaussianFOL(**kwargs)


def test_config_is_hashable_and_frozen():
    env = GaussianFOL(d=2, horizon=5, cov_kind="full", cov=[[1.0, 0.1], [0.1, 1.0]])
    hash(env)
    with pytest.raises(AttributeError):
        env.d = 3
