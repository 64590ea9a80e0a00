"""Benchmark helpers: timing with compile time apart, machine floors, and result files.

Timings follow one protocol everywhere: compile ahead of time (timed separately), one warm-up
call, then the median wall time of ``repeats`` calls, each ended by ``block_until_ready``.
Comparisons (ours against a reference) are timed back to back in one process with
:func:`time_interleaved`: rounds alternate the implementations, so that a change in machine
load hits both sides alike, and within a round each runs a block of calls after an untimed
settling call, so that none is timed while another library's idle worker threads still spin.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.io import environment_info, save_json
from rmft_theory.progress import compile_timed
from rmft_theory.runtime import pin_xla_threads, restore_affinities


def time_jax(fn: Callable, *args, repeats: int = 5) -> dict:
    """Compile ``jax.jit(fn)`` for ``args`` (timed), warm up once, return the median run time."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
    return {
        "compile_s": compile_s,
        "median_s": statistics.median(runs),
        "runs_s": runs,
        "compiled": compiled,
    }


def time_host(fn: Callable, *args, repeats: int = 5) -> dict:
    """Median wall time of a host (NumPy/PyTorch) function after one warm-up call."""
    fn(*args)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        runs.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(runs), "runs_s": runs}


#: ``jax.jit(fn)`` compiled ahead of time for ``args``, and the seconds it took: the same
#: function as the library's training loops use (:func:`rmft_theory.progress.compile_timed`).
compile_jax = compile_timed


def blocking(fn: Callable, *args) -> Callable[[], object]:
    """A zero-argument call ``fn(*args)`` that waits for JAX results (for time_interleaved)."""
    return lambda: jax.block_until_ready(fn(*args))


def time_interleaved(
    calls: dict[str, Callable[[], object]],
    repeats: int = 7,
    warmup: int = 1,
    block: int = 1,
    settle_s: float = 0.0,
) -> dict[str, dict]:
    """Time zero-argument ``calls`` back to back: ``warmup`` untimed rounds, then ``repeats``
    rounds in which each call runs ``block`` timed times in a row (after untimed settling
    calls when ``block > 1``: one, or as many as fill ``settle_s`` seconds); the order
    reverses every round. Returns, per name, the median,
    the minimum and all ``repeats · block`` run times in seconds, and how the process used the
    machine meanwhile: ``cores`` (process CPU time over wall time across the timed calls, all
    threads, spin-waiting included; for calls of well under a millisecond only an estimate,
    as the kernel brings other threads' CPU time up to date lazily: values above the core
    count occur) and ``switches_per_call`` (voluntary context switches per
    timed call: how often a thread went to sleep waiting for work; ``None`` where
    ``resource`` is unavailable).

    Rounds make ratios robust to slow drifts in machine load. Blocks matter when the calls
    come from different libraries: each keeps worker threads (OpenMP's in PyTorch and
    OpenBLAS, Eigen's in XLA) that spin for a while after a call. On the 2-core benchmark
    machine, alternating single calls of JAX and PyTorch made JAX's headline rollout 1.3-2×
    and ``torch.compile``'s 1.4-2.8× slower than either timed alone; in blocks of 7 after a
    settling call each was within 10% of its time alone. A settling call is shorter than
    OpenMP's spin for calls of about a millisecond: at the rollout headline (0.8 ms), blocks
    of 3 after one settling call left JAX 1.1-1.3× slower than alone, after 20 ms of settling
    calls within 3%, and ``torch.compile`` within 10% (``settle_s``).
    """
    if repeats < 1 or block < 1:
        raise ValueError(f"repeats and block must be >= 1, got {repeats} and {block}")
    if not settle_s >= 0:
        raise ValueError(f"settle_s must be >= 0, got {settle_s}")
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    runs: dict[str, list[float]] = {name: [] for name in names}
    cpu = dict.fromkeys(names, 0.0)
    switches = dict.fromkeys(names, 0)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            if block > 1:  # settle: let the previous library's threads go idle
                settle_end = time.perf_counter() + settle_s
                calls[name]()
                while time.perf_counter() < settle_end:
                    calls[name]()
            switches_before = voluntary_switches()
            for _ in range(block):
                c0, t0 = time.process_time(), time.perf_counter()
                calls[name]()
                t1, c1 = time.perf_counter(), time.process_time()
                runs[name].append(t1 - t0)
                cpu[name] += c1 - c0
            if switches_before is not None:
                switches[name] += voluntary_switches() - switches_before
    has_switches = voluntary_switches() is not None
    return {
        name: {
            "median_s": statistics.median(r),
            "min_s": min(r),
            "runs_s": r,
            "cores": cpu[name] / sum(r) if sum(r) > 0 else 0.0,
            "switches_per_call": switches[name] / len(r) if has_switches else None,
        }
        for name, r in runs.items()
    }


def voluntary_switches() -> int | None:
    """Voluntary context switches of this process so far (all threads), or None off Unix."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


def run_child(
    cmd: list[str], timeout_s: float = 3600.0, env: dict[str, str] | None = None
) -> tuple[bool, object]:
    """Run ``cmd`` (a benchmark child process, with environment ``env``, default this
    process's) and parse the last line of its stdout as JSON.

    Returns ``(True, the parsed value)``, or ``(False, why)`` when the child failed, timed
    out, printed nothing or printed something that is not JSON, so that a parent measuring
    in several fresh processes keeps the runs that finished.
    """
    import json

    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout_s:g} s"
    if done.returncode != 0:
        return False, f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"
    lines = done.stdout.strip().splitlines()
    if not lines:
        return False, f"no output; stderr: {done.stderr.strip().splitlines()[-1:]}"
    try:
        return True, json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        return False, f"last line is not JSON ({exc}): {lines[-1][:200]!r}"


# A cache line bounced between two threads pinned to two CPUs (C11 atomics): the round trip
# shows whether the two CPUs share a cache. Arguments: cpu_a cpu_b rounds; prints nanoseconds.
CORE_LATENCY_SOURCE = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static _Atomic long flag __attribute__((aligned(64)));
static long rounds;
static int cpu_b;
static int pin(int cpu) {
  cpu_set_t set; CPU_ZERO(&set); CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}
static void *echo(void *arg) {
  (void)arg;
  if (pin(cpu_b)) exit(2);
  for (long i = 0; i < 2 * rounds; i++) {
    while (atomic_load_explicit(&flag, memory_order_acquire) != 2 * i + 1) {}
    atomic_store_explicit(&flag, 2 * i + 2, memory_order_release);
  }
  return 0;
}
int main(int argc, char **argv) {
  if (argc != 4) return 1;
  cpu_b = atoi(argv[2]); rounds = atol(argv[3]);
  if (rounds < 1 || pin(atoi(argv[1]))) return 2;
  pthread_t t;
  if (pthread_create(&t, 0, echo, 0)) return 3;
  struct timespec a, b;
  for (long i = 0; i < 2 * rounds; i++) {  /* the first half warms up, the second is timed */
    if (i == rounds) clock_gettime(CLOCK_MONOTONIC, &a);
    atomic_store_explicit(&flag, 2 * i + 1, memory_order_release);
    while (atomic_load_explicit(&flag, memory_order_acquire) != 2 * i + 2) {}
  }
  clock_gettime(CLOCK_MONOTONIC, &b); pthread_join(t, 0);
  printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / rounds);
  return 0;
}
"""

# Round trips on the 2-core benchmark VM fell into two clusters, 70-120 ns and 280-430 ns, the
# hypervisor moving the two vCPUs between them every second or so to minutes.
NEAR_BELOW_NS = 200.0

# The probe's compile and run each get this long: a busy machine can stretch the run (a
# spinning thread may wait for a time slice), but never by a minute.
PROBE_TIMEOUT_S = 60.0


@functools.cache
def _core_latency_binary() -> str | None:
    """The compiled probe, cached in the temp folder under the source's hash; None without Linux
    or a C compiler, or if it does not compile."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not sys.platform.startswith("linux") or compiler is None:
        return None
    digest = hashlib.sha256(CORE_LATENCY_SOURCE.encode()).hexdigest()[:16]
    binary = Path(tempfile.gettempdir()) / f"rmft-core-latency-{digest}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return str(binary)
    with tempfile.TemporaryDirectory(prefix="rmft-core-latency-") as folder:
        source, built = Path(folder) / "core_latency.c", Path(folder) / "core_latency"
        source.write_text(CORE_LATENCY_SOURCE)
        cmd = [compiler, "-O2", "-pthread", str(source), "-o", str(built)]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None
        if done.returncode != 0:
            return None
        # Same filesystem as the cache path is not guaranteed: copy, then rename atomically.
        partial = binary.with_name(f"{binary.name}.{os.getpid()}.partial")
        shutil.copy2(built, partial)
        os.replace(partial, binary)
    return str(binary)


def core_latency_ns(cpus: tuple[int, int] | None = None, rounds: int = 5_000) -> float | None:
    """Round-trip time of one cache line between two CPUs, in nanoseconds, or None.

    Two threads pinned to ``cpus`` (two different CPUs of this process; default: its first
    two) hand an atomic counter back and forth ``rounds`` times untimed (waking the other CPU
    cost milliseconds), then ``rounds`` times timed: a few milliseconds in all at the default.
    CPUs that share a cache hand it over in well under :data:`NEAR_BELOW_NS`; on the 2-core
    benchmark VM the round trip switched between about 80 and 280-430 ns as the hypervisor
    moved the vCPUs, and XLA's two-thread speed switched with it (:func:`placement`). None
    where it cannot be measured: fewer than two CPUs, not Linux, no C compiler, or the probe
    failed or ran past :data:`PROBE_TIMEOUT_S`.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cpus is None:
        if len(allowed) < 2:
            return None
        cpus = (allowed[0], allowed[1])
    if len(cpus) != 2 or cpus[0] == cpus[1] or not set(cpus) <= set(allowed):
        raise ValueError(f"cpus must be two different CPUs among {allowed}, got {cpus}")
    binary = _core_latency_binary()
    if binary is None:
        return None
    cmd = [binary, str(cpus[0]), str(cpus[1]), str(rounds)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    return float(done.stdout.strip())


def placement(before_ns: float | None, after_ns: float | None) -> str:
    """``near`` or ``far`` when the core-latency probes on both sides of a timing agree
    (round trip below or above :data:`NEAR_BELOW_NS`), ``mixed`` when the placement changed
    in between, ``unknown`` when either probe could not run."""
    if before_ns is None or after_ns is None:
        return "unknown"
    near = (before_ns < NEAR_BELOW_NS, after_ns < NEAR_BELOW_NS)
    if near == (True, True):
        return "near"
    return "far" if near == (False, False) else "mixed"


def probed(call: Callable[[], object]) -> tuple[object, dict]:
    """``call()`` between two core-latency probes: its result, and ``core_before_ns``,
    ``core_after_ns`` and their :func:`placement`."""
    before = core_latency_ns()
    result = call()
    after = core_latency_ns()
    return result, {
        "core_before_ns": before,
        "core_after_ns": after,
        "placement": placement(before, after),
    }


def probed_rounds(
    calls: dict[str, Callable[[], object]], seconds: float, block: int, settle_s: float = 0.0
) -> list:
    """Rounds of ``block`` calls of each of ``calls`` (:func:`time_interleaved`, order reversed
    every other round, settling for ``settle_s`` before each block) until ``seconds`` have
    passed, each between two core-latency probes: per round ``before_ns``, ``after_ns``, their
    :func:`placement` and ``ms`` (name to the median time in milliseconds). Every call runs
    once untimed (and settles) first."""
    rounds = []
    time_interleaved(calls, 1, warmup=1, block=block, settle_s=settle_s)  # untimed: all warm
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        order = {n: calls[n] for n in (list(calls) if len(rounds) % 2 == 0 else list(calls)[::-1])}
        t, where = probed(
            lambda o=order: time_interleaved(o, 1, warmup=0, block=block, settle_s=settle_s)
        )
        rounds.append(
            {
                "before_ns": where["core_before_ns"],
                "after_ns": where["core_after_ns"],
                "placement": where["placement"],
                "ms": {n: 1e3 * v["median_s"] for n, v in t.items()},
            }
        )
    return rounds


def pin_toggling(
    calls: dict, pinned: set[str], managed: set[str] | None = None
) -> tuple[dict, Callable[[], None]]:
    """``calls`` with every JAX call (``managed``, default the names starting ``jax``) wrapped
    to run with XLA's worker threads pinned one per CPU (names in ``pinned``,
    :func:`rmft_theory.runtime.pin_xla_threads`) or left to the OS (the other managed names);
    the other calls (PyTorch's) leave the placement as it is. The switch happens in the first
    call after the other kind ran (with ``block > 1``, the untimed settling call of
    :func:`time_interleaved`). Returns the calls and a function that restores the threads'
    affinities."""
    state: dict = {"previous": None}

    def restore():
        if state["previous"] is not None:
            restore_affinities(state["previous"])
            state["previous"] = None

    def wrap(call, want):
        def run():
            if want and state["previous"] is None:
                state["previous"] = pin_xla_threads()
            elif not want:
                restore()
            return call()

        return run

    if managed is None:
        managed = {n for n in calls if n.startswith("jax")}
    wrapped = {n: wrap(c, n in pinned) if n in managed else c for n, c in calls.items()}
    return wrapped, restore


def cost_flops(compiled) -> float:
    """XLA's FLOP count of a compiled computation (``cost_analysis``), 0 if unavailable."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # older jax returns one dict per computation
        cost = cost[0] if cost else {}
    return float(cost.get("flops", 0.0)) if cost else 0.0


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul throughput of the default device, GFLOP/s (2n³ flops per product)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    t = time_jax(lambda x, y: x @ y, a, b, repeats=repeats)["median_s"]
    return 2 * n**3 / t / 1e9


def copy_bandwidth_gbs(n_floats: int = 64 * 2**20, repeats: int = 5) -> float:
    """Measured device memory bandwidth, GB/s, from ``y = x + 1`` (one read and one write)."""
    x = jnp.zeros((n_floats,), jnp.float32)
    t = time_jax(lambda v: v + 1.0, x, repeats=repeats)["median_s"]
    return 2 * 4 * n_floats / t / 1e9


def numpy_matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul throughput of NumPy's BLAS, GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    t = time_host(np.matmul, a, b, repeats=repeats)["median_s"]
    return 2 * n**3 / t / 1e9


def numpy_copy_bandwidth_gbs(n_floats: int = 64 * 2**20, repeats: int = 5) -> float:
    """Measured memory bandwidth of ``np.copyto`` (one read and one write), GB/s."""
    src = np.ones((n_floats,), np.float32)
    dst = np.empty_like(src)
    t = time_host(np.copyto, dst, src, repeats=repeats)["median_s"]
    return 2 * 4 * n_floats / t / 1e9


def machine_floors(quick: bool = False, repeats: int = 5) -> dict:
    """The compute and bandwidth ceilings of this machine, measured now.

    fp32 matmul peak from a large JAX (XLA) and NumPy (BLAS) product, and copy bandwidth from
    an XLA elementwise ``x + 1`` and ``np.copyto`` (an XLA elementwise loop may run on one
    thread on CPU). Each ceiling is the better of the two; ``*_source`` says which.
    """
    n = 1024 if quick else 2048
    n_floats = (16 if quick else 64) * 2**20
    matmul = {
        "jax": matmul_peak_gflops(n, repeats),
        "numpy": numpy_matmul_peak_gflops(n, repeats),
    }
    copy = {
        "jax": copy_bandwidth_gbs(n_floats, repeats),
        "numpy": numpy_copy_bandwidth_gbs(n_floats, repeats),
    }
    best_matmul = max(matmul, key=matmul.get)
    best_copy = max(copy, key=copy.get)
    return {
        "matmul_n": n,
        "copy_floats": n_floats,
        "matmul_gflops": matmul,
        "copy_gbs": copy,
        "peak_gflops": matmul[best_matmul],
        "peak_source": best_matmul,
        "bandwidth_gbs": copy[best_copy],
        "bandwidth_source": best_copy,
    }


def floors_markdown(floors: dict) -> str:
    """One line naming the measured ceilings and where each came from."""
    m, c = floors["matmul_gflops"], floors["copy_gbs"]
    return (
        f"Ceilings measured in this run: fp32 matmul peak {floors['peak_gflops']:.0f} GFLOP/s "
        f"({floors['peak_source']}; JAX {m['jax']:.0f}, NumPy {m['numpy']:.0f}, "
        f"{floors['matmul_n']}² product); copy bandwidth {floors['bandwidth_gbs']:.1f} GB/s "
        f"({floors['bandwidth_source']}; XLA x+1 {c['jax']:.1f}, np.copyto {c['numpy']:.1f})."
    )


def load_average() -> float | None:
    """The 1-minute load average (other processes share the cores), if the OS reports it."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def import_torch(threads: int | None = None):
    """PyTorch, or None with a message on stderr when it is not installed (optional extra)."""
    # Idle OpenMP workers sleep instead of spinning, so that PyTorch timed back to back with
    # JAX does not take the cores from the next JAX call (only effective before the import).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: skipping the PyTorch references", file=sys.stderr)
        return None
    if threads is not None:
        torch.set_num_threads(threads)
    return torch


def roofline_fraction(
    flops: float, bytes_moved: float, seconds: float, peak_gflops: float, bandwidth_gbs: float
) -> float:
    """Achieved fraction of the roofline: ``time_floor / time``, where the floor is
    ``max(flops / peak, bytes / bandwidth)``."""
    floor = max(flops / (peak_gflops * 1e9), bytes_moved / (bandwidth_gbs * 1e9))
    return floor / seconds


def machine_info() -> dict:
    """CPU model, core count and the JAX environment, for the results header."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), **environment_info()}


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``rows`` restricted to ``columns`` (floats to 3 significant digits)."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def results_dir(quick: bool, folder: Path | None = None) -> Path:
    """Where benchmark tables go: ``benchmarks/results`` (the committed, full-size ones), or
    ``benchmarks/results/quick`` for ``--quick`` runs, which never overwrite them."""
    results = Path(folder or benchmarks_dir()) / "results"
    return results / "quick" if quick else results


def write_results(name: str, payload: dict, markdown: str, folder: Path | None = None) -> Path:
    """Atomically write ``<name>.json`` and ``<name>.md`` to ``folder`` (default
    :func:`results_dir` of the payload's ``quick``); return the JSON."""
    from rmft_theory.io import atomic_path

    folder = Path(folder or results_dir(bool(payload.get("quick"))))
    path = folder / f"{name}.json"
    save_json(path, {"machine": machine_info(), **payload})
    with atomic_path(folder / f"{name}.md") as tmp:
        tmp.write_text(markdown + "\n")
    return path


def trajectory_steps_per_s(n_traj: int, horizon: int, seconds: float) -> float:
    """Throughput in trajectory-steps per second."""
    return n_traj * horizon / seconds


__all__ = [
    "blocking",
    "compile_jax",
    "copy_bandwidth_gbs",
    "cost_flops",
    "floors_markdown",
    "import_torch",
    "load_average",
    "machine_floors",
    "machine_info",
    "markdown_table",
    "matmul_peak_gflops",
    "numpy_copy_bandwidth_gbs",
    "numpy_matmul_peak_gflops",
    "roofline_fraction",
    "run_child",
    "time_host",
    "time_interleaved",
    "time_jax",
    "trajectory_steps_per_s",
    "write_results",
]


def benchmarks_dir() -> Path:
    """``<checkout>/benchmarks``."""
    from rmft_theory.reproduce import repo_root

    return repo_root() / "benchmarks"


def discover_benchmarks(folder: Path | None = None) -> dict[str, Path]:
    """Map ``NAME`` to ``benchmarks/bench_NAME.py``."""
    folder = Path(folder or benchmarks_dir())
    if not folder.is_dir():
        raise ValueError(f"benchmarks folder {folder} does not exist")
    return {p.stem.removeprefix("bench_"): p for p in sorted(folder.glob("bench_*.py"))}


def run_benchmarks(names: list[str] | None, quick: bool, folder: Path | None = None) -> dict:
    """Run each benchmark script in its own process (clean timings); return exit codes."""
    found = discover_benchmarks(folder)
    chosen = names or list(found)
    unknown = [n for n in chosen if n not in found]
    if unknown:
        raise ValueError(f"--only must name benchmarks among {sorted(found)}, got {unknown}")
    codes = {}
    for name in chosen:
        print(f"== bench {name}{' (quick)' if quick else ''}", file=sys.stderr, flush=True)
        cmd = [sys.executable, str(found[name]), *(["--quick"] if quick else [])]
        codes[name] = subprocess.run(cmd, check=False).returncode
    return codes


def assemble_results(
    folder: Path | None = None, out: Path | None = None, quick: bool = False
) -> Path:
    """Write ``benchmarks/RESULTS.md``: the machine, then every ``results/<name>.md``; with
    ``quick``, ``results/quick/RESULTS.md`` from ``results/quick/<name>.md``."""
    import datetime
    import json

    from rmft_theory.io import atomic_path

    folder = Path(folder or benchmarks_dir())
    results = results_dir(quick, folder)
    out = Path(out or (results / "RESULTS.md" if quick else folder / "RESULTS.md"))
    parts = ["# Benchmark results", ""]
    info = machine_info()
    parts += [
        f"Machine: {info['cpu']}, {info['cores']} cores; JAX {info['versions'].get('jax')} "
        f"on {info['backend']} ({', '.join(info['devices'])}).",
        f"Assembled {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC at git "
        f"{info['git_revision']} by `rmft bench`; each section names the revision its benchmark "
        "ran at. Each table comes from one run of its benchmark and its ratios are "
        "measured within that run: in one process, except where a table says it repeats the "
        "measurement in fresh processes (the rollout headline's spread, sharding, xla_options).",
        "",
    ]
    for md in sorted(p for p in results.glob("*.md") if p != out):
        meta = results / f"{md.stem}.json"
        notes = []
        if meta.exists():
            payload = json.loads(meta.read_text())
            revision = payload.get("machine", {}).get("git_revision")
            notes += [f"git {revision}"] if revision else []
            notes += ["quick mode"] if payload.get("quick") else []
        when = f" ({', '.join(notes)})" if notes else ""
        parts += [f"## {md.stem}{when}", "", md.read_text().strip(), ""]
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(parts) + "\n")
    return out
