"""Rollout throughput on JAX's default backend as M and T grow, and its task-chunk size.

The filter rollout of the single-layer LSA drawing its own rewards (the rollout of
``bench_rollout``'s grid: :func:`bench_rollout.jax_rollout`) at L = 64, d = 8, with
per-trajectory and per-step noise, from the headline size M = 64, T = 200 up to M = 4096 tasks
(262 144 trajectories) and T = 2000. Each size is compiled ahead of time (compile time
reported apart) and timed as the median of repeated calls. Run it on the machine in question:
on CPU it shows where the library's CPU chunk (:data:`rmft_theory.rollout.CHUNK_ELEMENTS`)
stops growing throughput; on a GPU, what the accelerator chunk
(:data:`rmft_theory.rollout.ACCELERATOR_CHUNK_ELEMENTS`) buys, and ``--chunk-elements N``
reruns the same sizes with chunks of about N floats on any backend, to compare.

Writes ``benchmarks/results/device_scaling.{json,md}``::

    .venv/bin/python benchmarks/bench_device_scaling.py            # the sizes above
    .venv/bin/python benchmarks/bench_device_scaling.py --quick    # M ≤ 256, T ≤ 500
    python benchmarks/bench_device_scaling.py --chunk-elements 2097152   # CPU-sized chunks
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

from rmft_theory import rollout as rollout_module
from rmft_theory.benchmarking import (
    blocking,
    compile_jax,
    load_average,
    markdown_table,
    time_interleaved,
    trajectory_steps_per_s,
    write_results,
)
from rmft_theory.runtime import compiler_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rollout import jax_rollout, setup

NOISES = ("per-trajectory", "per-step")
L, D = 64, 8
SIZES = ((64, 200), (1024, 200), (4096, 200), (64, 2000), (1024, 2000))  # (M, T)
QUICK_SIZES = ((16, 100), (64, 100), (256, 100), (64, 500))


def measure(noise: str, M: int, T: int, repeats: int) -> dict:
    """Compile and time the rollout of one size; a row of the results table."""
    env, params = setup(M, T, D)
    key = jax.random.key(0)
    options = compiler_options(noise)  # the library's, as make_rollout and run_filter use
    run = jax_rollout(env, M, L, noise)
    fn, compile_s = compile_jax(run, params, key, compiler_options=options)
    t = time_interleaved({"rollout": blocking(fn, params, key)}, repeats)["rollout"]
    return {
        "noise": noise,
        "M": M,
        "L": L,
        "T": T,
        "d": D,
        "trajectories": M * L,
        "chunk_tasks": rollout_module.task_chunk_size(
            M, rollout_module.task_elements(rollout_module.Exploration(noise), L, T, D)
        ),
        "compile_s": compile_s,
        "time_ms": 1e3 * t["median_s"],
        "steps_per_s": trajectory_steps_per_s(M * L, T, t["median_s"]),
        "runs_s": t["runs_s"],
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--chunk-elements",
        type=int,
        default=None,
        help="floats per chunk of tasks on every backend (default: the library's)",
    )
    args = p.parse_args(argv)
    if args.chunk_elements is not None:
        if args.chunk_elements < 1:
            p.error(f"--chunk-elements must be >= 1, got {args.chunk_elements}")
        rollout_module.CHUNK_ELEMENTS = args.chunk_elements
        rollout_module.ACCELERATOR_CHUNK_ELEMENTS = args.chunk_elements
    chunk = rollout_module.chunk_elements()
    load_before = load_average()
    rows = [
        measure(noise, M, T, args.repeats)
        for noise in NOISES
        for M, T in (QUICK_SIZES if args.quick else SIZES)
    ]
    backend = jax.default_backend()
    header = (
        f"Filter rollout drawing its own rewards (L = {L}, d = {D}) on `{backend}` "
        f"({', '.join(str(d) for d in jax.devices())}), tasks in chunks of about {chunk} floats "
        f"(`rollout.chunk_elements()`{', set by --chunk-elements' if args.chunk_elements else ''}"
        f"; `chunk_tasks`: tasks per chunk); median of {args.repeats} calls, compile time apart."
    )
    cols = "noise M L T d trajectories chunk_tasks time_ms steps_per_s compile_s".split()
    markdown = "\n\n".join([header, markdown_table(rows, cols)])
    payload = {
        "benchmark": "device_scaling",
        "quick": args.quick,
        "backend": backend,
        "chunk_elements": chunk,
        "chunk_elements_overridden": args.chunk_elements is not None,
        "rows": rows,
        "load_average_1min": [load_before, load_average()],
    }
    write_results("device_scaling", payload, markdown)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
