"""Bandit rollouts of a causal (T, d) → (T, d) model through importance-weighted inputs.

Under bandit feedback the learner sees only ``r_t(a_t)``, so its input depends on its own
actions and the rollout is sequential: a ``lax.scan`` over rounds (vmap over trajectories and
tasks at the call site, one ``jit`` around everything).

**Inputs.** The model keeps its full-information contract (one (T, d) history to (T, d) raw
outputs ``g_t`` that depend only on rows before t). Round s enters it as the importance-weighted
reward estimate EXP3 uses (Auer et al. 2002),

    r̂_s = r_s(a_s) e_{a_s} / p_s(a_s)        (zero on the arms not pulled),

which is unbiased, ``E[r̂_s | past] = r_s``, so a model trained with full information can act on
a bandit unchanged.

**Policy.** ``p_t = (1 − γ) softmax(g_t/τ) + γ/d`` with ``g = f_θ(r̂_1..r̂_{t−1})``; ``γ > 0``
bounds the weights by ``d/γ``. The arm is drawn by the inverse CDF of one ``U[0, 1)`` from
``fold_in(key, t)`` (t = 0..T−1), the draw that :func:`rmft_theory.baselines.bandits.run_bandit`
gives a baseline with the same key.

**Hedge on r̂ is EXP3.** If ``g_t = η Σ_{s<t} r̂_s`` (the single-layer LSA with ``W_eff = ηI``),
then ``p_t`` is EXP3's distribution with weights ``w_a = exp(η Σ_{s<t} r̂_s(a))``; with
``η = γ/d`` and τ = 1 it is exactly Auer et al.'s EXP3(γ) (tests/test_bandit_filter.py).

**Cost.** Because the model is causal, round t may evaluate it on the whole zero-padded buffer of
estimates (rows ≥ t are still zero and cannot affect row t) and read row t: T model evaluations
per trajectory. With ``blocks = B > 1`` the rounds are split into B consecutive blocks and the
rounds of block b evaluate the model on the buffer's prefix up to the block's end only (exact by
causality, equal up to float rounding), which roughly halves the cost for a Transformer. A
:class:`Recurrent` model (e.g. :func:`lsa_recurrent`) instead carries an O(1)-per-round state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rmft_theory import metrics
from rmft_theory.baselines import bandits as bb
from rmft_theory.baselines.bandits import sample_categorical
from rmft_theory.envs.registry import as_environment
from rmft_theory.models.lsa import key_vector
from rmft_theory.rollout import model_outputs
from rmft_theory.validation import check_nonnegative, check_positive, check_positive_int

ApplyFn = Callable[..., jax.Array]  # apply_fn(params, inputs_TxD) -> g_TxD


@dataclasses.dataclass(frozen=True)
class BanditSampling:
    """How a model's raw outputs become a bandit policy ``p_t = (1 − γ) softmax(g_t/τ) + γ/d``.

    Attributes:
      temperature: softmax temperature τ.
      mix: uniform exploration γ ∈ [0, 1] (EXP3's γ); ``γ > 0`` bounds ``1/p_t(a) ≤ d/γ``.
      blocks: B ≥ 1 blocks of rounds; block b evaluates the model on the input prefix up to its
        last round (module docstring). 1 evaluates the whole buffer every round; the default 4
        made a width-32, depth-2 Transformer's rollouts (T = 50) about 3x faster on CPU.
    """

    temperature: float = 1.0
    mix: float = 0.0
    blocks: int = 4

    def __post_init__(self):
        check_positive("temperature", self.temperature)
        check_nonnegative("mix", self.mix)
        if self.mix > 1:
            raise ValueError(f"mix must lie in [0, 1], got {self.mix}")
        check_positive_int("blocks", self.blocks)


def action_probabilities(g_D: jax.Array, temperature: float, mix: float) -> jax.Array:
    """``p = (1 − γ) softmax(g/τ) + γ/d`` (THEORY §4, action sampling with EXP3's mixing)."""
    d = g_D.shape[-1]
    return (1.0 - mix) * jax.nn.softmax(g_D / temperature, axis=-1) + mix / d


def importance_weighted(arm: jax.Array, reward: jax.Array, p_D: jax.Array) -> jax.Array:
    """EXP3's unbiased estimate ``r̂ = r e_a / p_a`` of the full reward vector, (d,)."""
    e_D = jax.nn.one_hot(arm, p_D.shape[-1], dtype=p_D.dtype)
    return e_D * (reward / p_D[arm])


class Recurrent(NamedTuple):
    """A model with an O(1)-per-round state, equivalent to its (T, d) → (T, d) form.

    ``init(params, d) -> carry``; ``output(params, carry) -> g_D`` (the output for the next
    round, from the inputs so far); ``update(params, carry, x_D) -> carry`` (append one input).
    """

    init: Callable[[Any, int], Any]
    output: Callable[[Any, Any], jax.Array]
    update: Callable[[Any, Any, jax.Array], Any]


def lsa_recurrent() -> Recurrent:
    """The single-layer LSA (THEORY §2) as a recurrence: ``g_t = V z_{t−1}``.

    ``z_t = z_{t−1} + e_t (e_tᵀ k)`` with ``e_t = [x_t; 1]`` and ``k = Kᵀ Q c``; ``z_0 = 0``.
    """

    def init(params, d: int):
        return jnp.zeros((d + 1,), params["V"].dtype)

    def output(params, z_E):
        return params["V"] @ z_E

    def update(params, z_E, x_D):
        e_E = jnp.concatenate([x_D, jnp.ones((1,), x_D.dtype)]).astype(z_E.dtype)
        return z_E + e_E * (e_E @ key_vector(params))

    return Recurrent(init, output, update)


class BanditTrajectory(NamedTuple):
    """One trajectory: arms ``a_t`` (T,), policies ``p_t`` (T, d), inputs ``r̂_t`` (T, d),
    observed rewards ``r_t(a_t)`` (T,)."""

    actions: jax.Array
    probs: jax.Array
    inputs: jax.Array
    observed: jax.Array


def _play(key, t, g_D, rewards_TxD, sampling: BanditSampling):
    """One round from the model output ``g_t``: the arm, ``p_t``, ``r_t(a_t)`` and ``r̂_t``."""
    p_D = action_probabilities(g_D.astype(rewards_TxD.dtype), sampling.temperature, sampling.mix)
    u = jax.random.uniform(jax.random.fold_in(key, t), dtype=p_D.dtype)
    a_t = sample_categorical(u, p_D)
    r_t = rewards_TxD[t, a_t]
    return a_t, p_D, r_t, importance_weighted(a_t, r_t, p_D)


def block_ends(horizon: int, blocks: int) -> tuple[int, ...]:
    """The (exclusive) last round of each of ``min(blocks, T)`` near-equal blocks."""
    n = min(blocks, horizon)
    return tuple(math.ceil(horizon * (b + 1) / n) for b in range(n))


def bandit_trajectory(
    model: ApplyFn | Recurrent,
    params,
    rewards_TxD: jax.Array,
    key: jax.Array,
    sampling: BanditSampling,
) -> BanditTrajectory:
    """Play one bandit trajectory against the full reward table ``r_t(a)`` (seen only at a_t).

    Round t (0-indexed): ``g_t = f_θ(r̂_1..r̂_{t−1})``, ``p_t = (1 − γ) softmax(g_t/τ) + γ/d``,
    ``a_t`` = inverse CDF of ``U(fold_in(key, t))`` under ``p_t``, then
    ``r̂_t = r_t(a_t) e_{a_t}/p_t(a_t)`` is written into row t of the input buffer. ``model`` is
    an apply function (evaluated on the zero-padded buffer, module docstring) or a
    :class:`Recurrent`.
    """
    T, d = rewards_TxD.shape
    if isinstance(model, Recurrent):

        def step(carry, t):
            g_D = model.output(params, carry)
            a_t, p_D, r_t, x_D = _play(key, t, g_D, rewards_TxD, sampling)
            return model.update(params, carry, x_D), (a_t, p_D, x_D, r_t)

        _, out = jax.lax.scan(step, model.init(params, d), jnp.arange(T))
        return BanditTrajectory(*out)

    buffer_TxD = jnp.zeros((T, d), rewards_TxD.dtype)
    outs, start = [], 0
    for end in block_ends(T, sampling.blocks):  # a few static blocks, each one lax.scan

        def step(buf_TxD, t, end=end):
            g_D = model_outputs(model, params, buf_TxD[:end])[t]
            a_t, p_D, r_t, x_D = _play(key, t, g_D, rewards_TxD, sampling)
            return buf_TxD.at[t].set(x_D), (a_t, p_D, x_D, r_t)

        buffer_TxD, out = jax.lax.scan(step, buffer_TxD, jnp.arange(start, end))
        outs.append(out)
        start = end
    return BanditTrajectory(*(jnp.concatenate(parts, axis=0) for parts in zip(*outs)))


def teacher_forced_probabilities(
    apply_fn: ApplyFn, params, inputs_TxD: jax.Array, sampling: BanditSampling
) -> jax.Array:
    """``p_t`` of every round from one pass over a finished trajectory's inputs, (T, d).

    By causality this equals the ``probs`` recorded during :func:`bandit_trajectory`; it is what
    the cross-entropy fine-tuning of the regret filter differentiates.
    """
    g_TxD = model_outputs(apply_fn, params, inputs_TxD)
    return action_probabilities(g_TxD, sampling.temperature, sampling.mix)


class BanditRollout(NamedTuple):
    """L trajectories of one task; they face the same reward table (common random numbers)."""

    policies: jax.Array  # (L, T, d) one-hot e_{a_t}
    probs: jax.Array  # (L, T, d) sampling distributions p_t
    actions: jax.Array  # (L, T) int32 arms a_t
    inputs: jax.Array  # (L, T, d) importance-weighted estimates r̂_t (the model's inputs)
    observed: jax.Array  # (L, T) realised rewards r_t(a_t)
    rewards: jax.Array  # (T, d) the task's reward table r_t(a)
    means: jax.Array  # (T, d) the task's mean table μ_t(a)
    regret: jax.Array  # (L,) realised regret max_a Σ_t r_t(a) − Σ_t r_t(a_t)
    pseudo_regret: jax.Array  # (L,) max_a Σ_t μ_t(a) − Σ_t μ_t(a_t)
    earned: jax.Array  # (L,) Σ_t r_t(a_t)


def rollout_bandit_task(
    model: ApplyFn | Recurrent,
    params,
    means_TxD: jax.Array,
    rewards_TxD: jax.Array,
    key: jax.Array,
    sampling: BanditSampling,
    n_rollouts: int,
) -> BanditRollout:
    """``n_rollouts`` trajectories of one task (keys ``split(key, L)``), with their regrets.

    Realised regret (comparator: the best arm in hindsight on the realised table) and
    pseudo-regret (comparator: the best arm in mean), THEORY §1 and :mod:`rmft_theory.metrics`.
    """
    check_positive_int("rollouts", n_rollouts)
    if rewards_TxD.ndim != 2 or means_TxD.shape != rewards_TxD.shape:
        raise ValueError(
            f"rewards and means must be (T, d) tables of one task, got "
            f"{tuple(rewards_TxD.shape)} and {tuple(means_TxD.shape)}"
        )
    keys_L = jax.random.split(key, n_rollouts)
    traj = jax.vmap(bandit_trajectory, in_axes=(None, None, None, 0, None))(
        model, params, rewards_TxD, keys_L, sampling
    )
    d = rewards_TxD.shape[1]
    return BanditRollout(
        policies=jax.nn.one_hot(traj.actions, d, dtype=rewards_TxD.dtype),
        probs=traj.probs,
        actions=traj.actions,
        inputs=traj.inputs,
        observed=traj.observed,
        rewards=rewards_TxD,
        means=means_TxD,
        regret=jax.vmap(metrics.realised_regret, in_axes=(None, 0))(rewards_TxD, traj.actions),
        pseudo_regret=jax.vmap(metrics.pseudo_regret, in_axes=(None, 0))(means_TxD, traj.actions),
        earned=jnp.sum(traj.observed, axis=-1),
    )


def rollout_bandit(
    model: ApplyFn | Recurrent,
    params,
    means_MxTxD: jax.Array,
    rewards_MxTxD: jax.Array,
    key: jax.Array,
    sampling: BanditSampling,
    n_rollouts: int,
) -> BanditRollout:
    """:func:`rollout_bandit_task` vmapped over M tasks (keys ``split(key, M)``)."""
    if rewards_MxTxD.ndim != 3:
        raise ValueError(f"rewards must have shape (M, T, d), got {tuple(rewards_MxTxD.shape)}")
    keys_M = jax.random.split(key, rewards_MxTxD.shape[0])
    return jax.vmap(rollout_bandit_task, in_axes=(None, None, 0, 0, 0, None, None))(
        model, params, means_MxTxD, rewards_MxTxD, keys_M, sampling, n_rollouts
    )


def sample_tables(env, key_tasks: jax.Array, key_rewards: jax.Array, n: int):
    """``n`` tasks of any registered environment: mean tables and reward tables, (n, T, d) each.

    Task i uses ``split(key_tasks, n)[i]`` and its rewards ``split(key_rewards, n)[i]``.
    """
    env = as_environment(env)
    tasks = jax.vmap(env.sample_task)(jax.random.split(key_tasks, n))
    means_NxTxD = jax.vmap(env.mean_rewards)(tasks)
    rewards_NxTxD = jax.vmap(env.sample_rewards)(jax.random.split(key_rewards, n), tasks)
    return means_NxTxD, rewards_NxTxD


class ModelBanditState(NamedTuple):
    """The importance-weighted inputs so far (horizon, d) and the rounds played ``t``."""

    inputs: jax.Array
    t: jax.Array


def as_bandit_algorithm(
    apply_fn: ApplyFn, params, horizon: int, sampling: BanditSampling
) -> bb.BanditAlgorithm:
    """The model as a :class:`~rmft_theory.baselines.bandits.BanditAlgorithm`.

    ``act`` draws ``a_t ~ p_t`` (inverse CDF of one uniform from its key) from the zero-padded
    buffer of estimates; ``update`` writes ``r̂_t`` into row t. Under
    :func:`~rmft_theory.baselines.bandits.run_bandit` it plays exactly the arms of
    :func:`bandit_trajectory` with the same key (``blocks`` is ignored; ``update`` re-evaluates
    the model for ``p_t(a_t)``, so it costs twice as much). ``horizon`` must be at least the
    number of rounds played.
    """
    check_positive_int("horizon", horizon)

    def probs(state: ModelBanditState) -> jax.Array:
        g_D = model_outputs(apply_fn, params, state.inputs)[state.t]
        return action_probabilities(
            g_D.astype(state.inputs.dtype), sampling.temperature, sampling.mix
        )

    def init(d: int) -> ModelBanditState:
        return ModelBanditState(
            jnp.zeros((horizon, d), jnp.result_type(float)), jnp.zeros((), jnp.int32)
        )

    def act(key, state: ModelBanditState):
        p_D = probs(state)
        return sample_categorical(jax.random.uniform(key, dtype=p_D.dtype), p_D)

    def update(state: ModelBanditState, arm, reward):
        x_D = importance_weighted(arm, reward.astype(state.inputs.dtype), probs(state))
        return ModelBanditState(state.inputs.at[state.t].set(x_D), state.t + 1)

    return bb.BanditAlgorithm(init, act, update)
