"""Direct training (THEORY §3 objectives): convergence to W*, determinism, no recompilation."""

import dataclasses
import json
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmft_theory.envs import GaussianFOL, make_env, registry
from rmft_theory.keys import Seeds
from rmft_theory.models import make_model, params_from_weights
from rmft_theory.objectives import imitation_loss, squared_regret_loss
from rmft_theory.rmft import lsa_weight_metrics
from rmft_theory.theory import eta_star, ftrl_weights
from rmft_theory.theory_path import train_theory
from rmft_theory.train import (
    DirectTrainConfig,
    check_full_information,
    init_state,
    make_train_step,
    sample_batch,
    train_direct,
)

ENV = GaussianFOL(d=2, horizon=10)


@pytest.mark.parametrize("objective", ["imitation", "regret-loss"])
def test_small_configuration_converges_to_w_star(objective):
    # d=2, T=10, 1200 steps of 256 fresh tasks (≈3·10⁵ sequences). Across seeds 0..4 the final
    # relative error measured 0.08–0.9% for both objectives; the 3% tolerance is > 3× the worst
    # seed, while an untrained model sits at > 50% and a wrong W* (e.g. η*·I for T=20 instead
    # of T=10, 29% away) would fail. The even terms measured < 0.05% of ‖W*‖ (tolerance 1%).
    config = DirectTrainConfig(objective, steps=1200, batch_size=256, chunk=400)
    summary, curves = train_theory(ENV, config, Seeds.from_seed(0), quiet=True)
    assert curves["rel_error"][0] > 0.5
    assert summary["rel_error"] < 0.03
    assert summary["quad_rel"] < 0.01 and summary["drift_rel"] < 0.01
    # The policies agree with FTRL at W* on held-out sequences: measured ≤ 0.8% of the policies'
    # mean norm over the same seeds; tolerance 3%.
    assert summary["heldout_policy_distance_rel"] < 0.03


def test_training_is_deterministic_given_seeds():
    config = DirectTrainConfig("imitation", steps=20, batch_size=16, chunk=10)
    a, _ = train_theory(ENV, config, Seeds.from_seed(3), quiet=True)
    b, _ = train_theory(ENV, config, Seeds.from_seed(3), quiet=True)
    np.testing.assert_array_equal(a["W_eff"], b["W_eff"])
    c, _ = train_theory(ENV, config, Seeds(init=3, tasks=3, rewards=4), quiet=True)
    assert not np.array_equal(a["W_eff"], c["W_eff"])


def test_train_step_does_not_recompile():
    model = make_model("lsa", ENV.d)
    config = DirectTrainConfig("regret-loss", steps=10, batch_size=8, chunk=10)
    step = jax.jit(make_train_step(lambda p, r: model.apply({"params": p}, r), ENV, config))
    state = init_state(model, ENV, config, Seeds.from_seed(0))
    state, _ = step(state)
    state, _ = step(state)
    state, _ = step(state)
    assert step._cache_size() == 1


class _Killed(Exception):
    """Stands in for an interruption between two chunks."""


def test_interrupted_direct_run_resumes_bit_identically(tmp_path, monkeypatch):
    from rmft_theory import train

    model = make_model("lsa", ENV.d)
    config = DirectTrainConfig("regret-loss", steps=40, batch_size=8, chunk=10)
    metrics_fn = lsa_weight_metrics(ftrl_weights(ENV.cov_matrix, ENV.horizon), ENV.reward_scale)
    seeds = Seeds.from_seed(5)
    full = train_direct(model, ENV, config, seeds, metrics_fn=metrics_fn, quiet=True)

    # Killed after chunk 1's record was written but before its checkpoint: the resumed run
    # starts after chunk 0 and overwrites the stale record.
    real_save = train.save_checkpoint

    def save_then_die(directory, state, step, meta):
        if step == 2:
            raise _Killed
        return real_save(directory, state, step, meta)

    monkeypatch.setattr(train, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        train_direct(model, ENV, config, seeds, metrics_fn=metrics_fn, quiet=True,
                     checkpoint_dir=tmp_path)  # fmt: skip
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    assert (tmp_path / "records" / "step_000001.npz").exists()
    # Resumed with another metrics_fn: refused before any chunk runs (the checkpoint stays).
    with pytest.raises(ValueError, match="metrics_fn must give the metrics"):
        train_direct(model, ENV, config, seeds, quiet=True, checkpoint_dir=tmp_path)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 1
    resumed = train_direct(
        model, ENV, config, seeds, metrics_fn=metrics_fn, quiet=True, checkpoint_dir=tmp_path
    )
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    assert full.metrics.keys() == resumed.metrics.keys()
    for k in full.metrics:
        assert resumed.metrics[k].dtype == full.metrics[k].dtype
        np.testing.assert_array_equal(full.metrics[k], resumed.metrics[k])
    assert resumed.timings.compile_s > 0 and resumed.timings.run_s > 0

    # A finished run: nothing compiles, nothing runs, the same answer from the checkpoint,
    # with the compiling session's compile time and every chunk's run time.
    again = train_direct(model, ENV, config, seeds, quiet=True, checkpoint_dir=tmp_path,
                         metrics_fn=metrics_fn)  # fmt: skip
    assert again.timings.compile_s == resumed.timings.compile_s
    assert again.timings.run_s == pytest.approx(resumed.timings.run_s, rel=1e-12)
    np.testing.assert_array_equal(again.metrics["loss"], full.metrics["loss"])

    # Another run's settings: refused, naming the field, before any array is read.
    other = dataclasses.replace(config, learning_rate=config.learning_rate / 2)
    with pytest.raises(ValueError, match=r"different settings \(config\.learning_rate\)"):
        train_direct(model, ENV, other, seeds, quiet=True, checkpoint_dir=tmp_path)


def test_antithetic_batch_mirrors_around_the_mean():
    env = GaussianFOL(d=3, horizon=5, mean_kind="random", mean_scale=2.0)
    kt, kr = jax.random.split(jax.random.key(0))
    batch = sample_batch(kt, kr, env, 8, antithetic=True)
    # Pairs (i, i+4) average to their shared task mean, which is constant over t.
    mid = 0.5 * (batch[:4] + batch[4:])
    np.testing.assert_allclose(mid, jnp.broadcast_to(mid[:, :1], mid.shape), atol=1e-6)


def test_antithetic_mirror_follows_a_time_varying_mean():
    # linear-trend-fol: μ_t changes with t, so the mirror must be 2μ_t − R_t round by round.
    env = make_env("linear-trend-fol", d=3, horizon=7, sigma=0.5)
    kt, kr = jax.random.split(jax.random.key(1))
    batch = sample_batch(kt, kr, env, 8, antithetic=True)
    tasks = jax.vmap(env.sample_task)(jax.random.split(kt, 4))
    means = jax.vmap(env.mean_rewards)(tasks)
    assert not np.allclose(means[:, 0], means[:, -1])  # the trend does move
    # The first half is the plain batch of 4; the second half its mirror around μ_t.
    np.testing.assert_array_equal(batch[:4], sample_batch(kt, kr, env, 4, antithetic=False))
    np.testing.assert_allclose(batch[4:], 2 * means - batch[:4], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["gaussian-fol", "linear-trend-fol", "sine-fol", "alternating-fol"]
)
def test_antithetic_is_accepted_for_symmetric_noise(name):
    env = make_env(name, horizon=5) if name == "alternating-fol" else make_env(name, d=2, horizon=5)
    assert registry.as_environment(env).symmetric_noise is True
    check_full_information(env, antithetic=True)
    kt, kr = jax.random.split(jax.random.key(2))
    assert sample_batch(kt, kr, env, 8, antithetic=True).shape == (8, 5, 2)


def test_antithetic_is_rejected_for_skewed_or_undeclared_noise():
    env = make_env("bernoulli-fol", d=2, horizon=5)
    check_full_information(env, antithetic=False)
    with pytest.raises(
        ValueError, match=r"antithetic must be false .*BernoulliFOL.*symmetric_noise"
    ):
        check_full_information(env, antithetic=True)

    # A user's env that does not declare symmetric_noise counts as False.
    undeclared = Undeclared(d=2, horizon=5)
    keys = jax.random.split(jax.random.key(0))
    with pytest.raises(ValueError, match="Undeclared, whose class does not set symmetric_noise"):
        sample_batch(*keys, undeclared, 8, antithetic=True)
    assert sample_batch(*keys, undeclared, 8).shape == (8, 5, 2)


@dataclasses.dataclass(frozen=True)
class Undeclared:
    """A minimal full-information env without ``symmetric_noise``."""

    d: int
    horizon: int
    feedback: ClassVar[str] = "full"
    stationary: ClassVar[bool] = True

    def sample_task(self, key):
        return jax.random.uniform(key, (self.d,))

    def mean_rewards(self, task):
        return jnp.broadcast_to(task, (self.horizon, self.d))

    def sample_rewards(self, key, task):
        return task[None, :] + jax.random.exponential(key, (self.horizon, self.d)) - 1.0


class WrongShape(nn.Module):
    """A plugin model that returns (T, 1) instead of (T, d): it would broadcast silently."""

    d: int

    @nn.compact
    def __call__(self, rewards_TxD):
        w = self.param("w", nn.initializers.constant(0.1), (1,))
        return jnp.sum(jnp.cumsum(rewards_TxD, 0) - rewards_TxD, -1, keepdims=True) * w[0]


def test_direct_training_checks_the_model_outputs():
    config = DirectTrainConfig(steps=2, chunk=1, batch_size=4)
    with pytest.raises(ValueError, match=r"model outputs must have the rewards' shape \(10, 2\)"):
        train_direct(WrongShape(d=2), ENV, config, Seeds.from_seed(0), quiet=True)


def test_objectives_at_the_closed_form():
    # At the FTRL parameters, the imitation loss on a sequence equals a hand computation.
    W = 0.2 * jnp.eye(2)
    rewards = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    g = make_model("lsa", 2).apply({"params": params_from_weights(W)}, rewards)
    np.testing.assert_allclose(g, [[0, 0], [0.2, 0], [0.2, 0.2]], atol=1e-7)
    pi_star = np.array([2.0, 2.0]) / np.sqrt(8)
    expected = np.mean([np.sum((np.asarray(gt) - pi_star) ** 2) for gt in g])
    assert float(imitation_loss(g, rewards)) == pytest.approx(expected, rel=1e-6)
    earned = 0.0 + 0.0 + 0.4
    assert float(squared_regret_loss(g, rewards, 1.0, 0.5)) == pytest.approx(
        (np.sqrt(8) - 0.5 - earned) ** 2, rel=1e-6
    )


def test_w_star_target_is_the_theory_one():
    np.testing.assert_allclose(
        ftrl_weights(ENV.cov_matrix, ENV.horizon), eta_star(2, 10) * np.eye(2), rtol=1e-9
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"objective": "mse"}, "objective"),
        ({"steps": 0}, "steps"),
        ({"batch_size": 3}, "batch_size"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"steps": 10, "chunk": 3}, "steps"),
        ({"regret_baseline": "ema"}, "regret_baseline"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DirectTrainConfig(**kwargs)


def test_the_theory_path_takes_the_gaussian_env_only():
    # W* is the Gaussian closed form (THEORY §3): other environments have none to measure against.
    with pytest.raises(ValueError, match=r"^env must be the built-in GaussianFOL.*BernoulliFOL"):
        train_theory(make_env("bernoulli-fol", d=2, horizon=5), DirectTrainConfig(), Seeds())
