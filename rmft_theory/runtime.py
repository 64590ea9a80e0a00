"""XLA on CPU at run time: pin its intra-op worker threads one per CPU (Linux), build
``XLA_FLAGS`` with backend options or a host device count for a process yet to start JAX
(:func:`xla_flags_with`, :func:`xla_flags_with_host_devices`), and the per-executable compiler
options the library compiles its filter loop with (:func:`compiler_options`).

XLA's CPU client runs parallel work on a pool of worker threads, one per CPU it may use, and
leaves their placement to the operating system. Linux places a woken thread near the thread
that woke it, so after a pause both workers can share one CPU until the load balancer
separates them, and every kernel XLA splits over them runs at one CPU's speed. Pinning them
one per CPU is the usual remedy (OpenMP's ``OMP_PROC_BIND``), with the usual caveat: pin only
where the process has its CPUs to itself; several pinned processes sharing CPUs contend for
them. README "Speed" has the measurements on the 2-core benchmark VM.

Usage, once JAX is imported (the pool is created with the CPU backend)::

    with pinned_xla_threads():
        ...  # run the sweep

or ``previous = pin_xla_threads()`` and later ``restore_affinities(previous)``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax

from rmft_theory.validation import check_choice, check_positive_int

# The name XLA's CPU client gives its intra-op pool's threads ("tf_" + "XLAEigen"). It is an
# internal detail of XLA, not an API: tests/test_runtime.py checks it against the running
# client, so a rename shows up as a failing test rather than as pinning that does nothing.
XLA_WORKER_NAME = "tf_XLAEigen"


def supported() -> bool:
    """Whether this platform lets a process place its threads (Linux)."""
    return sys.platform.startswith("linux") and hasattr(os, "sched_setaffinity")


def xla_worker_threads() -> list[int]:
    """Thread ids of this process's XLA CPU worker threads, in creation order ([] off Linux).

    Creates the CPU backend first (``jax.devices("cpu")``), which creates the pool; [] where
    there is no CPU backend.
    """
    if not supported():
        return []
    try:
        jax.devices("cpu")
    except RuntimeError:  # no CPU backend in this process (e.g. JAX_PLATFORMS=cuda)
        return []
    tids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if name == XLA_WORKER_NAME:
            tids.append(int(task.name))
    return sorted(tids)


def pin_xla_threads(cpus: Sequence[int] | None = None) -> dict[int, set[int]]:
    """Pin XLA's worker threads one per CPU, round robin over ``cpus``.

    ``cpus`` defaults to the CPUs this process may run on (``os.sched_getaffinity(0)``).
    Returns each pinned thread's previous affinity, for :func:`restore_affinities`; {} where
    the platform cannot place threads (:func:`supported`), so callers need no platform check.
    """
    if not supported():
        return {}
    allowed = sorted(os.sched_getaffinity(0))
    cpus = allowed if cpus is None else list(cpus)
    if not cpus:
        raise ValueError("cpus must name at least one CPU")
    outside = sorted(set(cpus) - set(allowed))
    if outside:
        raise ValueError(f"cpus {outside} are not among this process's CPUs {allowed}")
    previous = {}
    try:
        for i, tid in enumerate(xla_worker_threads()):
            try:
                previous[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, {cpus[i % len(cpus)]})
            except ProcessLookupError:  # the thread ended meanwhile
                previous.pop(tid, None)
    except BaseException:
        restore_affinities(previous)  # no thread stays pinned by a half-finished call
        raise
    return previous


def restore_affinities(previous: dict[int, set[int]]) -> None:
    """Give threads back the affinities :func:`pin_xla_threads` returned (ended ones skipped)."""
    if not supported():
        return
    for tid, cpus in previous.items():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def pinned_xla_threads(cpus: Sequence[int] | None = None) -> Iterator[dict[int, set[int]]]:
    """:func:`pin_xla_threads` for the duration of a ``with`` block, then restore."""
    previous = pin_xla_threads(cpus)
    try:
        yield previous
    finally:
        restore_affinities(previous)


HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def xla_flags_with_host_devices(n: int, flags: str | None = None) -> str:
    """``flags`` (default: ``$XLA_FLAGS``) asking XLA to split the host CPU into ``n`` devices
    (``--xla_force_host_platform_device_count``), for a process yet to start JAX's backends.

    A count the flags already set is kept (the caller's choice wins); ``n = 1`` adds nothing.
    Only the CPU platform reads the flag: on a GPU or TPU machine ``jax.devices()`` still lists
    the accelerators. ``n`` below 1 raises a ValueError naming ``devices``.
    """
    check_positive_int("devices", n)
    base = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    if n == 1 or HOST_DEVICES_FLAG in base:
        return base
    return f"{base} {HOST_DEVICES_FLAG}={n}".strip()


def xla_flags_with(backend_options: dict[str, str], flags: str | None = None) -> str:
    """``flags`` (default: ``$XLA_FLAGS``) with ``backend_options`` added to XLA's backend
    options (``--xla_backend_extra_options=key=value,...``), for a process yet to start JAX.

    XLA reads ``XLA_FLAGS`` once, when JAX creates its first backend, and adds the entries of
    every ``--xla_backend_extra_options`` to one map (a later entry for a key wins), so the
    result keeps the caller's own options. Some options, such as
    ``xla_cpu_small_while_loop_byte_threshold`` (benchmarks/bench_xla_options.py), can be set
    no other way: per-executable ``compiler_options`` refuse them. A key or value that is
    empty or holds ``,``, ``=`` or whitespace raises a ValueError naming it.
    """
    base = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    if not backend_options:
        return base
    for key, value in backend_options.items():
        for what, text in (("key", key), ("value", value)):
            if not isinstance(text, str) or not text or any(c in text for c in ",= \t\n"):
                raise ValueError(
                    f"backend_options {what} must be a non-empty string without ',', '=' or "
                    f"whitespace, got {text!r}"
                )
    pairs = ",".join(f"{key}={value}" for key, value in backend_options.items())
    return f"{base} --xla_backend_extra_options={pairs}".strip()


#: YNNPACK fusions for dots only: XLA's default on CPU also hands reductions (with the
#: elementwise work and dots feeding them) to YNNPACK (``LIBRARY_FUSION_TYPE_REDUCE``); this
#: list leaves them to XLA's own emitters. An experimental XLA option (:func:`compiler_options`
#: checks that this XLA accepts it).
NO_YNN_REDUCE = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


@functools.cache
def xla_accepts(option: str, value: str) -> bool:
    """Whether this XLA compiles with ``compiler_options={option: value}`` (an experimental
    option may go away); checked once per pair and process."""
    try:
        jax.jit(lambda x: x + 1.0).lower(1.0).compile(compiler_options={option: value})
    except Exception:  # XLA reports an unknown option or value as a generic runtime error
        return False
    return True


def compiler_options(noise: str, backend: str | None = None) -> dict[str, str]:
    """XLA ``compiler_options`` for an executable that rolls out with exploration ``noise``.

    On CPU, :data:`NO_YNN_REDUCE` for every noise but per-trajectory. The per-step scoring
    sums ``‖g_t + s ξ_t‖²`` and ``<g_t + s ξ_t, R_t>`` over d for every trajectory and round,
    action sampling takes a softmax per round, and YNNPACK's fusions ran those reductions slower
    than XLA's own loops. Measured by ``benchmarks/bench_compiler_options.py`` (both
    compilations timed as pairs between core-latency probes; speed-up with the 2-core VM's
    vCPUs sharing a cache / not; the run at 0d5eb8d), one filter iteration (M = 256, L = 64,
    T = 100, d = 5) ran 1.49× / 1.42× as fast with per-step noise, 1.38× / 1.29× without noise
    (``"none"``), 1.07× / 1.07× with sampled actions (M = 64, simplex) and 1.05× / 1.01× with
    them under bandit feedback (d = 3); the per-step rollout drawing its own rewards
    (M = L = 64, T = 200) 1.90× / 1.89× at d = 2, 1.17× / 1.15× at d = 32 and 0.96× / 1.01× at
    d = 8. Per-trajectory noise keeps XLA's default: its collapsed scoring
    (:func:`rmft_theory.rollout.earned_from_draws`) ran 0.64-0.85× as fast with the option
    where the vCPUs share no cache (T = 200 and 2000) and 0.85× at d = 32 where they share one
    (1.0-1.2× elsewhere where they share one). Every backend but ``"cpu"`` (default: JAX's default
    backend) gets ``{}``; an unknown ``noise`` raises a ValueError naming it. Results agree
    with the default compilation up to float rounding (relative 1e-5 in that run), except
    where rounding flips a sampled action: the bandit iteration's outputs differed by 1.3e-3
    relative.
    """
    from rmft_theory.rollout import EXPLORATIONS  # deferred: rollout imports this module

    check_choice("noise", noise, EXPLORATIONS)
    backend = jax.default_backend() if backend is None else backend
    if noise == "per-trajectory" or backend != "cpu":
        return {}
    ((option, value),) = NO_YNN_REDUCE.items()
    return dict(NO_YNN_REDUCE) if xla_accepts(option, value) else {}
