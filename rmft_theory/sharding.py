"""Rollouts and the regret filter's fine-tuning over several devices (``jax.sharding``).

A :class:`jax.sharding.Mesh` with a ``"tasks"`` axis, and optionally a ``"rollouts"`` axis::

    mesh = make_mesh()                                   # every device on "tasks"
    mesh = make_mesh((2, 2), (TASKS, ROLLOUTS))          # 2 task shards × 2 trajectory shards
    scores = sharded_rollout_scores(apply_fn, params, rewards_MxTxD, key, exploration, L, mesh)
    params, opt_state, losses = sharded_finetune(apply_fn, params, kept, config, mesh)
    iteration = make_iteration(apply_fn, env, config, metrics_fn, mesh=mesh)  # rmft.py

* **Rollouts** (``shard_map``): each device takes M/n_tasks tasks with their keys
  (``split(key, M)`` is computed once, as unsharded), runs the model once per task and scores
  L/n_rollouts of each task's trajectories: the same draws and arithmetic as
  :func:`rmft_theory.rollout.rollout_scores`, so sharded and unsharded scores agree to float
  rounding (XLA may vectorise a different number of local tasks differently; measured equal or
  within 1 ulp). On the ``"rollouts"`` axis every device evaluates its tasks' model outputs
  (cheap: once per task) and slices its rows of the task's draws.
* **Fine-tuning** (GSPMD): the kept set is split over all devices along its task axis and the
  parameters are replicated; XLA adds the all-reduce of the gradient. The loss is a sum over
  tasks, so the only difference from one device is the order of that sum (float rounding).
  In the LSA's moments form (:mod:`rmft_theory.models.lsa_moments`) each device computes the
  moments of its share and one ``psum`` adds them (:func:`sharded_task_sum`); the optimiser
  steps then run replicated.

On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before JAX starts) splits the
host into N devices. On the 2-core benchmark machine, given inputs already on the mesh
(:func:`task_sharding`, :func:`placed_for`), two devices ran the larger per-trajectory rollout
1.41× as fast as one and the other workloads at parity (1.01-1.04×; benchmarks/bench_sharding.py).
Across hosts, call ``jax.distributed.initialize()`` first and build the mesh from
``jax.devices()`` (all hosts' devices); see the README.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rmft_theory.rollout import (
    ApplyFn,
    Exploration,
    RolloutScores,
    check_task_batch,
    map_task_scores,
)
from rmft_theory.validation import check_positive_int

TASKS, ROLLOUTS = "tasks", "rollouts"
AXES = (TASKS, ROLLOUTS)


def make_mesh(
    shape: Sequence[int] | None = None,
    axis_names: Sequence[str] = (TASKS,),
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A device mesh for rollouts and fine-tuning.

    Args:
      shape: devices along each axis (default: all devices on the first axis, 1 on the others).
      axis_names: a sub-sequence of ``("tasks", "rollouts")``.
      devices: the devices to use (default ``jax.devices()``, all hosts' devices after
        ``jax.distributed.initialize()``); the first ``prod(shape)`` are taken.
    """
    axis_names = tuple(axis_names)
    if (
        not axis_names
        or any(a not in AXES for a in axis_names)
        or len(set(axis_names)) != len(axis_names)
    ):
        raise ValueError(f"axis_names must be distinct names among {AXES}, got {axis_names}")
    devices = list(jax.devices() if devices is None else devices)
    if shape is None:
        shape = (len(devices),) + (1,) * (len(axis_names) - 1)
    shape = tuple(int(n) for n in shape)
    if len(shape) != len(axis_names) or any(n < 1 for n in shape):
        raise ValueError(f"shape must give a positive size for each of {axis_names}, got {shape}")
    if math.prod(shape) > len(devices):
        raise ValueError(f"shape {shape} needs {math.prod(shape)} devices, {len(devices)} given")
    return Mesh(np.asarray(devices[: math.prod(shape)], dtype=object).reshape(shape), axis_names)


def mesh_of(devices: int) -> Mesh | None:
    """A ``"tasks"`` mesh over the first ``devices`` JAX devices, or None for one device (the
    command line's ``--devices``). Fewer devices than asked raises a ValueError that says how
    to get them on CPU."""
    n = check_positive_int("devices", devices)
    if n == 1:
        return None
    available = jax.devices()
    if len(available) < n:
        platform = available[0].platform
        how = (
            "on CPU the host is split into N devices only by "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts (the rmft "
            "command sets it for --devices unless XLA_FLAGS has a count already; XLA_FLAGS is "
            f"{os.environ.get('XLA_FLAGS', '')!r})"
            if platform == "cpu"
            else "set JAX_PLATFORMS=cpu to split the host CPU into N devices instead"
        )
        raise ValueError(
            f"devices={n} needs {n} JAX devices, {len(available)} available ({platform}); {how}"
        )
    return make_mesh((n,))


def axis_size(mesh: Mesh, name: str) -> int:
    """Devices along ``name`` (1 if the mesh has no such axis)."""
    return int(mesh.shape[name]) if name in mesh.axis_names else 1


def _task_axes(mesh: Mesh) -> tuple[str, ...]:
    """Mesh axes over which a per-task array (the kept set) is split: all of them."""
    return tuple(a for a in AXES if a in mesh.axis_names)


def kept_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a per-task array (leading axis C) over every device of the mesh."""
    return NamedSharding(mesh, P(_task_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimiser state)."""
    return NamedSharding(mesh, P())


def _check_divisible(name: str, n: int, parts: int, axis: str) -> None:
    if n % parts:
        raise ValueError(f"{name} must be divisible by the mesh's {axis!r} axis ({parts}), got {n}")


def map_tasks_sharded(
    fn: Callable, xs, batch_size: int, mesh: Mesh | None, out_specs=None
) -> object:
    """``lax.map(fn, xs, batch_size)`` over the leading task axis, split over ``"tasks"``.

    Each device maps ``fn`` over its own tasks (replicated along any ``"rollouts"`` axis).
    With ``mesh=None`` this is ``lax.map`` itself. ``xs`` must be a pytree of per-task arrays.
    """
    if mesh is None or (axis_size(mesh, TASKS) == 1 and axis_size(mesh, ROLLOUTS) == 1):
        return jax.lax.map(fn, xs, batch_size=batch_size)
    n = jax.tree.leaves(xs)[0].shape[0]
    _check_divisible("tasks", n, axis_size(mesh, TASKS), TASKS)
    spec = task_sharding(mesh).spec

    def local(xs_local):
        return jax.lax.map(fn, xs_local, batch_size=batch_size)

    # check_vma=False: the body has no collectives, and the library's scans start from
    # device-invariant zeros (the varying-axes check would ask for pcasts in model code).
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(spec,),
        out_specs=spec if out_specs is None else out_specs,
        check_vma=False,
    )(xs)


def sharded_rollout_scores(
    apply_fn: ApplyFn,
    params,
    rewards_MxTxD: jax.Array,
    key: jax.Array,
    exploration: Exploration,
    n_rollouts: int,
    mesh: Mesh,
    task_chunk: int | None = None,
) -> RolloutScores:
    """:func:`rmft_theory.rollout.rollout_scores` split over the mesh's task and trajectory
    axes: (M, L) fields sharded as ``P("tasks", "rollouts")``.

    M must be divisible by the ``"tasks"`` axis and L by the ``"rollouts"`` axis. Task m still
    draws from ``split(key, M)[m]`` and trajectory l is row l of its draws, so the result equals
    the unsharded one to float rounding. Give it rewards already on the mesh
    (``jax.device_put(rewards, task_sharding(mesh))``, the parameters with
    :func:`replicated`, or all inputs of a compiled call with :func:`placed_for`): inputs on
    one device are moved at every call (at M = L = 64, T = 200, d = 8 on 2 CPU devices the
    rollout took 0.79 ms against 0.57 ms placed; benchmarks/bench_sharding.py).
    """
    check_positive_int("rollouts", n_rollouts)
    check_task_batch(rewards_MxTxD)
    M = rewards_MxTxD.shape[0]
    n_tasks, n_rows = axis_size(mesh, TASKS), axis_size(mesh, ROLLOUTS)
    _check_divisible("tasks", M, n_tasks, TASKS)
    _check_divisible("rollouts", n_rollouts, n_rows, ROLLOUTS)
    keys_M = jax.random.split(key, M)
    rows_per_device = n_rollouts // n_rows
    task_spec = task_sharding(mesh).spec
    out_spec = P(
        TASKS if TASKS in mesh.axis_names else None,
        ROLLOUTS if ROLLOUTS in mesh.axis_names else None,
    )

    def local(params, rewards_local, keys_local):
        rows = None
        if n_rows > 1:
            rows = (jax.lax.axis_index(ROLLOUTS) * rows_per_device, rows_per_device)
        return map_task_scores(
            apply_fn, params, rewards_local, keys_local, exploration, n_rollouts, task_chunk, rows
        )

    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(), task_spec, task_spec),
        out_specs=RolloutScores(out_spec, out_spec),
        check_vma=False,  # as in map_tasks_sharded: no collectives in the body
    )(params, rewards_MxTxD, keys_M)


def task_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a per-task input (rewards (M, T, d)) as the rollouts take it: split over
    ``"tasks"``, replicated along ``"rollouts"`` (replicated everywhere on a mesh without a
    ``"tasks"`` axis). Put inputs there once (``jax.device_put(rewards, task_sharding(mesh))``)
    rather than moving them in every call."""
    return NamedSharding(mesh, P(TASKS) if TASKS in mesh.axis_names else P())


def placed_for(compiled: jax.stages.Compiled, args: tuple) -> tuple:
    """The positional ``args`` put where the ahead-of-time ``compiled`` executable takes them
    (its ``input_shardings``: split or replicated over its mesh), so that calls do not move
    them. Inputs the executable does not read (``None`` shardings) stay where they are."""
    return jax.device_put(args, compiled.input_shardings[0])


def split_tasks(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Constrain a per-task array (leading axis) to be split over the mesh's ``"tasks"`` axis
    (replicated along ``"rollouts"``); unchanged without a mesh, a ``"tasks"`` axis of size
    1, or a task count it does not divide."""
    n = 1 if mesh is None else axis_size(mesh, TASKS)
    if n == 1 or x.shape[0] % n:
        return x
    return jax.lax.with_sharding_constraint(x, task_sharding(mesh))


def shard_kept(kept, mesh: Mesh):
    """Constrain a kept set (per-task arrays) to be split over every device of ``mesh``."""
    return jax.lax.with_sharding_constraint(kept, kept_sharding(mesh))


def sharded_task_sum(fn: Callable, kept, total, mesh: Mesh):
    """``Σ_devices fn(*local kept set, total)``: a per-task sum over the kept set, split over the
    mesh's devices (``shard_map`` + ``psum``), e.g. the LSA's fine-tuning moments."""
    axes = _task_axes(mesh)
    spec = P(axes)

    def local(rewards, targets, weights, total):
        return jax.lax.psum(fn(rewards, targets, weights, total), axes)

    return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, spec, P()), out_specs=P())(
        *kept, total
    )


def sharded_finetune(apply_fn: ApplyFn, params, kept, config, mesh: Mesh):
    """:func:`rmft_theory.rmft.finetune` with the kept set split over the mesh's devices.

    Data parallel: parameters and optimiser state replicated, the C kept tasks split over all
    devices (C must be divisible by their number); the gradient's sum over tasks becomes an
    all-reduce. Call under ``jax.jit`` (or directly: it jits itself).
    """
    from rmft_theory.rmft import finetune  # deferred: rmft imports this module

    n = math.prod(axis_size(mesh, a) for a in _task_axes(mesh))
    _check_divisible("kept tasks", kept.rewards.shape[0], n, "/".join(_task_axes(mesh)))

    def run(params, kept):
        return finetune(apply_fn, params, shard_kept(kept, mesh), config, mesh)

    rep = replicated(mesh)
    return jax.jit(run, in_shardings=(rep, kept_sharding(mesh)), out_shardings=rep)(params, kept)
