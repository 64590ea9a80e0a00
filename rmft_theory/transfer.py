"""Generalisation of a trained policy model beyond its training setting.

A model is trained once on full-information simplex tasks and then run, unchanged, on longer
horizons, other numbers of actions (arm-equivariant models only), other reward processes, and
bandit feedback (through the importance-weighted inputs of :mod:`rmft_theory.bandit_rollout`).

**Direct training on the simplex.** :func:`train_simplex_regret` minimises the expected static
regret of the softmax policy ``π_t = softmax(g_θ,t/τ)`` over fresh tasks,

    L(θ) = E[(max_a S_T(a) − Σ_t <π_t, R_t>)/T],

THEORY §3 objective (2) with ``h(x) = x`` on the simplex. The comparator does not depend on θ,
so this is maximising the expected reward; on random-mean tasks its minimiser plays towards the
leading arm (Hedge at large η), on zero-mean tasks every policy has the same expected regret
(THEORY §3 cautions), so train on random means. It is the cheap deterministic counterpart of the
regret filter with action sampling (no rollouts, one pass per task).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmft_theory import bandit_filter
from rmft_theory.bandit_rollout import BanditSampling, sample_tables
from rmft_theory.baselines import ftl_policies, hedge_policies
from rmft_theory.keys import Seeds
from rmft_theory.progress import Progress, Timings, run_chunks
from rmft_theory.regret import cumulative_regret
from rmft_theory.rmft import tune_eta
from rmft_theory.validation import check_positive, check_positive_int


@dataclasses.dataclass(frozen=True)
class SimplexTrainConfig:
    """Direct training of a softmax policy on its expected static regret (module docstring).

    Attributes:
      steps: Adam steps (a multiple of ``chunk``), each on ``batch_size`` fresh tasks.
      batch_size: tasks per step (one reward sequence each).
      learning_rate: peak learning rate of the cosine schedule.
      temperature: softmax temperature τ of the policy.
      chunk: steps per compiled call (the progress bar's granularity).
    """

    steps: int = 1000
    batch_size: int = 128
    learning_rate: float = 3e-3
    temperature: float = 1.0
    chunk: int = 100

    def __post_init__(self):
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive("learning_rate", self.learning_rate)
        check_positive("temperature", self.temperature)
        check_positive_int("chunk", self.chunk)
        if self.steps % self.chunk:
            raise ValueError(f"steps ({self.steps}) must be a multiple of chunk ({self.chunk})")


def softmax_policies(g_TxD: jax.Array, temperature: float) -> jax.Array:
    """``π_t = softmax(g_t/τ)``, (T, d)."""
    return jax.nn.softmax(g_TxD / temperature, axis=-1)


def simplex_regret_loss(g_TxD: jax.Array, rewards_TxD: jax.Array, temperature: float) -> jax.Array:
    """``(max_a S_T(a) − Σ_t <softmax(g_t/τ), R_t>)/T``: per-round static regret (simplex)."""
    pi_TxD = softmax_policies(g_TxD, temperature)
    best = jnp.max(jnp.sum(rewards_TxD, axis=0))
    return (best - jnp.sum(pi_TxD * rewards_TxD)) / rewards_TxD.shape[0]


class TransferTrainResult(NamedTuple):
    """Trained parameters, the per-step training loss (steps,), and timings."""

    params: Any
    losses: np.ndarray
    timings: Timings


def train_simplex_regret(
    apply_fn: Callable,
    params,
    env,
    config: SimplexTrainConfig,
    seeds: Seeds,
    quiet: bool = True,
) -> TransferTrainResult:
    """Adam on :func:`simplex_regret_loss` with fresh tasks of ``env`` every step.

    Step i draws its tasks from ``fold_in(key_tasks, i)`` and rewards from
    ``fold_in(key_rewards, i)``; ``config.chunk`` steps run as one ``lax.scan`` under ``jit``.
    """
    optimizer = optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps))
    key_tasks, key_rewards = seeds.key("tasks"), seeds.key("rewards")

    def batch_loss(p, rewards_BxTxD):
        g = jax.vmap(apply_fn, in_axes=(None, 0))(p, rewards_BxTxD)
        losses_B = jax.vmap(simplex_regret_loss, in_axes=(0, 0, None))(
            g, rewards_BxTxD, config.temperature
        )
        return jnp.mean(losses_B)

    def step(carry, _):
        p, opt_state, i = carry
        _, rewards = sample_tables(
            env,
            jax.random.fold_in(key_tasks, i),
            jax.random.fold_in(key_rewards, i),
            config.batch_size,
        )
        loss, grads = jax.value_and_grad(batch_loss)(p, rewards)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state, i + 1), loss

    def advance(state):
        return jax.lax.scan(step, state, None, length=config.chunk)

    params = jax.tree.map(jnp.asarray, params)
    state = (params, optimizer.init(params), jnp.zeros((), jnp.int32))
    progress = Progress(config.steps, "train simplex regret", quiet=quiet)
    state, history, timings = run_chunks(
        advance, state, config.steps // config.chunk, progress, units_per_chunk=config.chunk
    )
    return TransferTrainResult(state[0], np.concatenate(history), timings)


def fol_regret_curves(
    apply_fn: Callable, params, rewards_NxTxD: jax.Array, temperature: float
) -> jax.Array:
    """Static regret curves (N, T) of the softmax policy on full-information tasks (simplex)."""

    def one(r_TxD):
        pi_TxD = softmax_policies(apply_fn(params, r_TxD), temperature)
        return cumulative_regret(r_TxD, pi_TxD, "simplex")

    return jax.vmap(one)(rewards_NxTxD)


def hedge_regret_curves(rewards_NxTxD: jax.Array, eta) -> jax.Array:
    """Static regret curves (N, T) of Hedge ``softmax(η S_{t−1})``."""
    return jax.vmap(lambda r: cumulative_regret(r, hedge_policies(r, eta), "simplex"))(
        rewards_NxTxD
    )


def ftl_regret_curves(rewards_NxTxD: jax.Array) -> jax.Array:
    """Static regret curves (N, T) of follow-the-leader on the simplex (ties split uniformly)."""
    return jax.vmap(lambda r: cumulative_regret(r, ftl_policies(r, "simplex"), "simplex"))(
        rewards_NxTxD
    )


def uniform_regret_curves(rewards_NxTxD: jax.Array) -> jax.Array:
    """Static regret curves (N, T) of the uniform point of the simplex (normalised regret's 0)."""
    uniform = jnp.full_like(rewards_NxTxD[0], 1.0 / rewards_NxTxD.shape[-1])
    return jax.vmap(lambda r: cumulative_regret(r, uniform, "simplex"))(rewards_NxTxD)


# ----------------------------------------------------------------------------- evaluation


class TransferRuns(NamedTuple):
    """Per-run regret of one policy on one test setting: final values (N,) and curves (N, T).

    Full information: static regret on the simplex; bandits: pseudo-regret.
    """

    final: np.ndarray
    curves: np.ndarray


def evaluation_tables(env, n: int, seeds: Seeds):
    """The ``n`` evaluation tasks of a setting (mean and reward tables) and the action key."""
    means, rewards = _sample_tables_jit(env, seeds.key("tasks"), seeds.key("rewards"), n)
    return means, rewards, seeds.key("actions")


_sample_tables_jit = jax.jit(sample_tables, static_argnums=(0, 3))
_fol_curves_jit = jax.jit(fol_regret_curves, static_argnums=(0, 3))
_hedge_curves_jit = jax.jit(hedge_regret_curves)
_uniform_curves_jit = jax.jit(uniform_regret_curves)
_ftl_curves_jit = jax.jit(ftl_regret_curves)
_model_runs_jit = jax.jit(bandit_filter.model_runs, static_argnums=(0, 4, 5))


def model_transfer_runs(
    apply_fn: Callable,
    params,
    env,
    tables,
    temperature: float = 1.0,
    mix: float = 0.0,
    chunk: int = 256,
) -> TransferRuns:
    """The model's regret on ``tables = evaluation_tables(env, ...)``, unchanged from training.

    Full information: the softmax policy ``softmax(g_t/τ)`` of the reward history. Bandit
    feedback: the sampling policy ``(1 − γ) softmax(g_t/τ) + γ/d`` fed the importance-weighted
    estimates (:mod:`rmft_theory.bandit_rollout`), run i with ``fold_in(key, i)``.
    """
    means, rewards, key = tables
    if not bandit_filter.is_bandit(env):
        curves = _fol_curves_jit(apply_fn, params, rewards, temperature)
    else:
        sampling = BanditSampling(temperature, mix)
        actions = _model_runs_jit(apply_fn, params, rewards, key, sampling, chunk).actions
        curves = bandit_filter.run_metrics(means, rewards, actions)["pseudo_curve"]
    curves = np.asarray(curves)
    return TransferRuns(curves[:, -1], curves)


def reference_transfer_runs(env, tables, key_tune: jax.Array) -> tuple[dict, dict]:
    """The anchors of normalised regret on one setting: the reference and trivial baselines.

    Full information: Hedge at its best η (tuned by :func:`rmft_theory.rmft.tune_eta` on
    separate tasks drawn from ``key_tune``), the uniform point and follow-the-leader. Bandits:
    UCB1 (:func:`rmft_theory.bandit_filter.baselines`) and the expected pseudo-regret of
    uniform play. Returns ``({"reference": ..., "uniform": ..., ["ftl": ...]}, info)``, each a
    :class:`TransferRuns`.
    """
    means, rewards, key = tables
    if not bandit_filter.is_bandit(env):
        n = rewards.shape[0]
        tune = _sample_tables_jit(env, *jax.random.split(key_tune), n)[1]
        eta = tune_eta(tune, "hedge")
        ref = np.asarray(_hedge_curves_jit(rewards, jnp.asarray(eta, rewards.dtype)))
        uniform = np.asarray(_uniform_curves_jit(rewards))
        ftl = np.asarray(_ftl_curves_jit(rewards))
        info = {"reference": "hedge_best_eta", "hedge_eta": eta}
    else:
        algo = bandit_filter.baselines(env)["ucb1"]
        actions = jax.jit(lambda r, k: bandit_filter.algorithm_runs(algo, r, k))(rewards, key)
        m = bandit_filter.run_metrics(means, rewards, actions)
        ref = np.asarray(m["pseudo_curve"])
        # Uniform play's expected pseudo-regret: max_a Σ_{s≤t} μ_s(a) − Σ_{s≤t} mean_a μ_s(a).
        mu = np.asarray(means, np.float64)
        uniform = np.max(np.cumsum(mu, axis=1), axis=-1) - np.cumsum(mu.mean(-1), axis=1)
        info = {"reference": "ucb1"}
        ftl = None
    runs = {
        "reference": TransferRuns(ref[:, -1], ref),
        "uniform": TransferRuns(uniform[:, -1], uniform),
    }
    if ftl is not None:
        runs["ftl"] = TransferRuns(ftl[:, -1], ftl)
    return runs, info
