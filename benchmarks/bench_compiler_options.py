"""The library's per-executable XLA options, measured: which rollouts it compiles with them.

XLA on CPU hands reductions, with the elementwise work and dots feeding them, to YNNPACK's
fusions by default. :data:`rmft_theory.runtime.NO_YNN_REDUCE` keeps YNNPACK for dots only and
leaves reductions to XLA's own loops; :func:`rmft_theory.runtime.compiler_options` turns it on
for executables that roll out with any exploration but per-trajectory noise, and this
benchmark is the measurement behind that choice. Each workload is compiled twice, with XLA's
defaults and with the option, and the two are timed as a pair (``block`` calls each, order
alternating) between two core-latency probes (:func:`rmft_theory.benchmarking.probed`),
cycling through the workloads until ``--seconds`` have passed, so that every workload sees
both vCPU placements of the 2-core benchmark VM (see ``bench_rollout.given_spread``).
Workloads:

* the rollout drawing its own rewards (``bench_rollout.jax_rollout``: sample, model once per
  task, explore, score) with per-trajectory and per-step noise at several (M, L, T, d);
* the rewards-given headline (M = L = 64, T = 200, d = 8, per-trajectory noise);
* one filter iteration (:func:`rmft_theory.rmft.make_iteration`, M = 256, L = 64, T = 100,
  d = 5, 100 fine-tuning steps) with each noise (sampled actions: on the simplex with the
  cross-entropy loss, M = 64), and with sampled actions under bandit feedback (Bernoulli
  bandit, d = 3).

Reports per workload and placement the median time under each compilation, ``speedup`` (the
median over rounds of default time over option time), whether the library uses the option
for that workload, and the largest relative difference between the two compilations' results
(the same maths summed in another order). Writes
``benchmarks/results/compiler_options.{json,md}``::

    .venv/bin/python benchmarks/bench_compiler_options.py           # 300 s of rounds
    .venv/bin/python benchmarks/bench_compiler_options.py --quick   # 3 workloads, 10 s
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_rollout import HEADLINE, given_run, jax_rollout, setup

from rmft_theory import bandit_filter
from rmft_theory.benchmarking import (
    blocking,
    compile_jax,
    load_average,
    markdown_table,
    probed,
    time_interleaved,
    write_results,
)
from rmft_theory.envs import GaussianFOL
from rmft_theory.envs.registry import make_env
from rmft_theory.keys import Seeds
from rmft_theory.models import make_model
from rmft_theory.rmft import (
    FilterConfig,
    apply_function,
    heldout_rewards,
    init_state,
    lsa_weight_metrics,
    make_iteration,
)
from rmft_theory.runtime import NO_YNN_REDUCE, compiler_options
from rmft_theory.theory import ftrl_weights

NOISES = ("per-trajectory", "per-step")
ITERATION_NOISES = ("per-trajectory", "per-step", "actions", "none")
#: (M, L, T, d) of the rollouts drawing their own rewards; per-step noise skips T = 2000.
CASES = ((64, 64, 200, 8), (64, 64, 200, 2), (64, 64, 200, 32), (16, 16, 50, 8))
PER_TRAJECTORY_ONLY = ((64, 64, 2000, 8), (256, 64, 200, 8))
PLACEMENTS = ("near", "far", "mixed", "unknown")


def iteration_run(noise: str, quick: bool, env_name: str = "gaussian"):
    """One filter iteration ``(state, heldout) -> (state, metrics)``, its arguments and a label.

    ``noise="actions"`` samples actions on the simplex with the cross-entropy loss (M = 64);
    ``env_name="bernoulli-bandit"`` runs it with bandit feedback (d = 3).
    """
    M, L, T, d, steps = (32, 16, 50, 5, 10) if quick else (256, 64, 100, 5, 100)
    kwargs = {}
    if noise == "actions":
        M = min(M, 64)
        kwargs = {"space": "simplex", "loss": "cross-entropy"}
    if env_name == "gaussian":
        env = GaussianFOL(d=d, horizon=T)
        metrics_fn = lsa_weight_metrics(ftrl_weights(env.cov_matrix, T))
    else:
        d = 3
        env, metrics_fn = make_env(env_name, d=d, horizon=T), None
    config = FilterConfig(
        tasks=M,
        rollouts=L,
        keep=1,
        noise=noise,
        noise_scale=3.0,
        finetune_steps=steps,
        heldout_tasks=256,
        **kwargs,
    )
    model = make_model("lsa", d)
    seeds = Seeds.from_seed(0)
    params = model.init(seeds.key("init"), jnp.zeros((T, d)))["params"]
    if bandit_filter.is_bandit(env):
        heldout = bandit_filter.heldout_tasks(env, config.heldout_tasks, seeds.key("heldout"))
    else:
        heldout = heldout_rewards(env, config.heldout_tasks, seeds.key("heldout"))
    run = make_iteration(apply_function(model), env, config, metrics_fn)
    label = f"{env_name} {noise} M={M} L={L} T={T} d={d}"
    return run, (init_state(params, env, config, seeds), heldout), label


def workloads(quick: bool) -> dict[str, tuple]:
    """Name to ``(fn, args, noise)``."""
    out = {}
    cases = CASES[:1] if quick else CASES + PER_TRAJECTORY_ONLY
    for case in cases:
        M, L, T, d = case
        env, params = setup(M, T, d)
        for noise in NOISES:
            if noise == "per-step" and case in PER_TRAJECTORY_ONLY:
                continue
            name = f"rollout {noise} M={M} L={L} T={T} d={d}"
            out[name] = (jax_rollout(env, M, L, noise), (params, jax.random.key(1)), noise)
    if not quick:
        run, args = given_run(HEADLINE)
        out["rollout per-trajectory, rewards given, M=64 L=64 T=200 d=8"] = (
            run,
            args,
            "per-trajectory",
        )
    iterations = [("per-step", "gaussian")]
    if not quick:
        iterations = [(noise, "gaussian") for noise in ITERATION_NOISES]
        iterations.append(("actions", "bernoulli-bandit"))
    for noise, env_name in iterations:
        run, args, label = iteration_run(noise, quick, env_name)
        out[f"filter iteration {label}"] = (run, args, noise)
    return out


def relative_difference(a, b) -> float:
    """The largest ``|a − b| / (1 + |a|)`` over the floating-point leaves of two results."""
    pairs = [
        (np.asarray(x, np.float64), np.asarray(y, np.float64))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
        if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    return max(float(np.max(np.abs(x - y) / (1.0 + np.abs(x)))) for x, y in pairs)


def measure(work: dict, seconds: float, block: int) -> tuple[list[dict], dict]:
    """Rounds of every workload's pair (default, option) between core-latency probes, cycling
    until ``seconds`` have passed; and per workload the compile times and result difference."""
    pairs, meta = {}, {}
    for name, (fn, args, noise) in work.items():
        default, default_s = compile_jax(fn, *args)
        option, option_s = compile_jax(fn, *args, compiler_options=NO_YNN_REDUCE)
        diff = relative_difference(default(*args), option(*args))
        calls = {"default": blocking(default, *args), "no_ynn_reduce": blocking(option, *args)}
        time_interleaved(calls, 1, warmup=1, block=1)  # untimed: both warm
        pairs[name] = calls
        meta[name] = {
            "noise": noise,
            "library_uses_option": bool(compiler_options(noise)),
            "compile_s": {"default": default_s, "no_ynn_reduce": option_s},
            "max_relative_difference": diff,
        }
    rounds: list[dict] = []
    t_end = time.perf_counter() + seconds
    cycle = 0
    while time.perf_counter() < t_end:
        for name, calls in pairs.items():
            order = dict(list(calls.items())[:: 1 if cycle % 2 == 0 else -1])
            t, where = probed(lambda o=order: time_interleaved(o, 1, warmup=0, block=block))
            ms = {n: 1e3 * v["median_s"] for n, v in t.items()}
            rounds.append({"workload": name, "placement": where["placement"], "ms": ms})
        cycle += 1
    return rounds, meta


def summarize(rounds: list[dict], meta: dict) -> list[dict]:
    """Per workload and placement: rounds, median times, and ``speedup`` (the median over
    rounds of default time over option time)."""
    rows = []
    for name, info in meta.items():
        for where in PLACEMENTS:
            sel = [r["ms"] for r in rounds if r["workload"] == name and r["placement"] == where]
            if not sel:
                continue
            rows.append(
                {
                    "workload": name,
                    "placement": where,
                    "rounds": len(sel),
                    "default_ms": float(np.median([s["default"] for s in sel])),
                    "no_ynn_reduce_ms": float(np.median([s["no_ynn_reduce"] for s in sel])),
                    "speedup": float(np.median([s["default"] / s["no_ynn_reduce"] for s in sel])),
                    "library_uses_option": info["library_uses_option"],
                }
            )
    return rows


def results_markdown(rows: list[dict], meta: dict, seconds: float, block: int) -> str:
    """The Markdown table of :func:`summarize`'s rows, with what they measured."""
    worst = max(m["max_relative_difference"] for m in meta.values())
    header = (
        f"XLA's default CPU fusions against `{NO_YNN_REDUCE}` (YNNPACK for dots only; "
        "reductions left to XLA's loops), each workload compiled both ways and timed as a "
        f"pair, {block} calls each, between two core-latency probes, cycling through "
        f"the workloads for {seconds:g} s; medians over the rounds in each placement; "
        "`speedup`: the median over rounds of default time over option time; "
        "`library_uses_option`: whether `rmft_theory.runtime.compiler_options` turns it on "
        "for the workload's noise."
    )
    cols = "workload placement rounds default_ms no_ynn_reduce_ms speedup library_uses_option"
    table = markdown_table(rows, cols.split())
    footer = f"Largest relative difference between the two compilations' results: {worst:.2g}."
    return f"{header}\n\n{table}\n\n{footer}"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 small workloads, 10 s")
    p.add_argument("--seconds", type=float, default=None, help="of rounds (default 300)")
    p.add_argument("--block", type=int, default=3, help="calls per compilation per round")
    args = p.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (10.0 if args.quick else 300.0)
    if seconds <= 0 or args.block < 1:
        raise ValueError(f"seconds and block must be positive, got {seconds} and {args.block}")
    if jax.default_backend() != "cpu":
        raise ValueError(
            f"this benchmark measures XLA:CPU options; backend is {jax.default_backend()}"
        )
    load_before = load_average()
    rounds, meta = measure(workloads(args.quick), seconds, args.block)
    rows = summarize(rounds, meta)
    payload = {
        "benchmark": "compiler_options",
        "quick": args.quick,
        "option": NO_YNN_REDUCE,
        "seconds": seconds,
        "block": args.block,
        "workloads": meta,
        "rows": rows,
        "rounds": rounds,
        "load_average_1min": {"before": load_before, "after": load_average()},
    }
    md = results_markdown(rows, meta, seconds, args.block)
    write_results("compiler_options", payload, md)
    print(md)
    return payload


if __name__ == "__main__":
    main()
