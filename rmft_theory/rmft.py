"""The regret filter (Iterative RMFT, THEORY §4) as one jitted, checkpointed iteration.

Each iteration, for M fresh tasks:

1. roll out L exploring trajectories per task from the current model (:mod:`rmft_theory.rollout`;
   the model runs once per task, only the exploration differs across its L trajectories);
2. score each trajectory by its static regret (or, as an ablation, by its total reward);
3. keep the k lowest-regret trajectories per task (or the ``M·k`` best over all tasks);
4. fine-tune on the kept trajectories with ``finetune_steps`` optimiser steps (one ``lax.scan``):
   MSE of the raw outputs ``g_θ,t`` onto the kept policies (THEORY §3 objective (1)), or
   cross-entropy of ``softmax(g_θ,t/τ)`` on the kept actions;
5. repeat from the fine-tuned model (or fine-tune from the base model each time).

Because the kept trajectories of a task share its reward history, they share the model's
input; the loss over them equals, up to a constant, the loss on their **mean** policy (for MSE,
``Σ_j ‖g − π_j‖² = k‖g − π̄‖² + const``; for cross-entropy it is linear in the target). The kept
set is therefore stored per task as (rewards, mean kept policy, weight), which makes the
fine-tuning cost independent of k and L.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from rmft_theory import sharding
from rmft_theory.analysis import invariant_report
from rmft_theory.baselines import ftl_policies, ftrl_policies, hedge_policies
from rmft_theory.checkpoint import (
    META_FILE,
    check_resumable,
    has_checkpoint,
    load_checkpoint,
    load_records,
    run_fingerprint,
    save_checkpoint,
    save_record,
)
from rmft_theory.envs.gaussian import GaussianFOL
from rmft_theory.envs.registry import is_gaussian_fol
from rmft_theory.io import load_json, to_jsonable
from rmft_theory.keys import Seeds
from rmft_theory.models import make_model
from rmft_theory.models.lsa import LinearSelfAttention, invariants, lsa_apply
from rmft_theory.models.lsa_moments import mse_loss_from_moments, mse_moments
from rmft_theory.progress import Timings, check_same_metrics, compile_timed
from rmft_theory.regret import best_fixed_value, cumulative_regret
from rmft_theory.rollout import (
    Exploration,
    earned_from_draws,
    model_outputs,
    noise_free_policies,
    policies_from_draws,
    task_chunk_size,
    task_draws,
    task_elements,
)
from rmft_theory.runtime import compiler_options
from rmft_theory.theory import ftrl_weights
from rmft_theory.train import sample_batch
from rmft_theory.validation import check_choice, check_positive, check_positive_int

LOSSES = ("mse", "cross-entropy")
SELECTIONS = ("regret", "reward", "pseudo-regret")  # "pseudo-regret": bandits only
SCOPES = ("task", "pooled")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant")
FINETUNE_FORMS = ("auto", "direct", "moments")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """Settings of the regret filter (THEORY §4).

    Attributes:
      tasks: fresh tasks M per iteration.
      rollouts: trajectories L per task.
      keep: trajectories k kept per task (``scope="task"``), or ``M·k`` in all (``"pooled"``).
      iterations: filter iterations N. Without ``accumulate`` no iteration depends on N, so a
        finished checkpointed run extends to a larger N by running it again (:func:`run_filter`).
      noise: exploration, ``"per-step"``, ``"per-trajectory"``, ``"actions"`` or ``"none"``.
      noise_scale: Gaussian exploration scale s.
      temperature: softmax temperature τ of ``noise="actions"`` and of the cross-entropy loss.
      space: policy space, ``"ball"`` or ``"simplex"``.
      radius: ball radius ρ.
      loss: ``"mse"`` (raw outputs onto kept policies; Gaussian or no noise) or
        ``"cross-entropy"`` (``softmax(g/τ)`` onto kept actions; ``noise="actions"`` only).
        Default (None): the one that fits the noise, set when the config is built.
      finetune_steps: optimiser steps per iteration (full batch over the kept set).
      optimizer: ``"adam"`` or ``"sgd"``; re-initialised at the start of every iteration.
      learning_rate: peak learning rate.
      schedule: ``"cosine"`` (decay to 0 within each iteration) or ``"constant"``.
      accumulate: fine-tune on the kept sets of all iterations so far, not only the last one.
      from_base: every iteration fine-tunes the base model (rollouts still use the current one).
      selection: ``"regret"`` (lowest regret) or ``"reward"`` (highest total reward); on bandit
        environments also ``"pseudo-regret"`` (:mod:`rmft_theory.bandit_filter`).
      scope: ``"task"`` (k per task) or ``"pooled"`` (the ``M·k`` best over all tasks).
        Within one task the L trajectories share the reward sequence, so the comparator is
        common and regret and reward selection coincide; they differ only when pooled.
      heldout_tasks: fixed held-out tasks for the per-iteration evaluation.
      task_chunk: at most this many tasks rolled out together (the iteration takes chunks of
        about ``rollout.chunk_elements()`` floats, :func:`rmft_theory.rollout.task_chunk_size`;
        memory is bounded by ``task_chunk·L·T·d``).
      uniform_mix: bandit environments only: uniform exploration γ ∈ [0, 1] of the sampling
        policy ``(1 − γ) softmax(g/τ) + γ/d`` (:mod:`rmft_theory.bandit_rollout`).
      finetune_form: how :func:`finetune` evaluates the MSE loss: ``"direct"`` (the model on
        every kept task at every step), ``"moments"`` (sufficient statistics computed once per
        iteration, for models in :data:`MSE_MOMENT_FORMS`: the single-layer LSA) or ``"auto"``
        (moments where available). Both give the same loss and gradients up to float rounding.
    """

    tasks: int = 256
    rollouts: int = 256
    keep: int = 1
    iterations: int = 8
    noise: str = "per-trajectory"
    noise_scale: float = 1.0
    temperature: float = 1.0
    space: str = "ball"
    radius: float = 1.0
    loss: str | None = None
    finetune_steps: int = 200
    optimizer: str = "adam"
    learning_rate: float = 1e-2
    schedule: str = "cosine"
    accumulate: bool = False
    from_base: bool = False
    selection: str = "regret"
    scope: str = "task"
    heldout_tasks: int = 512
    task_chunk: int = 64
    uniform_mix: float = 0.0
    finetune_form: str = "auto"

    def __post_init__(self):
        if self.loss is None:
            object.__setattr__(self, "loss", "cross-entropy" if self.noise == "actions" else "mse")
        check_positive_int("tasks", self.tasks)
        check_positive_int("rollouts", self.rollouts)
        check_positive_int("keep", self.keep)
        if self.keep > self.rollouts:
            raise ValueError(f"keep must be <= rollouts ({self.rollouts}), got {self.keep}")
        check_positive_int("iterations", self.iterations)
        check_choice("loss", self.loss, LOSSES)
        check_positive_int("finetune_steps", self.finetune_steps)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_positive("learning_rate", self.learning_rate)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("selection", self.selection, SELECTIONS)
        check_choice("scope", self.scope, SCOPES)
        check_choice("finetune_form", self.finetune_form, FINETUNE_FORMS)
        check_positive_int("heldout_tasks", self.heldout_tasks)
        check_positive_int("task_chunk", self.task_chunk)
        if (
            isinstance(self.uniform_mix, bool)
            or not isinstance(self.uniform_mix, (int, float))
            or not 0 <= self.uniform_mix <= 1
        ):
            raise ValueError(f"uniform_mix must lie in [0, 1], got {self.uniform_mix!r}")
        for name in ("accumulate", "from_base"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        self.exploration  # noqa: B018  (validates noise, noise_scale, temperature, space, radius)
        if self.loss == "cross-entropy" and self.space != "simplex":
            raise ValueError(
                f"loss must be 'mse' on space {self.space!r} (cross-entropy needs the simplex)"
            )
        # THEORY §4 pairs each policy map with its fine-tuning loss: sampled actions come from
        # softmax(g/τ), which cross-entropy fits; Gaussian noise plays Proj(g + ξ), which MSE on
        # the kept policies fits. Crossing them would fit one map and roll out the other.
        if self.noise == "actions" and self.loss != "cross-entropy":
            raise ValueError(
                "loss must be 'cross-entropy' for noise='actions' (the actions are sampled from "
                f"softmax(g/τ), which cross-entropy fits), got {self.loss!r}"
            )
        if self.loss == "cross-entropy" and self.noise != "actions":
            raise ValueError(
                f"loss must be 'mse' for noise={self.noise!r} (it plays Proj(g + noise), which "
                "MSE on the kept policies fits; cross-entropy needs noise='actions')"
            )

    @property
    def exploration(self) -> Exploration:
        """The rollout's exploration settings."""
        return Exploration(self.noise, self.noise_scale, self.temperature, self.space, self.radius)

    @property
    def buffer_size(self) -> int:
        """Per-task entries in the kept-set buffer: ``iterations·M`` if accumulating, else M."""
        return self.tasks * (self.iterations if self.accumulate else 1)

    def make_optimizer(self) -> optax.GradientTransformation:
        """The per-iteration optax optimiser and its learning-rate schedule."""
        lr = (
            optax.cosine_decay_schedule(self.learning_rate, self.finetune_steps)
            if self.schedule == "cosine"
            else self.learning_rate
        )
        return optax.adam(lr) if self.optimizer == "adam" else optax.sgd(lr)


def select_lowest(score_L: jax.Array, k: int) -> jax.Array:
    """Indices of the k lowest scores of one task, lowest first; ties go to the lower index."""
    _, idx_k = jax.lax.top_k(-score_L, k)  # top_k is stable: equal values keep index order
    return idx_k


def pooled_mask(score_MxL: jax.Array, n_keep: int) -> jax.Array:
    """(M, L) 0/1 mask of the ``n_keep`` lowest scores over all tasks (ties: lower flat index)."""
    _, idx = jax.lax.top_k(-score_MxL.reshape(-1), n_keep)
    mask = jnp.zeros(score_MxL.size, score_MxL.dtype).at[idx].set(1.0)
    return mask.reshape(score_MxL.shape)


class KeptSet(NamedTuple):
    """Kept trajectories in per-task form: the task's rewards, mean kept policy, and weight."""

    rewards: jax.Array  # (C, T, d)
    targets: jax.Array  # (C, T, d): mean of the kept policies (or one-hot actions) of the task
    weights: jax.Array  # (C,): share of the kept trajectories; 0 for empty buffer slots


class FilterState(NamedTuple):
    """Everything an iteration changes, plus the base model and the streams' root keys.

    ``iteration`` counts finished iterations; iteration i draws its keys as
    ``fold_in(key_<stream>, i)``, so a resumed run sees exactly the same randomness.
    """

    params: Any
    opt_state: Any
    base_params: Any
    buffer: KeptSet
    iteration: jax.Array  # int32 scalar
    key_tasks: jax.Array
    key_rewards: jax.Array
    key_noise: jax.Array


def mse_loss(g_TxD: jax.Array, target_TxD: jax.Array, temperature: float = 1.0) -> jax.Array:
    """``(1/T) Σ_t ‖g_t − π̄_t‖²`` on the raw outputs (THEORY §3 objective (1), §4 step 4)."""
    del temperature
    return jnp.mean(jnp.sum((g_TxD - target_TxD) ** 2, axis=-1))


def cross_entropy_loss(g_TxD: jax.Array, target_TxD: jax.Array, temperature: float) -> jax.Array:
    """``−(1/T) Σ_t <p̄_t, log softmax(g_t/τ)>``, ``p̄_t`` the kept actions' frequencies."""
    logp_TxD = jax.nn.log_softmax(g_TxD / temperature, axis=-1)
    return -jnp.mean(jnp.sum(target_TxD * logp_TxD, axis=-1))


def _loss_fn(name: str):
    return mse_loss if name == "mse" else cross_entropy_loss


def apply_function(model) -> Callable:
    """``apply_fn(params, rewards_TxD)`` for a flax Module, or ``model`` itself if callable.

    A module whose class (exactly that class: a subclass may change ``__call__``) is in
    :data:`MODULE_APPLY_FUNCTIONS` maps to its registered function, the single-layer LSA to
    :func:`rmft_theory.models.lsa_apply`, so that :func:`finetune` finds its moments form
    (:func:`register_moments_form`).
    """
    if type(model) in MODULE_APPLY_FUNCTIONS:
        return MODULE_APPLY_FUNCTIONS[type(model)]
    if isinstance(model, nn.Module):
        return lambda params, rewards_TxD: model.apply({"params": params}, rewards_TxD)
    if callable(model):
        return model
    raise ValueError(f"model must be a flax Module or an apply function, got {type(model)}")


def init_state(params, env: GaussianFOL, config: FilterConfig, seeds: Seeds) -> FilterState:
    """The state before the first iteration, starting from (base) ``params``."""
    params = jax.tree.map(jnp.asarray, params)
    C, T, d = config.buffer_size, env.horizon, env.d
    if getattr(env, "feedback", "full") == "bandit":
        C *= config.keep  # one entry per kept trajectory: bandit inputs differ across them
    dtype = jnp.result_type(float)  # the rewards' dtype (float64 under JAX_ENABLE_X64)
    buffer = KeptSet(
        jnp.zeros((C, T, d), dtype), jnp.zeros((C, T, d), dtype), jnp.zeros((C,), dtype)
    )
    return FilterState(
        params=params,
        opt_state=config.make_optimizer().init(params),
        base_params=params,
        buffer=buffer,
        iteration=jnp.zeros((), jnp.int32),
        key_tasks=seeds.key("tasks"),
        key_rewards=seeds.key("rewards"),
        key_noise=seeds.key("noise"),
    )


# Models whose MSE fine-tuning loss has a sufficient-statistics form: apply_fn -> (moments_fn,
# loss_fn) (register_moments_form; see rmft_theory/models/lsa_moments.py).
MSE_MOMENT_FORMS: dict[Callable, tuple[Callable, Callable]] = {
    lsa_apply: (mse_moments, mse_loss_from_moments),
}

# Module classes whose apply_function is a registered function rather than a fresh closure, so
# that the filter finds their MSE_MOMENT_FORMS entry (register_moments_form).
MODULE_APPLY_FUNCTIONS: dict[type, Callable] = {LinearSelfAttention: lsa_apply}


def register_moments_form(
    apply_fn: Callable, moments_fn: Callable, loss_fn: Callable, module: type | None = None
) -> None:
    """Give a model the sufficient-statistics fine-tuning form (``finetune_form="moments"``).

    ``moments_fn(rewards_CxTxD, targets_CxTxD, weights_C, total) -> stats`` (a pytree that is a
    sum over the C kept tasks, so that it can be summed across devices) is computed once per
    fine-tuning call; ``loss_fn(params, stats)`` must equal the direct weighted MSE
    ``Σ_c w_c mse(apply_fn(params, R_c), π̄_c) / total``. With ``module`` (a flax module class),
    :func:`apply_function` maps every instance of exactly that class to ``apply_fn``, which must
    then equal ``instance.apply({"params": params}, R)`` for every instance (the filter and the
    ``rmft`` commands build modules, so this is how a registered model gets the form there;
    :func:`run_filter` checks it on one reward table, :func:`check_registered_apply`).
    ``tests/test_lsa_moments.py`` shows the checks such a form needs.
    """
    for name, fn in (("apply_fn", apply_fn), ("moments_fn", moments_fn), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise ValueError(f"{name} must be callable, got {fn!r}")
    if module is not None:
        if not (isinstance(module, type) and issubclass(module, nn.Module)):
            raise ValueError(f"module must be a flax Module class, got {module!r}")
        MODULE_APPLY_FUNCTIONS[module] = apply_fn
    MSE_MOMENT_FORMS[apply_fn] = (moments_fn, loss_fn)


def check_registered_apply(model, apply_fn: Callable, params, horizon: int, d: int) -> None:
    """Raise a ValueError unless a module's registered apply function (``MODULE_APPLY_FUNCTIONS``,
    :func:`register_moments_form`) computes what the module does, on one fixed reward table.

    The registered function runs every rollout and evaluation, so a module whose fields change
    its computation (a depth, a width) must not be mapped to a function that ignores them.
    Tolerance ``1e-5 (1 + max|g|)``: the same computation in float32 agrees far closer (the LSA's
    registered function is the one its ``apply`` runs, exactly equal).
    """
    if not isinstance(model, nn.Module) or apply_fn is not MODULE_APPLY_FUNCTIONS.get(type(model)):
        return
    rewards = jax.random.normal(jax.random.key(0), (horizon, d))
    want = np.asarray(model.apply({"params": params}, rewards), np.float64)
    got = np.asarray(apply_fn(params, rewards), np.float64)
    if want.shape != got.shape or not np.all(
        np.abs(got - want) <= 1e-5 * (1.0 + np.max(np.abs(want)))
    ):
        raise ValueError(
            f"the apply function registered for {type(model).__name__} "
            f"({getattr(apply_fn, '__name__', apply_fn)!r}, register_moments_form) does not "
            f"compute what this {type(model).__name__} does; register one that reads every "
            "field that changes the computation, or none"
        )


def finetune_form(apply_fn: Callable, config: FilterConfig) -> str:
    """``"moments"`` or ``"direct"``: the form :func:`finetune` uses for this model and config."""
    available = config.loss == "mse" and apply_fn in MSE_MOMENT_FORMS
    if config.finetune_form == "moments" and not available:
        raise ValueError(
            "finetune_form='moments' needs loss='mse' and a model with a moments form "
            "(the single-layer LSA, or one given by register_moments_form); "
            f"got loss={config.loss!r} and {apply_fn!r}"
        )
    if config.finetune_form == "auto":
        return "moments" if available else "direct"
    return config.finetune_form


def kept_loss(apply_fn: Callable, kept: KeptSet, config: FilterConfig, mesh=None) -> Callable:
    """``params -> Σ_c w_c ℓ(g_θ(R_c), π̄_c) / Σ_c w_c``, the fine-tuning objective on ``kept``.

    ℓ is the MSE or cross-entropy loss. In the moments form (:func:`finetune_form`) the
    statistics are computed here, once, as a sum over tasks (over the ``mesh``'s devices when
    given); the returned function then costs O(E⁴) per call instead of a pass over the kept set.
    """
    total = jnp.maximum(jnp.sum(kept.weights), jnp.finfo(kept.weights.dtype).tiny)
    if finetune_form(apply_fn, config) == "moments":
        moments_fn, loss_fn = MSE_MOMENT_FORMS[apply_fn]
        if mesh is None:
            stats = moments_fn(*kept, total)
        else:
            stats = sharding.sharded_task_sum(moments_fn, kept, total, mesh)
        return lambda p: loss_fn(p, stats)
    loss_one = _loss_fn(config.loss)

    def loss(p):
        g_CxTxD = jax.vmap(apply_fn, in_axes=(None, 0))(p, kept.rewards)
        per_C = jax.vmap(loss_one, in_axes=(0, 0, None))(g_CxTxD, kept.targets, config.temperature)
        return jnp.sum(kept.weights * per_C) / total

    return loss


def finetune(apply_fn: Callable, params, kept: KeptSet, config: FilterConfig, mesh=None):
    """``finetune_steps`` full-batch optimiser steps on the kept set, as one ``lax.scan``.

    Minimises :func:`kept_loss` (in the moments form where available). Returns the parameters,
    the optimiser state and the (steps,) losses before each step. With a ``mesh`` the kept set
    is split over its devices (:func:`rmft_theory.sharding.sharded_finetune`).
    """
    optimizer = config.make_optimizer()
    loss = kept_loss(apply_fn, kept, config, mesh)

    def step(carry, _):
        p, opt_state = carry
        value, grads = jax.value_and_grad(loss)(p)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), value

    (params, opt_state), losses = jax.lax.scan(
        step, (params, optimizer.init(params)), None, length=config.finetune_steps
    )
    return params, opt_state, losses


_sample_batch_jit = jax.jit(sample_batch, static_argnums=(2, 3))


def heldout_rewards(env: GaussianFOL, n: int, key: jax.Array) -> jax.Array:
    """``n`` held-out tasks with one reward sequence each, (n, T, d)."""
    key_tasks, key_rewards = jax.random.split(key)
    return _sample_batch_jit(key_tasks, key_rewards, env, n)


def heldout_curves(
    apply_fn: Callable, params, rewards_NxTxD: jax.Array, exploration: Exploration
) -> jax.Array:
    """Cumulative regret curves (N, T) of the noise-free model on held-out tasks."""

    def one(rewards_TxD):
        g_TxD = model_outputs(apply_fn, params, rewards_TxD)
        pi_TxD = noise_free_policies(g_TxD, exploration)
        return cumulative_regret(rewards_TxD, pi_TxD, exploration.space, exploration.radius)

    return jax.vmap(one)(rewards_NxTxD)


def make_evaluate(apply_fn: Callable, config: FilterConfig, metrics_fn: Callable | None = None):
    """A pure ``evaluate(params, heldout) -> metrics``: held-out regret and ``metrics_fn``."""
    exploration = config.exploration

    def evaluate(params, heldout_NxTxD):
        curves_NxT = heldout_curves(apply_fn, params, heldout_NxTxD, exploration)
        final_N = curves_NxT[:, -1]
        out = {
            "heldout_regret": jnp.mean(final_N),
            "heldout_regret_se": jnp.std(final_N) / np.sqrt(final_N.shape[0]),
            "heldout_curve": jnp.mean(curves_NxT, axis=0),
        }
        if metrics_fn is not None:
            out.update(metrics_fn(params))
        return out

    return evaluate


def make_iteration(
    apply_fn: Callable,
    env: GaussianFOL,
    config: FilterConfig,
    metrics_fn: Callable | None = None,
    mesh=None,
):
    """A pure ``iteration(state, heldout) -> (state, metrics)``: one filter iteration (THEORY §4).

    Rollout, selection, buffer update, fine-tuning and the held-out evaluation all run inside;
    wrap it in one ``jax.jit``. Metrics: the rollouts' regret mean and quantiles
    (:data:`QUANTILES`), the kept-set threshold (mean over tasks of the k-th lowest score in
    regret units, or the pooled threshold), the kept trajectories' mean regret, the fine-tuning
    loss before and after, and :func:`make_evaluate`'s held-out metrics after fine-tuning.

    With a ``mesh`` (:func:`rmft_theory.sharding.make_mesh`), rollout and selection run on
    each device's share of the M tasks and fine-tuning splits the kept set over all devices
    (:mod:`rmft_theory.sharding`); M and the kept-set size must be divisible by the device
    count. The result equals the single-device one up to float rounding.
    """
    finetune_form(apply_fn, config)  # a clear error now, not at the first fine-tuning
    if getattr(env, "feedback", "full") == "bandit":
        from rmft_theory import bandit_filter  # deferred: bandit_filter imports this module

        if mesh is not None:
            raise ValueError("mesh is not supported for bandit environments yet")
        return bandit_filter.make_iteration(apply_fn, env, config, metrics_fn)
    if config.selection == "pseudo-regret":
        raise ValueError("selection 'pseudo-regret' needs a bandit environment")
    if config.uniform_mix:
        raise ValueError(f"uniform_mix > 0 needs a bandit environment, got {config.uniform_mix}")
    exploration = config.exploration
    M, L, k = config.tasks, config.rollouts, config.keep
    evaluate = make_evaluate(apply_fn, config, metrics_fn)
    T, d = env.horizon, env.d
    # Tasks per lax.map chunk: ~chunk_elements() floats, at most task_chunk (rollout.py).
    M_local = M // (1 if mesh is None else sharding.axis_size(mesh, sharding.TASKS))
    chunk = task_chunk_size(M_local, task_elements(exploration, L, T, d), config.task_chunk)

    def task_select(xs):
        # Score all L trajectories without forming their policies (earned_from_draws), then
        # build the policies of the k kept ones from their rows of the task's draws.
        key, g_TxD, rewards_TxD = xs
        draws = task_draws(key, g_TxD, exploration, L)
        earned_L = earned_from_draws(g_TxD, rewards_TxD, draws, exploration)
        best = best_fixed_value(jnp.sum(rewards_TxD, axis=0), exploration.space, exploration.radius)
        regret_L = best - earned_L
        score_L = regret_L if config.selection == "regret" else -earned_L
        idx_k = select_lowest(score_L, k)
        target_TxD = jnp.mean(policies_from_draws(g_TxD, draws[idx_k], exploration), axis=0)
        return regret_L, score_L, target_TxD, jnp.mean(regret_L[idx_k]), regret_L[idx_k[-1]]

    def task_masked_target(xs):
        key, g_TxD, mask_L = xs
        pi_LxTxD = policies_from_draws(g_TxD, task_draws(key, g_TxD, exploration, L), exploration)
        count = jnp.sum(mask_L)
        return jnp.einsum("l,ltd->td", mask_L, pi_LxTxD) / jnp.maximum(count, 1.0), count

    def iteration(state: FilterState, heldout_NxTxD):
        i = state.iteration
        key_tasks = jax.random.fold_in(state.key_tasks, i)
        key_rewards = jax.random.fold_in(state.key_rewards, i)
        keys_M = jax.random.split(jax.random.fold_in(state.key_noise, i), M)
        rewards_MxTxD = sharding.split_tasks(sample_batch(key_tasks, key_rewards, env, M), mesh)
        g_MxTxD = jax.vmap(lambda r: model_outputs(apply_fn, state.params, r))(rewards_MxTxD)
        g_MxTxD = sharding.split_tasks(g_MxTxD, mesh)

        regret_MxL, score_MxL, target_MxTxD, kept_regret_M, threshold_M = (
            sharding.map_tasks_sharded(task_select, (keys_M, g_MxTxD, rewards_MxTxD), chunk, mesh)
        )
        if config.scope == "task":
            weights_M = jnp.full((M,), 1.0 / M, g_MxTxD.dtype)
            threshold = jnp.mean(threshold_M)
            kept_regret = jnp.mean(kept_regret_M)
        else:
            mask_MxL = pooled_mask(score_MxL, M * k)
            target_MxTxD, count_M = sharding.map_tasks_sharded(
                task_masked_target, (keys_M, g_MxTxD, mask_MxL), chunk, mesh
            )
            weights_M = count_M / (M * k)
            kept_regret = jnp.sum(mask_MxL * regret_MxL) / (M * k)
            threshold = jnp.max(jnp.where(mask_MxL > 0, regret_MxL, -jnp.inf))

        slot = (i % (config.iterations if config.accumulate else 1)) * M
        buffer = KeptSet(
            *(
                jax.lax.dynamic_update_slice_in_dim(b, new.astype(b.dtype), slot, axis=0)
                for b, new in zip(state.buffer, (rewards_MxTxD, target_MxTxD, weights_M))
            )
        )
        start = state.base_params if config.from_base else state.params
        kept = buffer if mesh is None else sharding.shard_kept(buffer, mesh)
        params, opt_state, losses = finetune(apply_fn, start, kept, config, mesh)
        flat = regret_MxL.reshape(-1)
        metrics = {
            "regret_mean": jnp.mean(flat),
            "regret_std": jnp.std(flat),
            "regret_quantiles": jnp.quantile(flat, jnp.asarray(QUANTILES, flat.dtype)),
            "threshold": threshold,
            "kept_regret_mean": kept_regret,
            "finetune_loss_start": losses[0],
            "finetune_loss_end": losses[-1],
            **evaluate(params, sharding.split_tasks(heldout_NxTxD, mesh)),
        }
        new_state = state._replace(
            params=params, opt_state=opt_state, buffer=buffer, iteration=i + 1
        )
        return new_state, metrics

    return iteration


def lsa_weight_metrics(W_star, reward_scale: float = 1.0) -> Callable:
    """A ``metrics_fn`` for the single-layer LSA: its invariants against the closed form ``W*``.

    Returns, for parameters θ (THEORY §2–3):
      ``w_eff_rel_error`` ``‖W_eff − W*‖_F/‖W*‖_F``; ``quad_rel`` and ``drift_rel`` (the even
      terms, see :func:`rmft_theory.analysis.invariant_report`); ``w_eff_norm_ratio``
      ``‖W_eff‖_F/‖W*‖_F``; ``w_eff_projection`` ``<W_eff, W*>_F/‖W*‖_F²`` (the coefficient of
      ``W_eff`` along ``W*``: 1 at FTRL, 0 without drift towards it); ``w_eff_diag_ratio``
      ``mean diag W_eff / mean diag W*``; ``w_eff_centered_eta`` ``tr(P W_eff P)/(d−1)`` with
      ``P = I − 11ᵀ/d`` (the effective Hedge rate times τ of a softmax head, which ignores
      ``W ↦ W + 1vᵀ``); and ``w_eff`` itself.
    """
    W_star = jnp.asarray(W_star, dtype=jnp.result_type(float))
    d = W_star.shape[0]

    def metrics(params):
        W = invariants(params).W_eff
        Ws = W_star.astype(W.dtype)
        report = invariant_report(params, Ws, reward_scale)
        P = jnp.eye(d, dtype=W.dtype) - 1.0 / d
        return {
            "w_eff_rel_error": report["rel_error"],
            "quad_rel": report["quad_rel"],
            "drift_rel": report["drift_rel"],
            "w_eff_norm_ratio": jnp.linalg.norm(W) / jnp.linalg.norm(Ws),
            "w_eff_projection": jnp.sum(W * Ws) / jnp.sum(Ws * Ws),
            "w_eff_diag_ratio": jnp.mean(jnp.diag(W)) / jnp.mean(jnp.diag(Ws)),
            "w_eff_centered_eta": jnp.trace(P @ W @ P) / max(d - 1, 1),
            "w_eff": W,
        }

    return metrics


#: The η grid that :func:`tune_eta` searches (Hedge on the simplex, isotropic FTRL on the ball).
ETA_GRID = tuple(float(x) for x in np.geomspace(1e-3, 1e2, 51))


def tune_eta(
    rewards_NxTxD: jax.Array, kind: str = "hedge", radius: float = 1.0, grid=ETA_GRID
) -> float:
    """The best fixed η on ``grid`` by mean final static regret on the given (tuning) tasks.

    ``kind="hedge"``: Hedge on the simplex, ``π_t = softmax(η S_{t−1})``; ``kind="ftrl"``:
    isotropic FTRL on the ball ``B(0, radius)``, ``π_t = Proj(η S_{t−1})`` (THEORY §3). Warns
    when the best η is an end of the grid: the best η may then lie beyond it.
    """
    check_choice("kind", kind, ("hedge", "ftrl"))
    space = "simplex" if kind == "hedge" else "ball"
    dtype = rewards_NxTxD.dtype

    def mean_final_regret(eta: float) -> float:
        curves = _baseline_curves(rewards_NxTxD, jnp.asarray(eta, dtype), kind, space, radius)
        return float(curves[:, -1].mean())

    best = int(np.argmin([mean_final_regret(e) for e in grid]))
    if best in (0, len(grid) - 1):
        warnings.warn(
            f"the tuned {kind} eta = {grid[best]:g} is an end of the grid "
            f"[{grid[0]:g}, {grid[-1]:g}]: the best eta may lie beyond it",
            stacklevel=2,
        )
    return float(grid[best])


class HeldoutKeys(NamedTuple):
    """The held-out stream split once into named keys (no key both draws and is split)."""

    rewards: jax.Array  # the held-out tasks the filter is scored on
    tune: jax.Array  # separate tasks that tune a baseline's η
    evaluation: jax.Array  # the fresh evaluation tasks of filter_experiment(eval_tasks=...)


def heldout_keys(seeds: Seeds) -> HeldoutKeys:
    """:class:`HeldoutKeys` from ``seeds.key("heldout")``."""
    return HeldoutKeys(*jax.random.split(seeds.key("heldout"), 3))


@functools.partial(jax.jit, static_argnames=("kind", "space", "radius"))
def _baseline_curves(rewards_NxTxD, param, kind: str, space: str, radius: float):
    """Cumulative regret curves (N, T) of one baseline: FTRL (``param`` = W), Hedge (η) or FTL."""

    def one(r):
        if kind == "ftrl":
            pi = ftrl_policies(r, param, radius)
        elif kind == "hedge":
            pi = hedge_policies(r, param)
        else:
            pi = ftl_policies(r, space, radius)
        return cumulative_regret(r, pi, space, radius)

    return jax.vmap(one)(rewards_NxTxD)


def reference_curves(
    env, exploration: Exploration, heldout_NxTxD: jax.Array, key_tune: jax.Array
) -> tuple[dict[str, np.ndarray], dict]:
    """Held-out cumulative regret curves (N, T) of the baselines, and their tuned constants.

    Ball: FTRL at ``W*`` (THEORY §3, the Gaussian closed form; ``η* I`` for isotropic rewards)
    for the built-in :class:`GaussianFOL` (:func:`~rmft_theory.envs.is_gaussian_fol`; not a
    subclass, which may change the rewards), FTRL at its best isotropic η for any other
    full-information environment; and follow-the-leader. Simplex: Hedge at its best η and
    follow-the-leader. Best η: :func:`tune_eta` on separate tasks drawn from ``key_tune``.

    Two cautions of THEORY §3 for :class:`GaussianFOL`. ``W*`` is the zero-mean closed form: with
    random or fixed task means a larger η lowers regret, so follow-the-leader (always returned)
    is then the stronger baseline and FTRL at ``W*`` a theory reference only. On zero-mean
    tasks every causal policy has the same expected regret, so the tuned Hedge η is not
    identified (its regret equals any other η's in expectation; the value is noise).
    """
    space, radius = exploration.space, float(exploration.radius)
    dtype = heldout_NxTxD.dtype
    info: dict = {}

    def tuning_tasks():
        return heldout_rewards(env, heldout_NxTxD.shape[0], key_tune)

    if space == "ball" and is_gaussian_fol(env):
        W_star = ftrl_weights(env.cov_matrix, env.horizon, radius)
        info["W_star"] = W_star
        runs = {"ftrl_eta_star": ("ftrl", jnp.asarray(W_star, dtype))}
    elif space == "ball":
        eta = tune_eta(tuning_tasks(), "ftrl", radius)
        info["ftrl_eta"] = eta
        runs = {"ftrl_best_eta": ("ftrl", jnp.asarray(eta, dtype))}
    else:
        eta = tune_eta(tuning_tasks(), "hedge")
        info["hedge_eta"] = eta
        runs = {"hedge_best_eta": ("hedge", jnp.asarray(eta, dtype))}
    runs["ftl"] = ("ftl", jnp.zeros((), dtype))
    curves = {
        name: np.asarray(_baseline_curves(heldout_NxTxD, param, kind, space, radius))
        for name, (kind, param) in runs.items()
    }
    return curves, info


class FilterResult(NamedTuple):
    """Output of :func:`run_filter`.

    ``history`` maps each per-iteration metric to an array with a leading axis over finished
    iterations (plus ``seconds``, the wall time of each); ``base`` holds the same held-out
    metrics for the base model; ``reference`` the baselines' mean held-out regret and curves.
    ``timings``: the compile time of the session that compiled the iteration (this one, or
    the checkpoint's) and the run time summed over every iteration, resumed ones included.
    """

    params: Any
    state: FilterState
    history: dict
    base: dict
    reference: dict
    timings: Timings


def resume_free_fields(config: FilterConfig) -> tuple[str, ...]:
    """The :class:`FilterConfig` fields a checkpoint need not match to be resumed.

    ``finetune_form``: both forms minimise the same loss, so a run may resume in the other one
    (and checkpoints written before the field existed still resume). ``iterations``, unless
    ``accumulate``: iteration i's keys are ``fold_in(key, i)`` and its kept set replaces the
    last one, so no iteration depends on N and a finished run extends to more iterations,
    bit-identical to a run asked for the larger N from the start (tested). With ``accumulate``
    the kept-set buffer holds ``N·M`` tasks, so N is part of the state.
    """
    return ("finetune_form",) if config.accumulate else ("finetune_form", "iterations")


def mesh_setting(mesh) -> dict[str, int] | None:
    """A mesh's axis sizes as a checkpoint records them, or None for no mesh or one device."""
    if mesh is None or mesh.size == 1:
        return None
    return {name: int(size) for name, size in mesh.shape.items()}


def saved_mesh(checkpoint_dir) -> dict[str, int] | None:
    """The :func:`mesh_setting` a filter checkpoint was written with (None: one device)."""
    fingerprint = load_json(Path(checkpoint_dir) / META_FILE).get("fingerprint") or {}
    return (fingerprint.get("config") or {}).get("mesh")


def check_same_mesh(checkpoint_dir, mesh) -> None:
    """Refuse to resume a filter checkpoint on a mesh of another shape, naming ``devices``.

    Another device count sums over tasks in another order, so the resumed run would match an
    uninterrupted one only to rounding. Checkpoints written by library calls on several
    devices before meshes were recorded (852488c) have none recorded, and are refused here."""
    saved, current = saved_mesh(checkpoint_dir), mesh_setting(mesh)
    if saved != current:
        n = int(np.prod(list(saved.values()))) if saved else 1
        raise ValueError(
            f"devices: the checkpoint in {checkpoint_dir} was written on {n} device(s) "
            f"(mesh {saved}), this run has mesh {current}; resume with --devices {n} (or the "
            "same mesh), or use another --out folder"
        )


def _fingerprint(env, config, seeds, params, mesh=None) -> dict:
    """What a checkpoint must match to be resumed: all but :func:`resume_free_fields`, and the
    :func:`mesh_setting` when the mesh spans more than one device (one-device runs keep the
    fingerprint they had before meshes counted)."""
    free = resume_free_fields(config)
    settings = {k: v for k, v in to_jsonable(config).items() if k not in free}
    shape = mesh_setting(mesh)
    if shape is not None:
        settings["mesh"] = shape
    return run_fingerprint(env, settings, seeds, params)


def _stack(history: list[dict]) -> dict:
    if not history:
        return {}
    return {k: np.asarray([h[k] for h in history], dtype=np.float64) for k in history[0]}


def run_filter(
    model,
    env: GaussianFOL,
    config: FilterConfig,
    seeds: Seeds,
    *,
    params=None,
    metrics_fn: Callable | None = None,
    checkpoint_dir: str | Path | None = None,
    stop_after: int | None = None,
    quiet: bool = False,
    desc: str = "rmft",
    mesh=None,
) -> FilterResult:
    """Run the regret filter; checkpoint after every iteration and resume from a checkpoint.

    Args:
      model: a flax Module (initialised from the ``init`` stream unless ``params`` is given) or
        an apply function ``(params, rewards_TxD) -> g_TxD`` (then ``params`` is required).
      env: the task distribution.
      config: the filter's settings.
      seeds: named PRNG streams (``tasks``, ``rewards``, ``noise``, ``heldout``, ``init``).
      params: base parameters (optional for a flax Module).
      metrics_fn: extra per-iteration metrics of the parameters (e.g. :func:`lsa_weight_metrics`).
      checkpoint_dir: where to write the checkpoint after every iteration; if it already holds
        one of the same run, the run resumes after its last finished iteration. "The same
        run" means the same environment, seeds, parameter shapes and settings except
        :func:`resume_free_fields`: without ``accumulate``, a larger ``iterations`` extends a
        finished run. A mismatch raises a ValueError naming the settings that differ.
      stop_after: stop once this many iterations have finished (default: all of them).
      quiet: no progress bar or compile-time line.
      desc: the progress bar's label.
      mesh: run each iteration over these devices (:func:`rmft_theory.sharding.make_mesh`;
        see :func:`make_iteration`). A checkpoint resumes only on a mesh of the same shape
        (one device and no mesh count as the same).
    """
    apply_fn = apply_function(model)
    if params is None:
        if not isinstance(model, nn.Module):
            raise ValueError("params must be given when model is an apply function")
        params = model.init(seeds.key("init"), jnp.zeros((env.horizon, env.d)))["params"]
    check_registered_apply(model, apply_fn, params, env.horizon, env.d)
    stop = config.iterations if stop_after is None else stop_after
    if not 0 <= stop <= config.iterations:
        raise ValueError(f"stop_after must lie in [0, iterations={config.iterations}], got {stop}")
    exploration = config.exploration
    bandit = getattr(env, "feedback", "full") == "bandit"
    if bandit:
        from rmft_theory import bandit_filter  # deferred: bandit_filter imports this module

        bandit_filter.check_config(config)
    fingerprint = _fingerprint(env, config, seeds, params, mesh)
    resuming = checkpoint_dir is not None and has_checkpoint(checkpoint_dir)
    if resuming:  # before any work: another run's checkpoint is refused at once
        check_same_mesh(checkpoint_dir, mesh)
        check_resumable(checkpoint_dir, fingerprint, resume_free_fields(config))
    if bandit:
        heldout = bandit_filter.heldout_tasks(env, config.heldout_tasks, seeds.key("heldout"))
        ref_curves, ref_info = bandit_filter.reference_curves(env, heldout)
        make_eval = bandit_filter.make_evaluate
    else:
        keys = heldout_keys(seeds)
        heldout = heldout_rewards(env, config.heldout_tasks, keys.rewards)
        ref_curves, ref_info = reference_curves(env, exploration, heldout, keys.tune)
        make_eval = make_evaluate
    reference = {
        **ref_info,
        **{f"{n}_heldout_regret": float(c[:, -1].mean()) for n, c in ref_curves.items()},
        **{f"{n}_heldout_curve": c.mean(axis=0) for n, c in ref_curves.items()},
    }
    evaluate = jax.jit(make_eval(apply_fn, config, metrics_fn))
    base = to_jsonable(evaluate(params, heldout))

    state = init_state(params, env, config, seeds)
    history: list[dict] = []
    compile_s = 0.0
    if resuming:
        state, meta = load_checkpoint(checkpoint_dir, state)
        compile_s = float(meta.get("compile_s") or 0.0)
        if "history" in meta:
            # Written before the per-iteration records, with the history in its JSON: move it
            # to records now, before the next checkpoint's JSON, which has none, replaces it.
            history = meta["history"]
            for i, entry in enumerate(history):
                save_record(checkpoint_dir, i, entry)
        else:
            history = load_records(checkpoint_dir, int(state.iteration))
        if int(state.iteration) != len(history):
            raise ValueError(f"checkpoint in {checkpoint_dir} is inconsistent (iteration count)")
        if len(history) > config.iterations:
            raise ValueError(
                f"iterations={config.iterations} is fewer than the {len(history)} iterations "
                f"the checkpoint in {checkpoint_dir} has finished"
            )
    start = int(state.iteration)
    if start < stop:
        iteration = make_iteration(apply_fn, env, config, metrics_fn, mesh=mesh)
        if history:  # refuse to mix two metrics_fn in one history
            names = {*jax.eval_shape(iteration, state, heldout)[1], "seconds"}
            check_same_metrics(history, names)
        compiled, compile_s = compile_timed(
            iteration,
            state,
            heldout,
            compiler_options=compiler_options(config.noise),
        )
        if not quiet:
            print(f"[{desc}] compiled one iteration in {compile_s:.2f}s", file=sys.stderr)
        if mesh is not None:  # on the mesh once, not moved there by every iteration
            state, heldout = sharding.placed_for(compiled, (state, heldout))
        with tqdm(
            total=stop,
            initial=start,
            desc=desc,
            unit="it",
            disable=quiet,
            file=sys.stderr,
            dynamic_ncols=True,
        ) as bar:
            for _ in range(start, stop):
                t0 = time.perf_counter()
                state, metrics = compiled(state, heldout)
                metrics = jax.block_until_ready(metrics)
                seconds = time.perf_counter() - t0
                history.append({**to_jsonable(metrics), "seconds": seconds})
                if checkpoint_dir is not None:
                    save_record(checkpoint_dir, len(history) - 1, history[-1])
                    meta = {"fingerprint": fingerprint, "compile_s": compile_s}
                    save_checkpoint(checkpoint_dir, state, int(state.iteration), meta)
                bar.set_postfix(heldout=f"{history[-1]['heldout_regret']:.3f}", refresh=False)
                bar.update(1)
    run_s = float(sum(entry["seconds"] for entry in history))
    return FilterResult(
        state.params, state, _stack(history), base, reference, Timings(compile_s, run_s)
    )


def filter_experiment(
    env: GaussianFOL,
    config: FilterConfig,
    seed: int,
    *,
    params=None,
    eval_tasks: int = 0,
    quiet: bool = True,
    desc: str = "rmft",
) -> dict[str, np.ndarray]:
    """Run the filter on the single-layer LSA and flatten everything a figure needs into arrays.

    Keys: ``hist_<metric>`` (leading axis over iterations), ``base_<metric>``, ``W_star`` (the
    ball closed form, THEORY §3), ``ref_<baseline>_regret`` and ``ref_<baseline>_curve``,
    ``hedge_eta`` (simplex), ``compile_s`` and ``run_s``. With ``eval_tasks > 0`` also the
    per-task regret curves (n, T) on fresh evaluation tasks of the base model
    (``eval_base``), the final model (``eval_final``) and the baselines (``eval_<baseline>``),
    for growth-exponent fits with bootstrap errors.
    """
    if not is_gaussian_fol(env):
        raise ValueError(
            f"env must be the built-in GaussianFOL (its W* closed form), got {type(env).__name__}"
        )
    model = make_model("lsa", env.d)
    seeds = Seeds.from_seed(seed)
    W_star = ftrl_weights(env.cov_matrix, env.horizon, config.radius)
    base_params = (
        model.init(seeds.key("init"), jnp.zeros((env.horizon, env.d)))["params"]
        if params is None
        else params
    )
    result = run_filter(
        model,
        env,
        config,
        seeds,
        params=base_params,
        metrics_fn=lsa_weight_metrics(W_star, env.reward_scale),
        quiet=quiet,
        desc=desc,
    )
    out = {f"hist_{k}": v for k, v in result.history.items()}
    out.update({f"base_{k}": np.asarray(v) for k, v in result.base.items()})
    out["W_star"] = W_star
    for k, v in result.reference.items():
        if k.endswith("_heldout_regret"):
            out[f"ref_{k.removesuffix('_heldout_regret')}_regret"] = np.asarray(v)
        elif k.endswith("_heldout_curve"):
            out[f"ref_{k.removesuffix('_heldout_curve')}_curve"] = np.asarray(v)
    if "hedge_eta" in result.reference:
        out["hedge_eta"] = np.asarray(result.reference["hedge_eta"])
    out["compile_s"] = np.asarray(result.timings.compile_s)
    out["run_s"] = np.asarray(result.timings.run_s)
    if eval_tasks:
        exploration = config.exploration
        keys = heldout_keys(seeds)
        rewards = heldout_rewards(env, eval_tasks, keys.evaluation)
        curves = jax.jit(heldout_curves, static_argnums=(0, 3))
        apply_fn = apply_function(model)
        out["eval_base"] = np.asarray(curves(apply_fn, base_params, rewards, exploration))
        out["eval_final"] = np.asarray(curves(apply_fn, result.params, rewards, exploration))
        for name, c in reference_curves(env, exploration, rewards, keys.tune)[0].items():
            out[f"eval_{name}"] = c
    return out
