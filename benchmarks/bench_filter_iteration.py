"""Time one regret-filter iteration against the bare rollout of the same M × L × T.

Parts, each jitted and compiled ahead of time (compile time reported separately):

* ``rollout``: sample M tasks, run the model once per task, explore L trajectories per task
  and compute each trajectory's regret, returning every trajectory's policies
  (:func:`rmft_theory.rollout.rollout`, the reference for the 10× budget);
* ``selection``: the k lowest regrets per task and the mean kept policy, from stored policies;
* ``finetune``: ``finetune_steps`` full-batch optimiser steps on the M-task kept set;
* ``evaluate``: the held-out regret and ``W_eff`` metrics after fine-tuning;
* ``iteration``: the whole filter iteration (:func:`rmft_theory.rmft.make_iteration`), which
  fuses the rollout and the selection per task and does not store all policies.

Reports the median of ``--repeats`` wall times, writes
``benchmarks/results/filter_iteration.json`` and prints a Markdown table::

    .venv/bin/python benchmarks/bench_filter_iteration.py           # M=256, L=64, T=100, d=5
    .venv/bin/python benchmarks/bench_filter_iteration.py --quick   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from rmft_theory.envs import GaussianFOL
from rmft_theory.io import environment_info, save_json
from rmft_theory.keys import Seeds
from rmft_theory.models import make_model
from rmft_theory.rmft import (
    FilterConfig,
    KeptSet,
    finetune,
    heldout_rewards,
    init_state,
    lsa_weight_metrics,
    make_evaluate,
    make_iteration,
    select_lowest,
)
from rmft_theory.rollout import rollout
from rmft_theory.theory import ftrl_weights
from rmft_theory.train import sample_batch

RESULTS = Path(__file__).resolve().parent / "results" / "filter_iteration.json"


def timed(fn, args, repeats: int) -> tuple[dict, object]:
    """Compile ``jax.jit(fn)`` for ``args``; return compile seconds, median run time, output."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    output = jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "run_s": statistics.median(times), "runs_s": times}, output


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    p.add_argument("--tasks", type=int, default=256)
    p.add_argument("--rollouts", type=int, default=64)
    p.add_argument("--horizon", type=int, default=100)
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--finetune-steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.tasks, args.rollouts, args.horizon, args.repeats = 32, 16, 20, 2

    env = GaussianFOL(d=args.d, horizon=args.horizon)
    config = FilterConfig(
        tasks=args.tasks,
        rollouts=args.rollouts,
        keep=1,
        iterations=8,
        noise="per-trajectory",
        noise_scale=3.0,
        finetune_steps=args.finetune_steps,
        heldout_tasks=256,
    )
    model = make_model("lsa", env.d)
    seeds = Seeds.from_seed(0)
    params = model.init(seeds.key("init"), jnp.zeros((env.horizon, env.d)))["params"]

    def apply_fn(p, r):
        return model.apply({"params": p}, r)

    W_star = ftrl_weights(env.cov_matrix, env.horizon)
    metrics_fn = lsa_weight_metrics(W_star)
    exploration = config.exploration
    M, L, k = config.tasks, config.rollouts, config.keep
    key_tasks, key_rewards, key_noise = seeds.key("tasks"), seeds.key("rewards"), seeds.key("noise")
    heldout = heldout_rewards(env, config.heldout_tasks, seeds.key("heldout"))

    def bare_rollout(params, key_tasks, key_rewards, key_noise):
        rewards = sample_batch(key_tasks, key_rewards, env, M)
        return rollout(apply_fn, params, rewards, key_noise, exploration, L)

    def selection(policies_MxLxTxD, regret_MxL):
        idx_Mxk = jax.vmap(select_lowest, in_axes=(0, None))(regret_MxL, k)
        kept = jnp.take_along_axis(policies_MxLxTxD, idx_Mxk[:, :, None, None], axis=1)
        return jnp.mean(kept, axis=1)

    reps = args.repeats
    parts = {}
    parts["rollout"], out = timed(bare_rollout, (params, key_tasks, key_rewards, key_noise), reps)
    parts["selection"], targets = timed(selection, (out.policies, out.regret), reps)
    kept = KeptSet(out.rewards, targets, jnp.full((M,), 1.0 / M))
    parts["finetune"], _ = timed(
        lambda p, s: finetune(apply_fn, p, s, config), (params, kept), reps
    )
    parts["evaluate"], _ = timed(
        make_evaluate(apply_fn, config, metrics_fn), (params, heldout), reps
    )
    state = init_state(params, env, config, seeds)
    parts["iteration"], _ = timed(
        make_iteration(apply_fn, env, config, metrics_fn), (state, heldout), reps
    )
    ratio = parts["iteration"]["run_s"] / parts["rollout"]["run_s"]
    result = {
        "settings": {
            "tasks": M,
            "rollouts": L,
            "horizon": env.horizon,
            "d": env.d,
            "keep": k,
            "finetune_steps": config.finetune_steps,
            "heldout_tasks": config.heldout_tasks,
            "repeats": args.repeats,
            "quick": args.quick,
        },
        "parts": parts,
        "iteration_over_rollout": ratio,
        "budget": 10.0,
        "within_budget": ratio <= 10.0,
        "environment": environment_info(),
    }
    save_json(args.out, result)
    print(f"M={M} L={L} T={env.horizon} d={env.d} k={k} finetune_steps={config.finetune_steps}\n")
    print("| part | compile (s) | run (ms) | × bare rollout |")
    print("|---|---:|---:|---:|")
    for name, r in parts.items():
        rel = r["run_s"] / parts["rollout"]["run_s"]
        print(f"| {name} | {r['compile_s']:.2f} | {1e3 * r['run_s']:.1f} | {rel:.2f} |")
    verdict = "within" if ratio <= 10 else "OVER"
    print(
        f"\none iteration = {ratio:.2f}× the bare rollout ({verdict} the 10× budget) -> {args.out}"
    )


if __name__ == "__main__":
    main()
