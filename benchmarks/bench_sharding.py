"""Rollouts, fine-tuning and a filter iteration on 1 device against N devices (jax.sharding).

The host CPU is split into ``--devices`` XLA devices (``--xla_force_host_platform_device_count``,
set below before JAX starts; default: the number of cores). Each workload runs three ways in
one process, timed back to back (median of interleaved repeats, compile time apart):

* ``single``: plain ``jax.jit`` on the default device (XLA may still use several threads);
* ``mesh1``: the sharded code on a one-device mesh (the overhead of the sharded form);
* ``meshN``: the sharded code on all N devices, tasks split over the ``"tasks"`` axis.

Each is given its inputs where its executable takes them
(:func:`rmft_theory.sharding.placed_for`), placed once before timing, as a run keeps its state on
the mesh between iterations. ``meshN_from_device0`` times the N-device executable on inputs left
on device 0, so every call first moves them to the mesh (the protocol before f6d953e; at M = 64
the rollout then took 0.79 against 0.57 ms in the run at d129253).

Workloads: the filter rollout of the single-layer LSA (:func:`rmft_theory.sharding.
sharded_rollout_scores`, rewards given) with per-trajectory and per-step noise, the filter's
fine-tuning (:func:`rmft_theory.sharding.sharded_finetune`) and one whole filter iteration
(``make_iteration(..., mesh=...)``). Each sharded result is checked against the single-device
one. The whole measurement runs in ``--processes`` fresh processes (default 5) and the table
gives medians over them (:func:`in_fresh_processes`). Writes
``benchmarks/results/sharding.{json,md}``::

    .venv/bin/python benchmarks/bench_sharding.py            # 2 devices on a 2-core machine
    .venv/bin/python benchmarks/bench_sharding.py --quick    # one process, fewer workloads
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

#: A 2-device median speed-up counts as "faster" from here on; below it is parity.
FASTER = 1.05


def _force_devices(argv) -> int:
    """Set the host device count before JAX is imported; returns it."""
    n = os.cpu_count() or 2
    args = list(sys.argv[1:] if argv is None else argv)
    if "--devices" in args:
        n = int(args[args.index("--devices") + 1])
    flag = f"--xla_force_host_platform_device_count={n}"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
    return n


if __name__ == "__main__":
    _force_devices(None)

import argparse  # noqa: E402  (JAX must start after XLA_FLAGS is set)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from rmft_theory.benchmarking import (  # noqa: E402
    blocking,
    compile_jax,
    load_average,
    markdown_table,
    pin_toggling,
    probed,
    run_child,
    time_interleaved,
    write_results,
)
from rmft_theory.envs import GaussianFOL  # noqa: E402
from rmft_theory.keys import Seeds  # noqa: E402
from rmft_theory.models import lsa_apply, make_model  # noqa: E402
from rmft_theory.rmft import (  # noqa: E402
    FilterConfig,
    KeptSet,
    finetune,
    heldout_rewards,
    init_state,
    make_iteration,
)
from rmft_theory.rollout import Exploration, rollout_scores  # noqa: E402
from rmft_theory.runtime import compiler_options  # noqa: E402
from rmft_theory.sharding import (  # noqa: E402
    make_mesh,
    placed_for,
    sharded_finetune,
    sharded_rollout_scores,
)


def lsa_params(T: int, d: int):
    return make_model("lsa", d).init(jax.random.key(0), jnp.zeros((T, d)))["params"]


def rollout_calls(M, L, T, d, noise, meshes):
    params = lsa_params(T, d)
    rewards = jax.random.normal(jax.random.key(1), (M, T, d))
    key = jax.random.key(2)
    e = Exploration(noise, 1.0)
    fns = {"single": lambda p, r, k: rollout_scores(lsa_apply, p, r, k, e, L).regret}
    for name, mesh in meshes.items():
        fns[name] = lambda p, r, k, mesh=mesh: (
            sharded_rollout_scores(lsa_apply, p, r, k, e, L, mesh).regret
        )
    return fns, (params, rewards, key), M * L * T


def finetune_calls(C, T, d, steps, meshes):
    params = lsa_params(T, d)
    rewards = jax.random.normal(jax.random.key(1), (C, T, d))
    kept = KeptSet(rewards, 0.1 * rewards, jnp.full((C,), 1.0 / C))
    config = FilterConfig(finetune_steps=steps)
    fns = {"single": lambda p, k: finetune(lsa_apply, p, k, config)[0]}
    for name, mesh in meshes.items():
        fns[name] = lambda p, k, mesh=mesh: sharded_finetune(lsa_apply, p, k, config, mesh)[0]
    return fns, (params, kept), C * T * steps


def iteration_calls(M, L, T, d, steps, meshes):
    env = GaussianFOL(d=d, horizon=T)
    config = FilterConfig(
        tasks=M, rollouts=L, keep=1, noise_scale=3.0, finetune_steps=steps, heldout_tasks=256
    )
    state = init_state(lsa_params(T, d), env, config, Seeds.from_seed(0))
    heldout = heldout_rewards(env, config.heldout_tasks, jax.random.key(4))
    fns = {"single": make_iteration(lsa_apply, env, config)}
    for name, mesh in meshes.items():
        fns[name] = make_iteration(lsa_apply, env, config, mesh=mesh)

    def params_of(out):
        return out[0].params

    return fns, (state, heldout), M * L * T, params_of


def bench(label, fns, args, work, repeats, pick=lambda out: out, options=None) -> dict:
    """Time each of ``fns`` on ``args`` placed as its executable takes them
    (:func:`rmft_theory.sharding.placed_for`), and the N-device one also on ``args`` left on
    device 0 (moved to the mesh inside every call: ``meshN_from_device0``), in interleaved
    rounds."""
    compiled, compile_s, outs, placed = {}, {}, {}, {}
    for name, fn in fns.items():
        compiled[name], compile_s[name] = compile_jax(fn, *args, compiler_options=options)
        placed[name] = placed_for(compiled[name], args)
        outs[name] = pick(compiled[name](*placed[name]))
    ref = jax.tree.leaves(outs["single"])
    diffs = {}
    for name in fns:
        leaves = jax.tree.leaves(outs[name])
        diffs[name] = max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / (1e-12 + np.max(np.abs(b))))
            for a, b in zip(leaves, ref)
        )
    n_name = next(n for n in fns if n not in ("single", "mesh1"))
    calls = {n: blocking(c, *placed[n]) for n, c in compiled.items()}
    calls.update({f"{n}_pinned": calls[n] for n in ("single", n_name)})
    calls[f"{n_name}_from_device0"] = blocking(compiled[n_name], *args)
    calls, unpin = pin_toggling(calls, {n for n in calls if n.endswith("_pinned")}, set(calls))
    try:
        times, probes = probed(lambda: time_interleaved(calls, max(2, repeats // 3), block=3))
    finally:
        unpin()
    row = {"workload": label, "work_units": work, **probes}
    for name in calls:
        row[f"{name}_ms"] = 1e3 * times[name]["median_s"]
        row[f"{name}_cores"] = times[name]["cores"]
    for name in fns:
        row[f"{name}_compile_s"] = compile_s[name]
        row[f"{name}_max_rel_diff"] = diffs[name]
    row["speedup_vs_single"] = times["single"]["median_s"] / times[n_name]["median_s"]
    row["speedup_vs_mesh1"] = times["mesh1"]["median_s"] / times[n_name]["median_s"]
    row["speedup_pinned"] = (
        times["single_pinned"]["median_s"] / times[f"{n_name}_pinned"]["median_s"]
    )
    row["speedup_from_device0"] = (
        times["single"]["median_s"] / times[f"{n_name}_from_device0"]["median_s"]
    )
    row["runs_s"] = {n: t["runs_s"] for n, t in times.items()}
    print(f"{label}: {row['speedup_vs_single']:.2f}x", file=sys.stderr)
    return row


def measure(quick: bool, repeats: int) -> list[dict]:
    """Every workload of this benchmark in this process (one row each, see :func:`bench`)."""
    n = len(jax.devices())
    meshes = {"mesh1": make_mesh((1,)), f"mesh{n}": make_mesh((n,))}
    rows = []
    rollout_cases = [(64, 64, 200, 8)] if quick else [(64, 64, 200, 8), (256, 64, 200, 8)]
    for M, L, T, d in rollout_cases:
        for noise in ("per-trajectory", "per-step"):
            fns, a, work = rollout_calls(M, L, T, d, noise, meshes)
            label = f"rollout {noise} M={M} L={L} T={T} d={d}"
            rows.append(bench(label, fns, a, work, repeats, options=compiler_options(noise)))
    fns, a, work = finetune_calls(256, 100, 5, 20, meshes)
    rows.append(bench("finetune C=256 T=100 d=5, 20 Adam steps", fns, a, work, repeats))
    if not quick:
        fns, a, work, pick = iteration_calls(256, 64, 100, 5, 100, meshes)
        rows.append(
            bench("filter iteration M=256 L=64 T=100 d=5, 100 steps", fns, a, work, repeats, pick)
        )
    return rows


def in_fresh_processes(processes: int, devices: int, quick: bool, repeats: int) -> list:
    """:func:`measure` in ``processes`` fresh processes, one after another: a list of row lists
    (or of ``"failed: ..."`` strings). On the 2-core benchmark VM one process's speed is one
    draw of a bimodal distribution (see ``bench_rollout.given_spread``), and the speed-up of
    2 devices flips with it, so the verdict rests on the median over processes."""
    runs = []
    for _ in range(processes):
        cmd = [sys.executable, __file__, "--child", "--devices", str(devices)]
        cmd += ["--repeats", str(repeats)] + (["--quick"] if quick else [])
        ok, out = run_child(cmd)
        runs.append(out if ok and isinstance(out, list) else f"failed: {out}")
    return runs


def summarize(runs: list, n: int) -> list[dict]:
    """Per workload over the processes of :func:`in_fresh_processes`: median times, cores and
    speed-ups, the ranges of the times and the speed-up, in how many processes N devices were
    faster than one, and the largest difference of a sharded result from the single-device
    one."""
    done = [r for r in runs if isinstance(r, list)]
    out = []
    for label in [row["workload"] for row in done[0]] if done else []:
        rows = [row for run in done for row in run if row["workload"] == label]
        speedups = [r["speedup_vs_single"] for r in rows]
        summary = {"workload": label, "processes": len(rows)}
        for key in (
            "single_ms",
            "mesh1_ms",
            f"mesh{n}_ms",
            "speedup_vs_single",
            "speedup_vs_mesh1",
            "single_cores",
            f"mesh{n}_cores",
            "single_pinned_ms",
            f"mesh{n}_pinned_ms",
            "speedup_pinned",
            f"mesh{n}_from_device0_ms",
            "speedup_from_device0",
        ):
            if all(key in r for r in rows):
                summary[key] = float(np.median([r[key] for r in rows]))
        for key in ("single_ms", f"mesh{n}_ms"):
            times = [r[key] for r in rows]
            summary[f"{key}_range"] = f"{min(times):.3g}-{max(times):.3g}"
        summary["speedup_range"] = f"{min(speedups):.2f}-{max(speedups):.2f}"
        summary["faster_in"] = f"{sum(x > 1.0 for x in speedups)}/{len(rows)}"
        counts = Counter(r.get("placement", "unknown") for r in rows)
        summary["placements"] = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        if "speedup_pinned" in summary:
            pinned = [r["speedup_pinned"] for r in rows]
            summary["faster_in_pinned"] = f"{sum(x > 1.0 for x in pinned)}/{len(rows)}"
        summary[f"mesh{n}_max_rel_diff"] = max(r[f"mesh{n}_max_rel_diff"] for r in rows)
        out.append(summary)
    return out


def main(argv=None) -> dict:
    n_devices = _force_devices(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer workloads and repeats")
    p.add_argument("--devices", type=int, default=n_devices, help="host devices (default: cores)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument(
        "--processes", type=int, default=None, help="fresh processes (default 5, quick 1)"
    )
    p.add_argument("--child", action="store_true", help="measure once and print JSON rows")
    args = p.parse_args(argv)
    n = len(jax.devices())
    if n < 2:
        print(
            "only one JAX device: set XLA_FLAGS=--xla_force_host_platform_device_count=2 before "
            "JAX starts (run this script directly)",
            file=sys.stderr,
        )
        return {}
    repeats = args.repeats or (5 if args.quick else 9)
    if args.child:
        rows = measure(args.quick, repeats)
        print(json.dumps(rows))
        return {"rows": rows}
    processes = (1 if args.quick else 5) if args.processes is None else args.processes
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    load_before = load_average()
    runs = in_fresh_processes(processes, n, args.quick, repeats)
    rows = summarize(runs, n)
    rollouts = [r for r in rows if r["workload"].startswith("rollout")]
    # "Faster" needs a margin over the run-to-run noise of a median of a few processes: a
    # median of 1.01 with processes on both sides of 1 is parity, not a speed-up.
    faster = bool(rollouts) and all(r["speedup_vs_single"] >= FASTER for r in rollouts)
    faster_pinned = bool(rollouts) and all(r.get("speedup_pinned", 0) >= FASTER for r in rollouts)
    payload = {
        "benchmark": "sharding",
        "quick": args.quick,
        "devices": [str(dv) for dv in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "rows": rows,
        "processes": runs,
        "done_when": {
            f"{n}_devices_faster_than_1_on_rollouts_process_median>={FASTER}": faster,
            f"{n}_devices_faster_than_1_on_rollouts_process_median>={FASTER}_xla_threads_pinned": (
                faster_pinned
            ),
        },
        "load_average_1min": {"before": load_before, "after": load_average()},
    }
    cols = [
        "workload",
        "single_ms",
        "single_ms_range",
        "mesh1_ms",
        f"mesh{n}_ms",
        f"mesh{n}_ms_range",
        "speedup_vs_single",
        "speedup_range",
        "faster_in",
        "speedup_vs_mesh1",
        "single_cores",
        f"mesh{n}_cores",
        "single_pinned_ms",
        f"mesh{n}_pinned_ms",
        "speedup_pinned",
        "faster_in_pinned",
        f"mesh{n}_from_device0_ms",
        "speedup_from_device0",
        f"mesh{n}_max_rel_diff",
        "placements",
    ]
    failed = [r for r in runs if not isinstance(r, list)]
    md = [
        f"{n} host devices (`--xla_force_host_platform_device_count={n}`) on {os.cpu_count()} "
        f"cores, measured in {processes} fresh processes one after another (medians over them; "
        f"one process's speed on this VM is one draw of a bimodal distribution). `single`: "
        f"plain jit on one device; `mesh1`/`mesh{n}`: the sharded code on 1 and {n} devices, "
        "each given its inputs where its executable takes them (split or replicated over the "
        "mesh, placed once before timing, as a run keeps its state on the mesh between "
        "iterations: :func:`rmft_theory.sharding.placed_for`); "
        f"`mesh{n}_from_device0`: the {n}-device "
        "executable given the inputs on device 0, so that every call first moves them (the "
        "protocol of this benchmark before f6d953e). "
        f"Speed-up: single (or mesh1) time over mesh{n} time in each process, then the median "
        f"over processes; the `_range` columns span the "
        f"processes, and `faster_in` counts those in which {n} devices were faster; `cores`: "
        "process CPU time over wall time while it ran, all threads (spin-waiting included, so "
        "an upper bound on the cores doing work); `*_pinned`: the same executables timed "
        "in the same rounds with XLA's worker threads pinned one per CPU "
        "(:func:`rmft_theory.runtime.pin_xla_threads`), which keeps Linux from stacking them "
        f"on one CPU; `mesh{n}_max_rel_diff`: the largest relative difference of a sharded "
        "result from the single-device one in any process; `placements`: in how many "
        "processes the vCPUs shared a cache (`near`), did not (`far`) or moved (`mixed`) "
        "while the workload was timed, from a core-latency probe before and after "
        "(:func:`rmft_theory.benchmarking.core_latency_ns`).",
        "",
        markdown_table(rows, cols),
        "",
        *([f"Failed processes: {failed}.", ""] if failed else []),
        f"Load average (1 min) before/after: {load_before}/{load_average()}.",
    ]
    write_results("sharding", payload, "\n".join(md))
    print("\n".join(md))
    return payload


if __name__ == "__main__":
    main()
