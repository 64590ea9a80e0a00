"""Time one regret-filter iteration, its parts, and the bare rollout of the same M × L × T.

Parts, each jitted and compiled ahead of time (compile time reported separately), timed back
to back in one process (median of interleaved repeats):

* ``rollout``: sample M tasks, run the model once per task, explore L trajectories per task and
  score each by its regret (:func:`rmft_theory.rollout.rollout_scores`; policies not stored):
  the bare rollout of the 10× budget;
* ``rollout_with_policies``: the same, also returning every trajectory's (T, d) policies
  (:func:`rmft_theory.rollout.rollout`), the bare rollout of the earlier version of this script;
* ``selection``: the k lowest regrets per task and the mean of the kept policies, rebuilt from
  the kept rows of the tasks' draws (:func:`rmft_theory.rollout.policies_from_draws`);
* ``finetune``: ``finetune_steps`` full-batch Adam steps on the M-task kept set, in the form the
  library picks (for the LSA with MSE: the loss from sufficient statistics computed once,
  :mod:`rmft_theory.models.lsa_moments`);
* ``finetune_direct``: the same steps with the model run over the kept set at every step
  (``finetune_form="direct"``, the form before the moments were added; for comparison);
* ``evaluate``: the held-out regret and ``W_eff`` metrics after fine-tuning;
* ``iteration``: the whole filter iteration (:func:`rmft_theory.rmft.make_iteration`), which
  fuses rollout and selection per chunk of tasks.

Writes ``benchmarks/results/filter_iteration.{json,md}``::

    .venv/bin/python benchmarks/bench_filter_iteration.py           # M=256, L=64, T=100, d=5
    .venv/bin/python benchmarks/bench_filter_iteration.py --quick   # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp

from rmft_theory.benchmarking import (
    blocking,
    compile_jax,
    load_average,
    markdown_table,
    time_interleaved,
    write_results,
)
from rmft_theory.envs import GaussianFOL
from rmft_theory.keys import Seeds
from rmft_theory.models import make_model
from rmft_theory.rmft import (
    FilterConfig,
    KeptSet,
    apply_function,
    finetune,
    finetune_form,
    heldout_rewards,
    init_state,
    lsa_weight_metrics,
    make_evaluate,
    make_iteration,
    select_lowest,
)
from rmft_theory.rollout import policies_from_draws, rollout, rollout_scores, task_draws
from rmft_theory.runtime import compiler_options
from rmft_theory.theory import ftrl_weights
from rmft_theory.train import sample_batch

BUDGET = 10.0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    p.add_argument("--tasks", type=int, default=256)
    p.add_argument("--rollouts", type=int, default=64)
    p.add_argument("--horizon", type=int, default=100)
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--finetune-steps", type=int, default=100)
    p.add_argument("--noise", default="per-trajectory", choices=["per-trajectory", "per-step"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--task-chunk",
        type=int,
        default=FilterConfig.task_chunk,
        help="FilterConfig.task_chunk: most tasks per chunk (raise it on a GPU)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = 5

    env = GaussianFOL(d=args.d, horizon=args.horizon)
    config = FilterConfig(
        tasks=args.tasks,
        rollouts=args.rollouts,
        keep=1,
        iterations=8,
        noise=args.noise,
        noise_scale=3.0,
        finetune_steps=args.finetune_steps,
        heldout_tasks=256,
        task_chunk=args.task_chunk,
    )
    model = make_model("lsa", env.d)
    apply_fn = apply_function(model)
    seeds = Seeds.from_seed(0)
    params = model.init(seeds.key("init"), jnp.zeros((env.horizon, env.d)))["params"]
    metrics_fn = lsa_weight_metrics(ftrl_weights(env.cov_matrix, env.horizon))
    exploration = config.exploration
    M, L, k = config.tasks, config.rollouts, config.keep
    keys = (seeds.key("tasks"), seeds.key("rewards"), seeds.key("noise"))
    heldout = heldout_rewards(env, config.heldout_tasks, seeds.key("heldout"))

    def bare_rollout(params, key_tasks, key_rewards, key_noise):
        rewards = sample_batch(key_tasks, key_rewards, env, M)
        return rewards, rollout_scores(apply_fn, params, rewards, key_noise, exploration, L)

    def rollout_with_policies(params, key_tasks, key_rewards, key_noise):
        rewards = sample_batch(key_tasks, key_rewards, env, M)
        return rollout(apply_fn, params, rewards, key_noise, exploration, L)

    def selection(params, rewards_MxTxD, regret_MxL, key_noise):
        def one(key_m, rewards_TxD, regret_L):
            g_TxD = apply_fn(params, rewards_TxD)
            draws = task_draws(key_m, g_TxD, exploration, L)
            idx_k = select_lowest(regret_L, k)
            return jnp.mean(policies_from_draws(g_TxD, draws[idx_k], exploration), axis=0)

        return jax.vmap(one)(jax.random.split(key_noise, M), rewards_MxTxD, regret_MxL)

    state = init_state(params, env, config, seeds)
    compiled, compile_s = {}, {}
    options = compiler_options(config.noise)  # the library's, for the whole iteration
    compiled["rollout"], compile_s["rollout"] = compile_jax(
        bare_rollout, params, *keys, compiler_options=options
    )
    compiled["rollout_with_policies"], compile_s["rollout_with_policies"] = compile_jax(
        rollout_with_policies, params, *keys, compiler_options=options
    )
    rewards, scores = compiled["rollout"](params, *keys)
    compiled["selection"], compile_s["selection"] = compile_jax(
        selection, params, rewards, scores.regret, keys[2], compiler_options=options
    )
    targets = compiled["selection"](params, rewards, scores.regret, keys[2])
    kept = KeptSet(rewards, targets, jnp.full((M,), 1.0 / M))
    compiled["finetune"], compile_s["finetune"] = compile_jax(
        lambda p, s: finetune(apply_fn, p, s, config), params, kept, compiler_options=options
    )
    direct = dataclasses.replace(config, finetune_form="direct")
    compiled["finetune_direct"], compile_s["finetune_direct"] = compile_jax(
        lambda p, s: finetune(apply_fn, p, s, direct), params, kept, compiler_options=options
    )
    compiled["evaluate"], compile_s["evaluate"] = compile_jax(
        make_evaluate(apply_fn, config, metrics_fn), params, heldout, compiler_options=options
    )
    compiled["iteration"], compile_s["iteration"] = compile_jax(
        make_iteration(apply_fn, env, config, metrics_fn), state, heldout, compiler_options=options
    )
    args_of = {
        "rollout": (params, *keys),
        "rollout_with_policies": (params, *keys),
        "selection": (params, rewards, scores.regret, keys[2]),
        "finetune": (params, kept),
        "finetune_direct": (params, kept),
        "evaluate": (params, heldout),
        "iteration": (state, heldout),
    }
    load_before = load_average()
    times = time_interleaved(
        {n: blocking(compiled[n], *args_of[n]) for n in compiled}, args.repeats
    )
    bare = times["rollout"]["median_s"]
    rows = [
        {
            "part": n,
            "compile_s": compile_s[n],
            "run_ms": 1e3 * t["median_s"],
            "x_bare_rollout": t["median_s"] / bare,
            "x_rollout_with_policies": t["median_s"] / times["rollout_with_policies"]["median_s"],
        }
        for n, t in times.items()
    ]
    ratio = times["iteration"]["median_s"] / bare
    ratio_pol = times["iteration"]["median_s"] / times["rollout_with_policies"]["median_s"]
    ft_ms = {
        n: 1e3 * times[n]["median_s"] / config.finetune_steps
        for n in ("finetune", "finetune_direct")
    }
    speedup = times["finetune_direct"]["median_s"] / times["finetune"]["median_s"]
    settings = {
        "tasks": M,
        "rollouts": L,
        "horizon": env.horizon,
        "d": env.d,
        "keep": k,
        "noise": config.noise,
        "finetune_steps": config.finetune_steps,
        "heldout_tasks": config.heldout_tasks,
        "task_chunk": config.task_chunk,
        "repeats": args.repeats,
    }
    payload = {
        "benchmark": "filter_iteration",
        "quick": args.quick,
        "settings": settings,
        "parts": {
            n: {"compile_s": compile_s[n], "run_s": t["median_s"], "runs_s": t["runs_s"]}
            for n, t in times.items()
        },
        "iteration_over_rollout": ratio,
        "iteration_over_rollout_with_policies": ratio_pol,
        "finetune_form": finetune_form(apply_fn, config),
        "finetune_ms_per_step": ft_ms["finetune"],
        "finetune_direct_ms_per_step": ft_ms["finetune_direct"],
        "finetune_moments_speedup": speedup,
        "budget": BUDGET,
        "within_budget": ratio <= BUDGET,
        "load_average_1min": {"before": load_before, "after": load_average()},
    }
    md = [
        f"M={M} L={L} T={env.horizon} d={env.d} k={k}, {config.noise} noise, "
        f"finetune_steps={config.finetune_steps}, task_chunk={config.task_chunk}; "
        f"median of {args.repeats} interleaved runs.",
        "",
        markdown_table(
            rows, ["part", "compile_s", "run_ms", "x_bare_rollout", "x_rollout_with_policies"]
        ),
        "",
        f"One iteration = {ratio:.1f}× the bare (score-only) rollout "
        f"({'within' if ratio <= BUDGET else 'OVER'} the {BUDGET:.0f}× budget) and "
        f"{ratio_pol:.1f}× the rollout that also returns every policy. Fine-tuning "
        f"({finetune_form(apply_fn, config)} form) costs {ft_ms['finetune']:.3f} ms per step "
        f"including its one-off statistics, the direct form {ft_ms['finetune_direct']:.2f} ms "
        f"({speedup:.0f}× slower).",
    ]
    write_results("filter_iteration", payload, "\n".join(md))
    print("\n".join(md))
    return payload


if __name__ == "__main__":
    main()
