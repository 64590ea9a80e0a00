"""Batched rollouts of a policy model with the exploration mechanisms of THEORY §4.

Everything here acts on one task or one trajectory; :func:`rollout` adds the trajectory and task
axes with ``vmap``. In full-information online learning the model's input is the reward history
alone, which is the same for the L trajectories of a task, so the model runs **once per task**
and only the exploration noise differs across the L trajectories:

* ``per-step``:        ``π_t = Proj(g_t + s ξ_t)``, ``ξ_t ~ N(0, I)`` i.i.d. in t;
* ``per-trajectory``:  ``π_t = Proj(g_t + s ξ)``, one ``ξ ~ N(0, I)`` per trajectory;
* ``actions``:         ``a_t ~ softmax(g_t / τ)``, and the policy is the one-hot ``e_{a_t}``
  (simplex only; the analogue of sampling from a language model);
* ``none``:            ``π_t = Proj(g_t)`` (every trajectory is the noise-free model).

``Proj`` is the Euclidean projection onto the policy space (ball ``B(0, ρ)`` or simplex).
Memory is linear in T: the model is O(T) per task, and the exploration is elementwise in t.

Randomness: one key per task; :func:`task_draws` draws the exploration of all L trajectories
of the task in one call (trajectory l is row l), so the filter can score every trajectory
without storing policies (:func:`rollout_scores`, :func:`earned_from_draws`) and rebuild the
policies of the kept ones from their rows (:func:`policies_from_draws`). The layout and the
PRNG were chosen by measurement (benchmarks/bench_rollout.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rmft_theory.keys import standard_normal
from rmft_theory.regret import best_fixed_value, static_regret
from rmft_theory.runtime import compiler_options
from rmft_theory.spaces import project
from rmft_theory.validation import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
)

EXPLORATIONS = ("per-step", "per-trajectory", "actions", "none")
ROLLOUT_SPACES = ("ball", "simplex")

ApplyFn = Callable[..., jax.Array]  # apply_fn(params, rewards_TxD) -> g_TxD


@dataclasses.dataclass(frozen=True)
class Exploration:
    """How one trajectory turns the model's raw outputs ``g_t`` into policies (THEORY §4).

    Attributes:
      kind: ``"per-step"``, ``"per-trajectory"``, ``"actions"`` or ``"none"``.
      scale: Gaussian noise scale s (``per-step`` and ``per-trajectory``).
      temperature: softmax temperature τ (``actions``; also the noise-free policy
        ``softmax(g/τ)`` of that mechanism).
      space: policy space, ``"ball"`` or ``"simplex"`` (static regret needs a bounded space).
      radius: ball radius ρ.
    """

    kind: str = "per-trajectory"
    scale: float = 1.0
    temperature: float = 1.0
    space: str = "ball"
    radius: float = 1.0

    def __post_init__(self):
        check_choice("noise", self.kind, EXPLORATIONS)
        check_nonnegative("noise_scale", self.scale)
        check_positive("temperature", self.temperature)
        check_choice("space", self.space, ROLLOUT_SPACES)
        check_positive("radius", self.radius)
        if self.kind == "actions" and self.space != "simplex":
            raise ValueError(
                f"space must be 'simplex' for noise='actions' (one-hot actions), got {self.space!r}"
            )


def noise_free_policies(g_TxD: jax.Array, exploration: Exploration) -> jax.Array:
    """The model's policy without exploration: ``Proj(g_t)``, or ``softmax(g_t/τ)`` for actions."""
    if exploration.kind == "actions":
        return jax.nn.softmax(g_TxD / exploration.temperature, axis=-1)
    return jax.vmap(project, in_axes=(0, None, None))(g_TxD, exploration.space, exploration.radius)


def task_draws(
    key: jax.Array, g_TxD: jax.Array, exploration: Exploration, n_rollouts: int
) -> jax.Array:
    """The random part of a task's L exploring trajectories, from one key per task.

    One call per task (measured faster than one key per trajectory: a third of the time for
    per-trajectory noise): per-trajectory noise ``s ξ_l``, shape (L, d); per-step noise
    ``s ξ_{l,t}``, (L, T, d); sampled actions ``a_{l,t} ~ softmax(g_t/τ)``, (L, T) int32;
    ``none``: zeros (L, d). Trajectory l is row l, so :func:`policies_from_draws` of any rows
    rebuilds those trajectories (the filter keeps k of them).
    """
    T, d = g_TxD.shape
    L, kind, dtype = n_rollouts, exploration.kind, g_TxD.dtype
    if kind == "actions":
        logits = g_TxD / exploration.temperature
        return jax.random.categorical(key, logits, axis=-1, shape=(L, T)).astype(jnp.int32)
    if kind == "per-step":
        return exploration.scale * standard_normal(key, (L, T, d), dtype)
    if kind == "per-trajectory":
        return exploration.scale * standard_normal(key, (L, d), dtype)
    return jnp.zeros((L, d), dtype)


def policies_from_draws(g_TxD: jax.Array, draws: jax.Array, exploration: Exploration) -> jax.Array:
    """The (L, T, d) policies of the trajectories with these :func:`task_draws` rows.

    ``Proj(g_t + n)`` for Gaussian noise (``n`` constant in t for per-trajectory noise), the
    one-hot ``e_{a_t}`` for sampled actions, ``Proj(g_t)`` for ``none``.
    """
    d = g_TxD.shape[1]
    if exploration.kind == "actions":
        return jax.nn.one_hot(draws, d, dtype=g_TxD.dtype)
    offsets = draws[:, None, :] if draws.ndim == 2 else draws
    x_LxTxD = g_TxD[None] + offsets
    proj = jax.vmap(project, in_axes=(0, None, None))
    return jax.vmap(proj, in_axes=(0, None, None))(x_LxTxD, exploration.space, exploration.radius)


def explore(key: jax.Array, g_TxD: jax.Array, exploration: Exploration) -> jax.Array:
    """One exploring trajectory's (T, d) policies from the model outputs ``g_t`` (THEORY §4).

    Per-trajectory noise draws one ``ξ`` of shape (d,) and adds ``s ξ`` at every round;
    per-step noise draws ``ξ_t`` of shape (T, d). Both are projected onto the policy space.
    Action sampling returns one-hot policies ``e_{a_t}`` with ``a_t ~ softmax(g_t/τ)``.
    The same as the trajectory of a task rolled out from ``key`` with ``n_rollouts=1`` (with
    Gaussian noise, the draws of L > 1 trajectories depend on L, so row 0 of those differs).
    """
    draws = task_draws(key, g_TxD, exploration, 1)
    return policies_from_draws(g_TxD, draws, exploration)[0]


def _ball_scale(sq: jax.Array, radius: float) -> jax.Array:
    """``min(1, ρ/‖x‖)`` from ``‖x‖²``, as ``ρ / sqrt(max(‖x‖², ρ²))``.

    :func:`rmft_theory.spaces.project_ball`'s factor up to rounding (exactly 1 inside the
    ball for ρ = 1), with one ``max`` and an ``rsqrt`` and no select: the select form ran 1.1×
    (per-trajectory) to 2× (per-step) slower in the scoring pass, and ``min(1, ρ rsqrt(max(‖x‖²,
    tiny)))`` 4% slower (M = L = 64, T = 200, d = 8). Finite at ``x = 0``. For float32 and
    float64: in float16 ``ρ²`` can overflow, and bfloat16 rounds ``ρ·rsqrt(ρ²)`` away from 1.
    """
    return radius * jax.lax.rsqrt(jnp.maximum(sq, radius * radius))


def earned_from_draws(
    g_TxD: jax.Array, rewards_TxD: jax.Array, draws: jax.Array, exploration: Exploration
) -> jax.Array:
    """Total reward ``Σ_t <π_t, R_t>`` of each trajectory, (L,), without storing its policies.

    Equal to ``einsum("ltd,td->l", policies_from_draws(g, draws), R)`` up to float rounding.
    On the ball, per-trajectory noise ``n_l`` uses the collapsed form, in blocks of rounds
    (:func:`horizon_blocks`),
    ``‖g_t + n_l‖² = ‖g_t‖² + 2<g_t, n_l> + ‖n_l‖²``, ``<g_t + n_l, R_t> = <g_t, R_t> +
    <n_l, R_t>``: two (T, d)×(d, L) products and one O(T L) elementwise pass instead of
    O(T L d) (the rollout ran 7× faster than forming and storing the policies at
    M = L = 64, T = 200, d = 8). Per-step
    noise is one fused pass over (L, T, d); ``none`` evaluates its single trajectory once.
    The simplex and sampled actions form the policies.
    """
    kind, space, radius = exploration.kind, exploration.space, exploration.radius
    L = draws.shape[0]
    if kind == "none":
        pi_TxD = policies_from_draws(g_TxD, draws[:1], exploration)[0]
        return jnp.broadcast_to(jnp.sum(pi_TxD * rewards_TxD), (L,))
    if space == "ball" and kind == "per-trajectory":
        return _collapsed_earned(g_TxD, rewards_TxD, draws, radius)
    if space == "ball" and kind == "per-step":
        x_LxTxD = g_TxD[None] + draws
        sq_LxT = jnp.sum(x_LxTxD * x_LxTxD, axis=-1)
        dot_LxT = jnp.sum(x_LxTxD * rewards_TxD[None], axis=-1)
        return jnp.sum(_ball_scale(sq_LxT, radius) * dot_LxT, axis=-1)
    pi_LxTxD = policies_from_draws(g_TxD, draws, exploration)
    return jnp.einsum("ltd,td->l", pi_LxTxD, rewards_TxD)


def horizon_blocks(horizon: int, n_rollouts: int) -> tuple[int, int]:
    """``(n_blocks, block)``: ``n_blocks = ceil(T·L / BLOCK_ELEMENTS)`` (at most T) blocks of
    rounds, all of ``block = ceil(T / n_blocks)`` rounds (so ``block·L`` exceeds
    :data:`BLOCK_ELEMENTS` by less than one round's L), the last one zero-padded; one block
    of no rounds for T = 0."""
    n_blocks = max(1, min(horizon, -(-horizon * n_rollouts // BLOCK_ELEMENTS)))
    return n_blocks, -(-horizon // n_blocks)


def _collapsed_earned_block(
    g_TxD: jax.Array, rewards_TxD: jax.Array, n_LxD: jax.Array, n_sq_L: jax.Array, radius: float
) -> jax.Array:
    """The collapsed per-trajectory ball score of one block of rounds, (L,); ``n_sq_L`` is
    ``‖n_l‖²``, the same for every block."""
    sq_TxL = jnp.sum(g_TxD * g_TxD, axis=-1)[:, None] + 2.0 * (g_TxD @ n_LxD.T) + n_sq_L[None, :]
    dot_TxL = jnp.sum(g_TxD * rewards_TxD, axis=-1)[:, None] + rewards_TxD @ n_LxD.T
    return jnp.sum(_ball_scale(sq_TxL, radius) * dot_TxL, axis=0)


def _collapsed_earned(
    g_TxD: jax.Array, rewards_TxD: jax.Array, n_LxD: jax.Array, radius: float
) -> jax.Array:
    """:func:`_collapsed_earned_block` summed over :func:`horizon_blocks` by one ``lax.scan``.

    The score is a sum over rounds, so it splits into blocks of rounds; at long horizons the
    blocks ran up to 1.9× faster than one pass (:data:`BLOCK_ELEMENTS`). Zero-padded rounds add
    exactly nothing (``R_t = 0`` makes ``<π_t, R_t> = 0``).
    """
    T, d = g_TxD.shape
    n_sq_L = jnp.sum(n_LxD * n_LxD, axis=-1)
    n_blocks, block = horizon_blocks(T, n_LxD.shape[0])
    if n_blocks == 1:
        return _collapsed_earned_block(g_TxD, rewards_TxD, n_LxD, n_sq_L, radius)
    pad = ((0, n_blocks * block - T), (0, 0))
    g_BxTxD = jnp.pad(g_TxD, pad).reshape(n_blocks, block, d)
    rewards_BxTxD = jnp.pad(rewards_TxD, pad).reshape(n_blocks, block, d)

    def add_block(earned_L, xs):
        return earned_L + _collapsed_earned_block(*xs, n_LxD, n_sq_L, radius), None

    earned_L, _ = jax.lax.scan(
        add_block, jnp.zeros(n_LxD.shape[:1], g_TxD.dtype), (g_BxTxD, rewards_BxTxD)
    )
    return earned_L


def model_outputs(apply_fn: ApplyFn, params, rewards_TxD: jax.Array) -> jax.Array:
    """``g = apply_fn(params, R)`` for one task, checking that it is a floating-point array of
    the rewards' (T, d) shape (at trace time: it costs nothing under ``jit``). A model's (T, 1)
    or integer outputs would otherwise broadcast or give zero gradients without an error."""
    if rewards_TxD.ndim != 2:
        raise ValueError(f"rewards must have shape (T, d) per task, got {tuple(rewards_TxD.shape)}")
    g_TxD = apply_fn(params, rewards_TxD)
    shape, dtype = getattr(g_TxD, "shape", None), getattr(g_TxD, "dtype", None)
    if shape != rewards_TxD.shape:
        raise ValueError(
            f"model outputs must have the rewards' shape {tuple(rewards_TxD.shape)}, got {shape}"
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"model outputs must be floating point, got dtype {dtype}")
    return g_TxD


def checked_apply(apply_fn: ApplyFn) -> ApplyFn:
    """``apply_fn`` with every call's outputs checked by :func:`model_outputs`."""
    return functools.partial(model_outputs, apply_fn)


class TaskRollout(NamedTuple):
    """L trajectories of one task. The L trajectories share the task's reward sequence."""

    policies: jax.Array  # (L, T, d) policies π_t (one-hot e_{a_t} for noise="actions")
    actions: jax.Array  # (L, T) int32 sampled arms for noise="actions"; -1 otherwise
    rewards: jax.Array  # (T, d) the task's reward sequence, shared by its L trajectories
    regret: jax.Array  # (L,) static regret max_π Σ<π,R_t> − Σ<π_t,R_t>
    earned: jax.Array  # (L,) total reward Σ_t <π_t, R_t>


def rollout_task(
    apply_fn: ApplyFn,
    params,
    rewards_TxD: jax.Array,
    key: jax.Array,
    exploration: Exploration,
    n_rollouts: int,
) -> TaskRollout:
    """Roll out ``n_rollouts`` exploring trajectories on one task; the model runs once.

    Returns the policies, sampled actions, the (shared) rewards, and each trajectory's static
    regret ``max_{π∈Π} <π, S_T> − Σ_t <π_t, R_t>`` (THEORY §1). The randomness of all L
    trajectories comes from ``key`` (:func:`task_draws`).
    """
    check_positive_int("rollouts", n_rollouts)
    g_TxD = model_outputs(apply_fn, params, rewards_TxD)
    draws = task_draws(key, g_TxD, exploration, n_rollouts)
    pi_LxTxD = policies_from_draws(g_TxD, draws, exploration)
    earned_L = jnp.einsum("ltd,td->l", pi_LxTxD, rewards_TxD)
    best = best_fixed_value(jnp.sum(rewards_TxD, axis=0), exploration.space, exploration.radius)
    if exploration.kind == "actions":
        actions_LxT = draws
    else:
        actions_LxT = jnp.full(pi_LxTxD.shape[:2], -1, jnp.int32)
    return TaskRollout(pi_LxTxD, actions_LxT, rewards_TxD, best - earned_L, earned_L)


def rollout(
    apply_fn: ApplyFn,
    params,
    rewards_MxTxD: jax.Array,
    key: jax.Array,
    exploration: Exploration,
    n_rollouts: int,
) -> TaskRollout:
    """:func:`rollout_task` vmapped over M tasks (one key each): fields gain a leading M axis."""
    check_task_batch(rewards_MxTxD)
    keys_M = jax.random.split(key, rewards_MxTxD.shape[0])
    return jax.vmap(rollout_task, in_axes=(None, None, 0, 0, None, None))(
        apply_fn, params, rewards_MxTxD, keys_M, exploration, n_rollouts
    )


def check_task_batch(rewards_MxTxD: jax.Array) -> None:
    """Raise a ValueError unless the rewards have shape (M, T, d) with T >= 1."""
    if rewards_MxTxD.ndim != 3:
        raise ValueError(f"rewards must have shape (M, T, d), got {tuple(rewards_MxTxD.shape)}")
    if rewards_MxTxD.shape[1] < 1:
        raise ValueError(f"horizon must be >= 1, got T={rewards_MxTxD.shape[1]}")


def make_rollout(apply_fn: ApplyFn, exploration: Exploration, n_rollouts: int) -> Callable:
    """A jitted ``(params, rewards_MxTxD, key) -> TaskRollout`` for fixed settings, compiled
    with :func:`rmft_theory.runtime.compiler_options` for its noise."""

    def run(params, rewards_MxTxD, key):
        return rollout(apply_fn, params, rewards_MxTxD, key, exploration, n_rollouts)

    return jax.jit(run, compiler_options=compiler_options(exploration.kind) or None)


# Elements (floats per trajectory-step slice) processed per chunk of tasks. Measured on a 2-core
# CPU at T = 200, d = 8 (benchmarks/bench_rollout.py): per-step noise ran 1.6× faster in chunks
# of ~1024 trajectories (2^21 floats of noise) than with 4096 at once, and the collapsed
# per-trajectory form fastest at ~8k trajectories (its (T, L) arrays are d times smaller); at
# B = 65536 unchunked runs were 2× slower. The chunk keeps a task chunk's arrays in cache.
CHUNK_ELEMENTS = 2**21

# The same off CPU (GPU, TPU), where a chunk of tasks is one launch of wide kernels and CPU-sized
# chunks leave the device idle between them. Measured on an H100 (JAX 0.11.2, rollouts drawing
# their own rewards, L = 64, d = 8, medians of 3 calls) with chunks of 2^21 / 2^24 / 2^27
# floats: per-step noise at M = 1024, T = 200 took 104.6 / 13.8 / 3.2 ms and at M = 64,
# T = 2000 482 / 60.6 / 17.9 ms; per-trajectory noise at M = 1024, T = 200 14.8 / 2.5 / 2.8 ms.
# A chunk's largest arrays then hold up to 2^27 floats (512 MiB).
ACCELERATOR_CHUNK_ELEMENTS = 2**27


def chunk_elements(backend: str | None = None) -> int:
    """Floats per chunk of tasks on ``backend`` (default: JAX's default backend):
    :data:`CHUNK_ELEMENTS` on CPU, :data:`ACCELERATOR_CHUNK_ELEMENTS` elsewhere."""
    backend = jax.default_backend() if backend is None else backend
    return CHUNK_ELEMENTS if backend == "cpu" else ACCELERATOR_CHUNK_ELEMENTS


# (Round, trajectory) pairs per block of rounds in the collapsed per-trajectory score
# (:func:`horizon_blocks`): a task's (T, L) float32 arrays are scored 128 KiB at a time. One
# block up to T = 512 at L = 64, so T ≤ 512 is unchanged. Measured on the 2-core CPU (fresh
# process, rollouts drawing their own rewards, d = 8, T = 2000, interleaved rounds; time without
# blocks over time with, at 2^13 / 2^14 / 2^15 / 2^16 pairs): M = L = 64: 1.67 / 1.91 / 1.94 /
# 1.23; M = 16, L = 64: 1.55 / 1.67 / 1.70 / 1.19; M = 256, L = 64: 1.22 / 1.34 / 1.47 / 1.08;
# L = 16 (M = 16, 64): 0.99-1.11, one or two blocks. The cause is not the task chunk: unblocked,
# the rewards-given rollout at M = L = 64, T = 2000 took 6.5 / 12.7 / 12.4 ms in chunks of 2 /
# 16 / 64 tasks, blocked (blocks of 200-400 rounds, chunks of 64 tasks) 5.3 ms. Which part of
# XLA's long-T program is slow was not isolated.
BLOCK_ELEMENTS = 2**15


def task_elements(exploration: Exploration, n_rollouts: int, horizon: int, d: int) -> int:
    """Floats per task in the scoring pass: L·T for the collapsed form (L·block for the
    per-trajectory score, which runs in :func:`horizon_blocks`), L·T·d otherwise."""
    if exploration.space == "ball" and exploration.kind == "per-trajectory":
        return n_rollouts * horizon_blocks(horizon, n_rollouts)[1]
    collapsed = exploration.space == "ball" and exploration.kind == "none"
    return n_rollouts * horizon * (1 if collapsed else d)


def task_chunk_size(n_tasks: int, elements_per_task: int, max_tasks: int | None = None) -> int:
    """Tasks per ``lax.map`` chunk: about :func:`chunk_elements` floats, at most ``max_tasks``.

    At least two tasks: XLA on CPU compiled a chunk of one task (batch dimension 1, which it
    squeezes away) into a 2-3× slower program per task than a chunk of two (per-step noise,
    T = 2000; benchmarks/bench_rollout.py). When the chunk does not divide ``n_tasks``, the
    largest divisor down to half the chunk is taken instead, so ``lax.map`` has no remainder
    batch to run outside its loop: with one, the rollout drawing its own rewards took 1.35×
    as long at M = 1024 tasks (per-trajectory noise, L = 64, T = 200, d = 8: chunks of 163
    with a remainder of 46 against 8 chunks of 128; one core).
    """
    chunk = max(2, chunk_elements() // max(1, elements_per_task))
    if max_tasks is not None:
        chunk = min(chunk, max_tasks)
    chunk = max(1, min(chunk, n_tasks))
    divisors = [c for c in range(chunk, max(1, (chunk + 1) // 2) - 1, -1) if n_tasks % c == 0]
    return divisors[0] if divisors and divisors[0] >= 2 else chunk


class RolloutScores(NamedTuple):
    """Regret and total reward of every trajectory, without its policies (see rollout_scores)."""

    regret: jax.Array  # (M, L) static regret
    earned: jax.Array  # (M, L) total reward Σ_t <π_t, R_t>


def task_scores(
    apply_fn: ApplyFn,
    params,
    rewards_TxD: jax.Array,
    key: jax.Array,
    exploration: Exploration,
    n_rollouts: int,
    rows: tuple[jax.Array | int, int] | None = None,
) -> RolloutScores:
    """Regret and total reward of one task's trajectories, (L,) each: the model runs once.

    ``rows = (start, size)`` scores only trajectories ``start .. start + size − 1`` of the
    task's ``n_rollouts`` (the same numbers as scoring all of them; ``start`` may be traced),
    which is how :mod:`rmft_theory.sharding` splits a task's trajectories over devices.
    """
    g_TxD = model_outputs(apply_fn, params, rewards_TxD)
    draws = task_draws(key, g_TxD, exploration, n_rollouts)
    if rows is not None:
        draws = jax.lax.dynamic_slice_in_dim(draws, rows[0], rows[1], axis=0)
    earned_L = earned_from_draws(g_TxD, rewards_TxD, draws, exploration)
    best = best_fixed_value(jnp.sum(rewards_TxD, axis=0), exploration.space, exploration.radius)
    return RolloutScores(best - earned_L, earned_L)


def map_task_scores(
    apply_fn: ApplyFn,
    params,
    rewards_MxTxD: jax.Array,
    keys_M: jax.Array,
    exploration: Exploration,
    n_rollouts: int,
    task_chunk: int | None = None,
    rows: tuple[jax.Array | int, int] | None = None,
) -> RolloutScores:
    """:func:`task_scores` of M tasks with their keys, in ``lax.map`` chunks of tasks."""
    M, T, d = rewards_MxTxD.shape
    n_scored = n_rollouts if rows is None else rows[1]
    chunk = task_chunk_size(M, task_elements(exploration, n_scored, T, d), task_chunk)

    def one(xs):
        key_m, rewards_TxD = xs
        return task_scores(apply_fn, params, rewards_TxD, key_m, exploration, n_rollouts, rows)

    return jax.lax.map(one, (keys_M, rewards_MxTxD), batch_size=chunk)


def rollout_scores(
    apply_fn: ApplyFn,
    params,
    rewards_MxTxD: jax.Array,
    key: jax.Array,
    exploration: Exploration,
    n_rollouts: int,
    task_chunk: int | None = None,
) -> RolloutScores:
    """Each trajectory's regret and total reward, as :func:`rollout` but storing no policies.

    The same keys, draws and policies as ``rollout(apply_fn, params, rewards, key, ...)`` (task
    m draws from ``split(key, M)[m]``), so the kept trajectories' policies can be rebuilt from
    :func:`task_draws`; the scores agree with :func:`rollout`'s up to float rounding
    (:func:`earned_from_draws`). The model runs once per task. Tasks go through ``lax.map`` in
    chunks of :func:`task_chunk_size` (at most ``task_chunk``), so memory is
    O(chunk · L · T · d) and no (M, L, T, d) array is formed. Returns (M, L) fields.
    For several devices see :func:`rmft_theory.sharding.sharded_rollout_scores`.
    """
    check_positive_int("rollouts", n_rollouts)
    check_task_batch(rewards_MxTxD)
    keys_M = jax.random.split(key, rewards_MxTxD.shape[0])
    return map_task_scores(
        apply_fn, params, rewards_MxTxD, keys_M, exploration, n_rollouts, task_chunk
    )


def trajectory_regrets(
    rewards_TxD: jax.Array, policies_LxTxD: jax.Array, space: str, radius: float = 1.0
) -> jax.Array:
    """``regret.static_regret`` of each of L trajectories sharing one reward sequence."""
    return jax.vmap(static_regret, in_axes=(None, 0, None, None))(
        rewards_TxD, policies_LxTxD, space, radius
    )
