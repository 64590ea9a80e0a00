"""Direct training on the objectives of THEORY §3, with fresh task batches every step.

The state is an explicit pytree; ``chunk`` optimiser steps run under one ``jit`` as a
``lax.scan``, and the host only draws the progress bar, and writes the optional checkpoint,
between chunks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmft_theory.checkpoint import (
    check_resumable,
    has_checkpoint,
    load_checkpoint,
    load_records,
    run_fingerprint,
    save_checkpoint,
    save_record,
)
from rmft_theory.envs import registry as env_registry
from rmft_theory.envs.gaussian import GaussianFOL
from rmft_theory.keys import Seeds
from rmft_theory.objectives import OBJECTIVES, objective_fn
from rmft_theory.progress import Progress, Timings, check_same_metrics, run_chunks
from rmft_theory.rollout import checked_apply
from rmft_theory.validation import check_choice, check_positive, check_positive_int

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant")
BASELINES = ("loo-mean", "none")


@dataclasses.dataclass(frozen=True)
class DirectTrainConfig:
    """Direct training on one of the objectives of THEORY §3.

    Attributes:
      objective: ``"imitation"`` or ``"regret-loss"``.
      steps: optimiser steps (a multiple of ``chunk``).
      batch_size: fresh tasks (one sequence each) per step.
      learning_rate: peak learning rate.
      optimizer: ``"adam"`` or ``"sgd"``.
      schedule: ``"cosine"`` (decay to 0, which averages out the gradient noise) or ``"constant"``.
      radius: ball radius ρ of the targets.
      chunk: steps per compiled call (the progress bar's granularity).
      regret_baseline: ``"loo-mean"`` subtracts, from each sequence's ``ρ‖S_T‖``, the mean of
        the other sequences of the batch (a control variate independent of the sequence, see
        :func:`rmft_theory.objectives.squared_regret_loss`: unbiased for the plain gradient on
        zero-mean tasks); ``"none"`` uses the plain estimator. Regret-loss only.
      antithetic: pair every sequence R with its mirror ``2μ − R`` (``μ`` the task's mean table
        ``μ_t``, so time-varying means are mirrored round by round). The mirror has the law of R
        only for noise symmetric about its mean, so the environment must declare
        ``symmetric_noise = True`` (see :func:`check_full_information`). On zero-mean tasks
        the odd and even parts of the model (THEORY §3) then decouple exactly within each
        batch, which removes the cross-term gradient noise; with non-zero means the mirror is
        about μ, the parts do not cancel within a pair, and the objective stays unbiased.
    """

    objective: str = "imitation"
    steps: int = 4000
    batch_size: int = 512
    learning_rate: float = 1e-2
    optimizer: str = "adam"
    schedule: str = "cosine"
    radius: float = 1.0
    chunk: int = 200
    antithetic: bool = True
    regret_baseline: str = "loo-mean"

    def __post_init__(self):
        check_choice("objective", self.objective, OBJECTIVES)
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive("learning_rate", self.learning_rate)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_positive("radius", self.radius)
        check_positive_int("chunk", self.chunk)
        check_choice("regret_baseline", self.regret_baseline, BASELINES)
        if self.antithetic and (self.batch_size % 2 or self.batch_size < 4):
            raise ValueError(
                f"batch_size must be even and >= 4 with antithetic=True, got {self.batch_size}"
            )
        if self.steps % self.chunk:
            raise ValueError(f"steps ({self.steps}) must be a multiple of chunk ({self.chunk})")

    def make_optimizer(self) -> optax.GradientTransformation:
        """The optax optimiser with its learning-rate schedule."""
        lr = (
            optax.cosine_decay_schedule(self.learning_rate, self.steps)
            if self.schedule == "cosine"
            else self.learning_rate
        )
        return optax.adam(lr) if self.optimizer == "adam" else optax.sgd(lr)


#: A chunk record's entry for the chunk's wall time (the other entries are its metrics).
SECONDS = "_seconds"


class TrainState(NamedTuple):
    """Everything that changes during training; ``step`` indexes the per-step keys."""

    params: Any
    opt_state: Any
    step: jax.Array
    key_tasks: jax.Array
    key_rewards: jax.Array


def sample_batch(
    key_tasks, key_rewards, env, batch_size: int, antithetic: bool = False
) -> jax.Array:
    """A fresh batch of ``batch_size`` tasks with one reward sequence each, (B, T, d).

    ``env`` is a :class:`GaussianFOL` or any registered full-information environment. With
    ``antithetic`` (environments with ``symmetric_noise = True`` only: the mirror has the same
    law only for symmetric noise), the second half of the batch mirrors the first around the
    task's mean table, ``R'_t = 2μ_t − R_t`` round by round (so time-varying means are fine).
    """
    check_full_information(env, antithetic)
    n = batch_size // 2 if antithetic else batch_size
    tasks = jax.vmap(env_registry.sample_task, in_axes=(0, None))(
        jax.random.split(key_tasks, n), env
    )
    rewards_BxTxD = jax.vmap(env_registry.sample_rewards, in_axes=(0, None, 0))(
        jax.random.split(key_rewards, n), env, tasks
    )
    if not antithetic:
        return rewards_BxTxD
    means_BxTxD = jax.vmap(env_registry.mean_rewards, in_axes=(0, None))(tasks, env)
    return jnp.concatenate([rewards_BxTxD, 2 * means_BxTxD - rewards_BxTxD], axis=0)


def check_full_information(env, antithetic: bool = False) -> None:
    """Direct training needs full-information rewards; antithetic pairs need symmetric noise.

    An environment declares the class attribute ``symmetric_noise: ClassVar[bool]`` to say that,
    given the task, ``R_t − μ_t`` has the same law as ``μ_t − R_t`` (jointly over all rounds
    and coordinates): then the mirror ``2μ − R`` is another draw of the same task, and the
    antithetic pairs leave the objective unchanged. Without the attribute it counts as False.
    """
    env = env_registry.as_environment(env)
    feedback = getattr(env, "feedback", "full")
    if feedback != "full":
        raise ValueError(
            f"env must give full-information feedback for direct training, got {feedback!r}"
        )
    if antithetic and not getattr(env, "symmetric_noise", False):
        raise ValueError(
            f"antithetic must be false for env {type(env).__name__}, whose class does not set "
            "symmetric_noise = True (the mirror 2μ − R has the same law as R only for noise "
            "symmetric about its mean)"
        )


def make_train_step(
    apply_fn: Callable,
    env: GaussianFOL,
    config: DirectTrainConfig,
    metrics_fn: Callable | None = None,
    progress: Progress | None = None,
):
    """A pure ``step(state) -> (state, metrics)`` for one optimiser update on a fresh batch.

    With ``progress``, the step reports its count to the host bar (throttled) from inside jit.
    """
    loss_one = objective_fn(config.objective)
    optimizer = config.make_optimizer()

    use_baseline = config.objective == "regret-loss" and config.regret_baseline == "loo-mean"

    def batch_loss(params, rewards_BxTxD):
        g_BxTxD = jax.vmap(apply_fn, in_axes=(None, 0))(params, rewards_BxTxD)
        if use_baseline:
            best_B = config.radius * jnp.linalg.norm(jnp.sum(rewards_BxTxD, axis=1), axis=-1)
            n = best_B.shape[0]
            if config.antithetic:  # leave the mirrored partner out too: it shares ‖S_T‖
                partner_B = jnp.roll(best_B, n // 2)
                loo_B = (jnp.sum(best_B) - best_B - partner_B) / (n - 2)
            else:
                loo_B = (jnp.sum(best_B) - best_B) / (n - 1)
            losses = jax.vmap(loss_one, in_axes=(0, 0, None, 0))(
                g_BxTxD, rewards_BxTxD, config.radius, loo_B
            )
        else:
            losses = jax.vmap(loss_one, in_axes=(0, 0, None))(g_BxTxD, rewards_BxTxD, config.radius)
        return jnp.mean(losses)

    def step(state: TrainState):
        key_tasks = jax.random.fold_in(state.key_tasks, state.step)
        key_rewards = jax.random.fold_in(state.key_rewards, state.step)
        rewards = sample_batch(key_tasks, key_rewards, env, config.batch_size, config.antithetic)
        loss, grads = jax.value_and_grad(batch_loss)(state.params, rewards)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss}
        if metrics_fn is not None:
            metrics.update(metrics_fn(params))
        if progress is not None:
            progress.tick(state.step + 1)
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return step


def init_state(model: nn.Module, env: GaussianFOL, config: DirectTrainConfig, seeds: Seeds):
    """Initial parameters (from the ``init`` stream) and optimiser state."""
    dummy = jnp.zeros((env.horizon, env.d))
    params = model.init(seeds.key("init"), dummy)["params"]
    opt_state = config.make_optimizer().init(params)
    return TrainState(
        params, opt_state, jnp.zeros((), jnp.int32), seeds.key("tasks"), seeds.key("rewards")
    )


class TrainResult(NamedTuple):
    """Final parameters, per-step metrics (NumPy arrays of length ``steps``) and timings."""

    params: Any
    metrics: dict
    timings: Timings


def train_direct(
    model: nn.Module,
    env: GaussianFOL,
    config: DirectTrainConfig,
    seeds: Seeds,
    metrics_fn: Callable | None = None,
    quiet: bool = False,
    checkpoint_dir: str | Path | None = None,
) -> TrainResult:
    """Train ``model`` on ``config.objective`` with fresh tasks from ``env`` every step.

    With ``checkpoint_dir``, the state is checkpointed after every chunk (and each chunk's
    metrics as a record beside it, :mod:`rmft_theory.checkpoint`); when the folder already
    holds a checkpoint of the same run (environment, settings, seeds and parameter shapes; a
    mismatch raises a ValueError naming what differs), training resumes after its last
    finished chunk. Step i's keys are ``fold_in(key, i)``, so a resumed run ends with the same
    parameters and metrics, bit for bit, as an uninterrupted one. ``timings``: the compile
    time of the session that compiled (with a checkpoint, the checkpoint's when this call had
    nothing left to compile) and the run time (with a checkpoint, summed over every chunk,
    resumed ones included).
    """
    apply_fn = checked_apply(lambda params, r: model.apply({"params": params}, r))
    progress = Progress(
        config.steps, f"train {config.objective}", quiet=quiet, every=max(config.chunk // 10, 1)
    )
    step = make_train_step(apply_fn, env, config, metrics_fn, progress)

    def advance(state):
        return jax.lax.scan(lambda s, _: step(s), state, None, length=config.chunk)

    state = init_state(model, env, config, seeds)
    history, seconds, saved_compile_s, after_chunk = [], [], 0.0, None
    if checkpoint_dir is not None:
        fingerprint = run_fingerprint(env, config, seeds, state.params)
        if has_checkpoint(checkpoint_dir):
            check_resumable(checkpoint_dir, fingerprint)
            state, meta = load_checkpoint(checkpoint_dir, state)
            saved_compile_s = float(meta.get("compile_s") or 0.0)
            for record in load_records(checkpoint_dir, int(state.step) // config.chunk):
                seconds.append(float(record.pop(SECONDS)))
                history.append(record)

        def after_chunk(i, state, metrics, chunk: Timings):
            seconds.append(chunk.run_s)
            save_record(checkpoint_dir, i, {**metrics, SECONDS: chunk.run_s})
            meta = {"fingerprint": fingerprint, "compile_s": chunk.compile_s}
            save_checkpoint(checkpoint_dir, state, i + 1, meta)

    n_chunks = config.steps // config.chunk
    if history and len(history) < n_chunks:  # refuse to mix two metrics_fn in one history
        check_same_metrics(history, jax.eval_shape(advance, state)[1])
    state, new, timings = run_chunks(
        advance,
        state,
        n_chunks,
        progress,
        units_per_chunk=config.chunk,
        start=len(history),
        after_chunk=after_chunk,
    )
    history += new
    metrics = {k: np.concatenate([h[k] for h in history]) for k in history[0]}
    if checkpoint_dir is not None:  # every chunk's time, resumed sessions' included
        timings = Timings(timings.compile_s or saved_compile_s, float(sum(seconds)))
    return TrainResult(state.params, metrics, timings)
