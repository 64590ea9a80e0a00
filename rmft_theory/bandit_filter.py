"""The regret filter (THEORY §4) under bandit feedback: rollouts, kept set, held-out evaluation.

:func:`rmft_theory.rmft.make_iteration` and :func:`rmft_theory.rmft.run_filter` dispatch here
when ``env.feedback == "bandit"``; the loop, the fine-tuning (:func:`rmft_theory.rmft.finetune`),
the kept-set buffer and the checkpoints are the full-information filter's. Each iteration:

1. draw M tasks and one reward table ``r_t(a)`` per task; roll out L trajectories per task with
   :func:`rmft_theory.bandit_rollout.rollout_bandit_task` (arms sampled from
   ``p_t = (1 − γ) softmax(g_t/τ) + γ/d``, the model fed the importance-weighted estimates
   ``r̂_s = r_s(a_s) e_{a_s}/p_s(a_s)``); the L trajectories of a task face the same table;
2. score each trajectory (``config.selection``):

   * ``"regret"`` (default): the **realised regret** ``max_a Σ_t r_t(a) − Σ_t r_t(a_t)``
     against the best arm in hindsight on the realised table, the bandit analogue of the
     full-information filter's static regret; it needs only the table, not the means;
   * ``"reward"``: minus the total reward ``Σ_t r_t(a_t)``. The comparator is common to the L
     trajectories of a task, so this keeps the same trajectories as ``"regret"`` per task and
     differs only with ``scope="pooled"``;
   * ``"pseudo-regret"``: ``T max_a μ_a − Σ_t μ_{a_t}`` (the means are an oracle's knowledge;
     it removes the reward noise from the selection);

3. keep the k lowest per task (``scope="task"``) or the ``M·k`` lowest overall (``"pooled"``);
4. fine-tune by cross-entropy of ``softmax(g_θ,t/τ)`` on the kept arms, the model's input being
   **the kept trajectory's own** importance-weighted history. Inputs differ across trajectories
   under bandit feedback, so the kept set stores one entry per kept trajectory
   ``(inputs (T, d), one-hot arms (T, d), weight 1/(M·k))``, ``M·k`` entries per iteration.

The held-out evaluation plays the sampling policy (γ included) once per held-out task with fixed
action keys (common random numbers across iterations) and reports the **pseudo-regret**.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory import metrics
from rmft_theory.bandit_rollout import (
    ApplyFn,
    BanditSampling,
    Recurrent,
    bandit_trajectory,
    rollout_bandit_task,
    sample_tables,
)
from rmft_theory.baselines import bandits as bb
from rmft_theory.envs.registry import as_environment
from rmft_theory.rmft import (
    QUANTILES,
    FilterConfig,
    FilterState,
    KeptSet,
    finetune,
    select_lowest,
)

DEFAULT_BLOCKS = 4


def is_bandit(env) -> bool:
    """Whether ``env`` gives bandit feedback (``env.feedback == "bandit"``)."""
    return getattr(env, "feedback", "full") == "bandit"


def check_config(config: FilterConfig) -> None:
    """The filter settings that bandit feedback requires; one ValueError names the field."""
    if config.noise != "actions":
        raise ValueError(
            f"noise must be 'actions' on a bandit environment (the learner samples arms), "
            f"got {config.noise!r}"
        )
    # The loss needs no check here: FilterConfig pairs noise='actions' with cross-entropy.


def sampling_for(config: FilterConfig, blocks: int = DEFAULT_BLOCKS) -> BanditSampling:
    """The bandit policy of the filter: temperature τ and uniform mixing γ from ``config``."""
    return BanditSampling(config.temperature, config.uniform_mix, blocks)


def entries_per_iteration(config: FilterConfig) -> int:
    """Kept-set entries one iteration adds: one per kept trajectory, ``M·k``."""
    return config.tasks * config.keep


# ----------------------------------------------------------------------------- evaluation


class BanditHeldout(NamedTuple):
    """Held-out tasks: mean and reward tables (N, T, d) and the root key of the action draws."""

    means: jax.Array
    rewards: jax.Array
    key: jax.Array


_sample_tables_jit = jax.jit(sample_tables, static_argnums=(0, 3))


def heldout_tasks(env, n: int, key: jax.Array) -> BanditHeldout:
    """``n`` held-out tasks; run i draws its arms from ``fold_in(key_actions, i)``."""
    key_tasks, key_rewards, key_actions = jax.random.split(key, 3)
    means, rewards = _sample_tables_jit(as_environment(env), key_tasks, key_rewards, n)
    return BanditHeldout(means, rewards, key_actions)


def run_keys(key: jax.Array, n: int) -> jax.Array:
    """Per-run keys ``fold_in(key, i)``, i = 0..n−1 (independent of any batching)."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(n, dtype=jnp.uint32))


def model_runs(
    model: ApplyFn | Recurrent,
    params,
    rewards_NxTxD: jax.Array,
    key: jax.Array,
    sampling: BanditSampling,
    chunk: int | None = None,
):
    """One trajectory of the model per reward table; run i uses ``fold_in(key, i)``.

    Returns a :class:`~rmft_theory.bandit_rollout.BanditTrajectory` with a leading N axis;
    ``chunk`` runs go through the model together (``lax.map``), bounding memory.
    """
    keys_N = run_keys(key, rewards_NxTxD.shape[0])

    def one(xs):
        r_TxD, k = xs
        return bandit_trajectory(model, params, r_TxD, k, sampling)

    return jax.lax.map(one, (rewards_NxTxD, keys_N), batch_size=chunk)


def algorithm_runs(algo: bb.BanditAlgorithm, rewards_NxTxD: jax.Array, key: jax.Array):
    """Arms (N, T) of a baseline, run i with ``fold_in(key, i)`` (the model's draws, too)."""
    keys_N = run_keys(key, rewards_NxTxD.shape[0])
    return jax.vmap(lambda k, r: bb.run_bandit(algo, k, r).actions)(keys_N, rewards_NxTxD)


def run_metrics(means_NxTxD, rewards_NxTxD, actions_NxT) -> dict:
    """Per-run bandit metrics (THEORY §1, :mod:`rmft_theory.metrics`), vmapped over runs.

    ``pseudo_curve`` (N, T); ``pseudo_regret``, ``realised_regret``, ``uniform_regret`` (the
    expected pseudo-regret of uniform play), ``min_pull_fraction`` ``min_a N_a/T`` and
    ``last_pull_best`` (the last round the best arm was pulled, 0 if never), (N,) each.
    """
    d = means_NxTxD.shape[-1]

    def one(mu, r, a):
        return {
            "pseudo_curve": metrics.pseudo_regret_curve(mu, a),
            "pseudo_regret": metrics.pseudo_regret(mu, a),
            "realised_regret": metrics.realised_regret(r, a),
            "uniform_regret": metrics.uniform_regret(mu),
            "min_pull_fraction": metrics.min_pull_fraction(a, d),
            "last_pull_best": metrics.last_pull(a, metrics.best_arm(mu)),
        }

    return jax.vmap(one)(means_NxTxD, rewards_NxTxD, actions_NxT)


@functools.lru_cache(maxsize=16)
def make_evaluate(apply_fn: ApplyFn, config: FilterConfig, metrics_fn=None):
    """A pure ``evaluate(params, heldout) -> metrics`` of the sampling policy on held-out tasks.

    Memoised: the same settings return the same function, so ``jax.jit`` reuses its compiled
    code across :func:`rmft_theory.rmft.run_filter` calls (a resumed run compiles nothing new).

    ``heldout_regret`` (mean final pseudo-regret) and its standard error, ``heldout_curve`` (mean
    pseudo-regret curve), ``heldout_realised_regret`` and ``heldout_min_pull_fraction``, and
    ``metrics_fn(params)``.
    """
    sampling = sampling_for(config)

    def evaluate(params, heldout: BanditHeldout):
        traj = model_runs(
            apply_fn, params, heldout.rewards, heldout.key, sampling, config.task_chunk
        )
        m = run_metrics(heldout.means, heldout.rewards, traj.actions)
        final_N = m["pseudo_regret"]
        out = {
            "heldout_regret": jnp.mean(final_N),
            "heldout_regret_se": jnp.std(final_N) / np.sqrt(final_N.shape[0]),
            "heldout_curve": jnp.mean(m["pseudo_curve"], axis=0),
            "heldout_realised_regret": jnp.mean(m["realised_regret"]),
            "heldout_min_pull_fraction": jnp.mean(m["min_pull_fraction"]),
        }
        if metrics_fn is not None:
            out.update(metrics_fn(params))
        return out

    return evaluate


def unit_rewards(env) -> bool:
    """Whether the environment's rewards lie in [0, 1]."""
    lo, hi = as_environment(env).reward_range
    return lo >= 0 and hi <= 1


def baselines(env, epsilon: float = 0.1) -> dict[str, bb.BanditAlgorithm]:
    """The reference bandit algorithms for ``env``.

    UCB1 (bonus scale 1 on [0, 1] rewards, else the reward scale σ), Thompson sampling
    (Beta–Bernoulli on [0, 1] rewards, else Gaussian with σ), ε-greedy, EXP3 at its standard γ
    (only on [0, 1] rewards) and uniform play.
    """
    env = as_environment(env)
    unit = unit_rewards(env)
    scale = 1.0 if unit else float(env.reward_scale)
    algos = {
        "ucb1": bb.ucb1(scale),
        "thompson": bb.thompson_bernoulli() if unit else bb.thompson_gaussian(scale),
        "epsilon_greedy": bb.epsilon_greedy(epsilon),
    }
    if unit:
        algos["exp3"] = bb.exp3(bb.exp3_gamma(env.d, env.horizon))
    algos["uniform"] = bb.uniform_random()
    return algos


@functools.partial(jax.jit, static_argnums=(0,))
def _baseline_curves(env, means, rewards, key) -> dict:
    return {
        name: run_metrics(means, rewards, algorithm_runs(algo, rewards, key))["pseudo_curve"]
        for name, algo in baselines(env).items()
    }


def reference_curves(env, heldout: BanditHeldout) -> tuple[dict[str, np.ndarray], dict]:
    """Held-out pseudo-regret curves (N, T) of :func:`baselines`, with the model's action keys."""
    curves = _baseline_curves(as_environment(env), heldout.means, heldout.rewards, heldout.key)
    return {name: np.asarray(c) for name, c in curves.items()}, {}


# ----------------------------------------------------------------------------- the iteration


def kept_indices(score_MxL: jax.Array, k: int, scope: str) -> jax.Array:
    """Flat indices ``m·L + l`` (M·k,) of the kept trajectories, task-major.

    ``"task"``: the k lowest scores of each task (:func:`rmft_theory.rmft.select_lowest`);
    ``"pooled"``: the ``M·k`` lowest overall (ties: the lower flat index).
    """
    M, L = score_MxL.shape
    if scope == "task":
        idx_Mxk = jax.vmap(select_lowest, in_axes=(0, None))(score_MxL, k)
        return (jnp.arange(M)[:, None] * L + idx_Mxk).reshape(-1)
    _, idx = jax.lax.top_k(-score_MxL.reshape(-1), M * k)
    return idx


@functools.lru_cache(maxsize=16)
def make_iteration(apply_fn: ApplyFn, env, config: FilterConfig, metrics_fn=None):
    """A pure ``iteration(state, heldout) -> (state, metrics)`` under bandit feedback (module
    docstring); the same state, buffer update and fine-tuning as the full-information filter.
    Memoised like :func:`make_evaluate`.

    Metrics: ``regret_mean``/``regret_std``/``regret_quantiles`` of the rollouts'
    **pseudo-regret** (comparable with the held-out numbers), ``realised_regret_mean``,
    ``threshold`` (mean over tasks of the k-th lowest selection regret per task, or the largest
    kept one when pooled; realised regret for ``selection="reward"``), ``kept_regret_mean`` (in the
    same units) and ``kept_pseudo_regret_mean``, the fine-tuning loss before and after, and
    :func:`make_evaluate`'s held-out metrics.
    """
    check_config(config)
    env = as_environment(env)
    M, L, k = config.tasks, config.rollouts, config.keep
    C = entries_per_iteration(config)
    sampling = sampling_for(config)
    evaluate = make_evaluate(apply_fn, config, metrics_fn)

    def iteration(state: FilterState, heldout: BanditHeldout):
        i = state.iteration
        key_tasks = jax.random.fold_in(state.key_tasks, i)
        key_rewards = jax.random.fold_in(state.key_rewards, i)
        keys_M = jax.random.split(jax.random.fold_in(state.key_noise, i), M)
        means_MxTxD, rewards_MxTxD = sample_tables(env, key_tasks, key_rewards, M)
        T, d = rewards_MxTxD.shape[1:]

        def one_task(xs):
            key, mu_TxD, r_TxD = xs
            ro = rollout_bandit_task(apply_fn, state.params, mu_TxD, r_TxD, key, sampling, L)
            return ro.inputs, ro.actions, ro.regret, ro.pseudo_regret, ro.earned

        inputs_MxLxTxD, actions_MxLxT, realised_MxL, pseudo_MxL, earned_MxL = jax.lax.map(
            one_task, (keys_M, means_MxTxD, rewards_MxTxD), batch_size=config.task_chunk
        )
        regret_MxL = pseudo_MxL if config.selection == "pseudo-regret" else realised_MxL
        score_MxL = -earned_MxL if config.selection == "reward" else regret_MxL
        idx_C = kept_indices(score_MxL, k, config.scope)
        kept_regret_C = regret_MxL.reshape(-1)[idx_C]
        if config.scope == "task":
            threshold = jnp.mean(kept_regret_C.reshape(M, k)[:, -1])
        else:
            threshold = jnp.max(kept_regret_C)
        new = KeptSet(
            inputs_MxLxTxD.reshape(M * L, T, d)[idx_C],
            jax.nn.one_hot(actions_MxLxT.reshape(M * L, T)[idx_C], d, dtype=rewards_MxTxD.dtype),
            jnp.full((C,), 1.0 / C, rewards_MxTxD.dtype),
        )
        slot = (i % (config.iterations if config.accumulate else 1)) * C
        buffer = KeptSet(
            *(
                jax.lax.dynamic_update_slice_in_dim(b, n.astype(b.dtype), slot, axis=0)
                for b, n in zip(state.buffer, new)
            )
        )
        start = state.base_params if config.from_base else state.params
        params, opt_state, losses = finetune(apply_fn, start, buffer, config)
        flat = pseudo_MxL.reshape(-1)
        out = {
            "regret_mean": jnp.mean(flat),
            "regret_std": jnp.std(flat),
            "regret_quantiles": jnp.quantile(flat, jnp.asarray(QUANTILES, flat.dtype)),
            "realised_regret_mean": jnp.mean(realised_MxL),
            "threshold": threshold,
            "kept_regret_mean": jnp.mean(kept_regret_C),
            "kept_pseudo_regret_mean": jnp.mean(pseudo_MxL.reshape(-1)[idx_C]),
            "finetune_loss_start": losses[0],
            "finetune_loss_end": losses[-1],
            **evaluate(params, heldout),
        }
        new_state = state._replace(
            params=params, opt_state=opt_state, buffer=buffer, iteration=i + 1
        )
        return new_state, out

    return iteration
