"""A process-wide XLA CPU option the library leaves off, measured: small-while-loop hoisting.

XLA:CPU runs a while loop (every ``lax.scan``, and JAX's threefry hash, which is a 5-step loop
on CPU) as a sequence of thunks per iteration, each with its own dispatch. With the backend
option ``xla_cpu_small_while_loop_byte_threshold=N`` (default 1024 bytes), a loop whose
buffers total fewer than N bytes and whose body holds no library (YNNPACK) fusion is compiled
into one function instead: no per-iteration dispatch, but also no splitting of the body's work
over threads. The option reaches XLA only through ``XLA_FLAGS`` before JAX starts (per
executable ``compiler_options`` refuse it), so it is all or nothing for a process
(:data:`HOIST`, :func:`rmft_theory.runtime.xla_flags_with`).

Each option runs in ``--processes`` fresh child processes, the options alternating. A child
spends half of ``--seconds`` on ``bench_rollout``'s placement study (the rewards-given
headline, M = L = 64, T = 200, d = 8, per-trajectory noise, against PyTorch, where it is
installed: JAX by default, without YNNPACK and pinned), the other half on :data:`WORKLOADS`
in rounds (:func:`rmft_theory.benchmarking.probed_rounds`); every round lies between two
core-latency probes and counts for its placement (the 2-core benchmark VM's two-thread speed
moves with it; see ``bench_rollout.given_spread``). It also counts the loops compiled as one
function in the headline's executable (``hoisted_loops``), to show that the option took
effect. Workloads:

* ``given``, ``given_pinned``: the rewards-given headline, with XLA's threads left to the OS
  and pinned one per CPU;
* ``own_per_trajectory``, ``own_per_step``: the same rollout drawing its own rewards, with each
  noise (bound by random numbers);
* ``thompson``: batched Beta-Bernoulli Thompson sampling on drawn reward tables
  (``bench_bandits``, 256 runs, T = 1000).

Reports per workload and placement the median time with each option and their ratio; per
option and placement the placement study's times and ratios to PyTorch; and the largest
difference between the processes' headline regrets (the same maths, compiled differently).
Writes ``benchmarks/results/xla_options.{json,md}``::

    .venv/bin/python benchmarks/bench_xla_options.py            # 3 processes per option, 40 s
    .venv/bin/python benchmarks/bench_xla_options.py --quick    # 1 process per option, 5 s
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_bandits import make_jax_runner
from bench_rollout import (
    HEADLINE,
    bench_placement,
    given_run,
    jax_rollout,
    placement_summary,
    setup,
)

from rmft_theory.baselines import bandits as bb
from rmft_theory.benchmarking import (
    blocking,
    compile_jax,
    import_torch,
    load_average,
    markdown_table,
    pin_toggling,
    probed_rounds,
    run_child,
    write_results,
)
from rmft_theory.runtime import xla_flags_with

#: The option measured: hoist every loop without a library fusion (1 GB: no size limit here).
HOIST = {"xla_cpu_small_while_loop_byte_threshold": "1000000000"}
OPTIONS = {"default": {}, "hoisted": HOIST}
WORKLOADS = ("given", "given_pinned", "own_per_trajectory", "own_per_step", "thompson")
PLACEMENTS = ("near", "far", "mixed", "unknown")


class Workloads(NamedTuple):
    """What :func:`workload_calls` builds."""

    calls: dict  # name in WORKLOADS -> zero-argument timed call
    regret: np.ndarray  # the headline's (M, L) regret, to compare the options' results
    hoisted_loops: int  # loops of the headline's executable XLA compiled as one function
    unpin: Callable[[], None]  # restores XLA's threads after ``given_pinned``


def workload_calls(quick: bool) -> Workloads:
    """The calls of :data:`WORKLOADS`; every one but ``given_pinned`` runs with XLA's threads
    left to the OS (:func:`rmft_theory.benchmarking.pin_toggling`)."""
    run, args = given_run(HEADLINE)
    given, _ = compile_jax(run, *args)
    hoisted_loops = given.as_text().count("xla_cpu_small_call")
    calls = {"given": blocking(given, *args), "given_pinned": blocking(given, *args)}
    regret = np.asarray(calls["given"]())
    M, L, T, d = HEADLINE
    env, params = setup(M, T, d)
    key = jax.random.key(1)
    for noise in ("per-trajectory", "per-step"):
        fn, _ = compile_jax(jax_rollout(env, M, L, noise), params, key)
        calls[f"own_{noise.replace('-', '_')}"] = blocking(fn, params, key)
    runs, horizon = (64, 200) if quick else (256, 1000)
    tables = jax.random.bernoulli(jax.random.key(2), 0.6, (runs, horizon, 3)).astype(jnp.float32)
    means = jnp.asarray([0.5, 0.6, 0.7], jnp.float32)
    keys = jax.random.split(jax.random.key(3), runs)
    runner = make_jax_runner(bb.thompson_bernoulli(), horizon, sample=False)
    fn, _ = compile_jax(runner, keys, means, tables)
    calls["thompson"] = blocking(fn, keys, means, tables)
    calls, unpin = pin_toggling(calls, {"given_pinned"}, set(calls))
    return Workloads(calls, regret, hoisted_loops, unpin)


def child(seconds: float, quick: bool, block: int) -> dict:
    """One process's measurement under the ``XLA_FLAGS`` it was started with: the
    rewards-given headline against PyTorch (``bench_rollout.bench_placement``, where PyTorch
    is installed) for half of ``seconds``, then :data:`WORKLOADS` for the other half."""
    torch = import_torch()
    study = bench_placement(HEADLINE, torch, seconds / 2) if torch is not None else None
    calls, regret, hoisted_loops, unpin = workload_calls(quick)
    try:
        rounds = probed_rounds(calls, seconds / 2, block)
    finally:
        unpin()
    return {
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "hoisted_loops": hoisted_loops,
        "regret": regret.tolist(),
        "rounds": rounds,
        "placement_rounds": study["rounds"] if isinstance(study, dict) else [],
    }


def in_fresh_processes(processes: int, seconds: float, quick: bool, block: int) -> dict:
    """:func:`child` under each of :data:`OPTIONS`, ``processes`` times, alternating the
    order: per option, the list of results (or ``"failed: ..."`` strings)."""
    runs: dict[str, list] = {name: [] for name in OPTIONS}
    for i in range(processes):
        for name in list(OPTIONS) if i % 2 == 0 else list(OPTIONS)[::-1]:
            env = {**os.environ, "XLA_FLAGS": xla_flags_with(OPTIONS[name])}
            cmd = [sys.executable, __file__, "--child", "--seconds", str(seconds)]
            cmd += ["--block", str(block)] + (["--quick"] if quick else [])
            ok, out = run_child(cmd, env=env)
            runs[name].append(out if ok and isinstance(out, dict) else f"failed: {out}")
    return runs


def summarize(runs: dict) -> list[dict]:
    """Per workload and placement: rounds and median time under each option (over all its
    processes' rounds in that placement), and ``speedup``: default's median over hoisted's."""
    rows = []
    for workload in WORKLOADS:
        for where in PLACEMENTS:
            row: dict = {"workload": workload, "placement": where}
            for name in OPTIONS:
                times = [
                    r["ms"][workload]
                    for run in runs[name]
                    if isinstance(run, dict)
                    for r in run["rounds"]
                    if r["placement"] == where and workload in r["ms"]
                ]
                row[f"{name}_rounds"] = len(times)
                if times:
                    row[f"{name}_ms"] = float(np.median(times))
            if all(row[f"{name}_rounds"] for name in OPTIONS):
                row["speedup"] = row["default_ms"] / row["hoisted_ms"]
                rows.append(row)
    return rows


def placement_studies(runs: dict) -> list[dict]:
    """Per option and placement, ``bench_rollout.placement_summary`` of the placement-study
    rounds of all that option's processes ([] without PyTorch)."""
    rows = []
    for name in OPTIONS:
        pooled = [r for run in runs[name] if isinstance(run, dict) for r in run["placement_rounds"]]
        if not pooled:
            continue
        names = list(pooled[0]["ms"])
        jax_names = [n for n in names if n.startswith("jax")]
        torch_names = [n for n in names if n.startswith("torch")]
        for summary in placement_summary(pooled, jax_names, torch_names).values():
            rows.append({"option": name, **summary})
    return rows


def regret_difference(runs: dict) -> float | None:
    """The largest |difference| between any two processes' headline regrets (None: < 2 ran)."""
    regrets = [np.asarray(r["regret"]) for rs in runs.values() for r in rs if isinstance(r, dict)]
    if len(regrets) < 2:
        return None
    return float(max(np.abs(r - regrets[0]).max() for r in regrets[1:]))


def without_regrets(runs: dict) -> dict:
    """``runs`` without the processes' (M, L) regrets (compared, not stored)."""
    return {
        name: [
            {k: v for k, v in run.items() if k != "regret"} if isinstance(run, dict) else run
            for run in rs
        ]
        for name, rs in runs.items()
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one process per option, 5 s each")
    p.add_argument("--processes", type=int, default=None, help="per option (default 3)")
    p.add_argument("--seconds", type=float, default=None, help="of rounds per process")
    p.add_argument("--block", type=int, default=5, help="calls per workload per round")
    p.add_argument("--child", action="store_true", help="measure once and print JSON")
    args = p.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (5.0 if args.quick else 40.0)
    if seconds <= 0 or args.block < 1:
        raise ValueError(f"seconds and block must be positive, got {seconds} and {args.block}")
    if args.child:
        out = child(seconds, args.quick, args.block)
        print(json.dumps(out))
        return out
    processes = (1 if args.quick else 3) if args.processes is None else args.processes
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    load_before = load_average()
    runs = in_fresh_processes(processes, seconds, args.quick, args.block)
    rows = summarize(runs)
    studies = placement_studies(runs)
    hoisted = {
        name: [r["hoisted_loops"] for r in rs if isinstance(r, dict)] for name, rs in runs.items()
    }
    payload = {
        "benchmark": "xla_options",
        "quick": args.quick,
        "options": OPTIONS,
        "case": dict(zip("MLTd", HEADLINE)),
        "hoisted_loops": hoisted,
        "max_regret_difference": regret_difference(runs),
        "rows": rows,
        "placement_study": studies,
        "processes": without_regrets(runs),
        "load_average_1min": {"before": load_before, "after": load_average()},
    }
    study_cols = ["option", "placement", "rounds"] + [
        k
        for k in (studies[0] if studies else {})
        if (k.endswith("_ms") and not k.startswith("torch@")) or k.startswith("vs_torch")
    ]
    cols = ["workload", "placement", "default_rounds", "hoisted_rounds", "default_ms"]
    cols += ["hoisted_ms", "speedup"]
    md = "\n".join(
        [
            f"XLA's small-while-loop hoisting (`xla_backend_extra_options="
            f"xla_cpu_small_while_loop_byte_threshold={HOIST['xla_cpu_small_while_loop_byte_threshold']}`"
            f", process-wide) against the default: {processes} fresh process(es) per option, "
            f"{seconds:g} s of rounds each, {args.block} calls per workload per round; medians "
            f"over the rounds in each placement; speedup = default / hoisted.",
            "",
            markdown_table(rows, cols),
            "",
            "The rewards-given headline against PyTorch under each option (the placement study "
            "of `bench_rollout`, pooled over each option's processes; `vs_torch*`: the median "
            "over rounds of the best PyTorch variant's time over JAX's):",
            "",
            markdown_table(studies, study_cols) if studies else "PyTorch is not installed.",
            "",
            f"Loops compiled as one function in the headline's executable, per process: "
            f"{hoisted}. Largest difference between the processes' headline regrets: "
            f"{payload['max_regret_difference']}.",
        ]
    )
    write_results("xla_options", payload, md)
    print(md)
    return payload


if __name__ == "__main__":
    main()
