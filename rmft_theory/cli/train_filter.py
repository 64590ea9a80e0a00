"""``rmft train-filter``: run the regret filter (Iterative RMFT) on the single-layer LSA.

Writes ``OUT/result.json`` (per-iteration metrics, the baselines' held-out regret, the final
``W_eff`` and the closed-form ``W*``) and keeps a checkpoint in ``OUT/checkpoint/`` after every
iteration; rerunning with the same ``--out`` resumes from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rmft_theory.cli import add_devices_argument, add_seed_argument

EXAMPLES = """examples:
  rmft train-filter --d 5 --horizon 50 --noise per-trajectory --noise-scale 3 \\
      --tasks 1024 --rollouts 256 --keep 1 --iterations 8 --out runs/filter
  rmft train-filter --task-mean random --noise actions --loss cross-entropy --iterations 20 \\
      --out runs/filter_simplex
"""


def add_parser(sub) -> None:
    """Register ``train-filter``."""
    p = sub.add_parser(
        "train-filter",
        help="run the regret filter (Iterative RMFT) and compare it with FTRL at W*",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--d", type=int, default=5, help="reward dimension")
    p.add_argument("--horizon", type=int, default=50, help="rounds T")
    p.add_argument("--sigma", type=float, default=1.0, help="reward standard deviation")
    p.add_argument("--radius", type=float, default=1.0, help="ball radius ρ")
    p.add_argument(
        "--task-mean",
        choices=["zero", "random"],
        default="zero",
        help=(
            "zero: the theory's tasks, where W* and FTRL at η* are the targets; random: "
            "μ ~ N(0, mean_scale² I) per task, where W* is only the zero-mean reference and "
            "follow-the-leader the stronger baseline (THEORY §3)"
        ),
    )
    p.add_argument(
        "--mean-scale",
        type=float,
        default=None,
        help="std of random task means (--task-mean random only; default 0.3)",
    )
    p.add_argument(
        "--noise",
        choices=["per-step", "per-trajectory", "actions", "none"],
        default="per-trajectory",
    )
    p.add_argument("--noise-scale", type=float, default=3.0, help="Gaussian exploration scale")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature τ")
    p.add_argument(
        "--space", choices=["ball", "simplex"], default=None, help="default: simplex for actions"
    )
    p.add_argument(
        "--loss",
        choices=["mse", "cross-entropy"],
        default=None,
        help="default: cross-entropy for actions, else mse",
    )
    p.add_argument("--tasks", type=int, default=1024, help="tasks M per iteration")
    p.add_argument("--rollouts", type=int, default=256, help="trajectories L per task")
    p.add_argument("--keep", type=int, default=1, help="kept trajectories k per task")
    p.add_argument("--iterations", type=int, default=8, help="filter iterations N")
    p.add_argument("--finetune-steps", type=int, default=200, help="optimiser steps per iteration")
    p.add_argument("--lr", type=float, default=1e-2, help="peak Adam learning rate")
    p.add_argument("--accumulate", action="store_true", help="keep the kept sets of all iterations")
    p.add_argument("--from-base", action="store_true", help="fine-tune the base model every time")
    p.add_argument("--selection", choices=["regret", "reward"], default="regret")
    p.add_argument("--scope", choices=["task", "pooled"], default="task")
    p.add_argument("--heldout-tasks", type=int, default=512, help="held-out evaluation tasks")
    add_seed_argument(p)
    p.add_argument("--out", type=Path, required=True, help="output (and checkpoint) folder")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_devices_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Run (or resume) the filter, then write ``OUT/result.json``."""
    import numpy as np

    from rmft_theory.envs import GaussianFOL
    from rmft_theory.io import environment_info, save_json
    from rmft_theory.keys import Seeds
    from rmft_theory.models import make_model
    from rmft_theory.rmft import FilterConfig, lsa_weight_metrics, run_filter
    from rmft_theory.sharding import mesh_of
    from rmft_theory.theory import ftrl_weights

    mesh = mesh_of(args.devices)
    if args.tasks % args.devices:  # before any work or file
        raise ValueError(
            f"devices={args.devices}: tasks must be a multiple of {args.devices}, got {args.tasks}"
        )

    env = GaussianFOL(
        d=args.d,
        horizon=args.horizon,
        sigma=args.sigma,
        mean_kind=args.task_mean,
        mean_scale=(
            args.mean_scale
            if args.mean_scale is not None
            else (0.3 if args.task_mean == "random" else 0.0)
        ),
    )
    space = args.space or ("simplex" if args.noise == "actions" else "ball")
    loss = args.loss or ("cross-entropy" if args.noise == "actions" else "mse")
    config = FilterConfig(
        tasks=args.tasks,
        rollouts=args.rollouts,
        keep=args.keep,
        iterations=args.iterations,
        noise=args.noise,
        noise_scale=args.noise_scale,
        temperature=args.temperature,
        space=space,
        radius=args.radius,
        loss=loss,
        finetune_steps=args.finetune_steps,
        learning_rate=args.lr,
        accumulate=args.accumulate,
        from_base=args.from_base,
        selection=args.selection,
        scope=args.scope,
        heldout_tasks=args.heldout_tasks,
        task_chunk=min(64, args.tasks),
    )
    seeds = Seeds.from_seed(args.seed)
    W_star = ftrl_weights(env.cov_matrix, env.horizon, args.radius)
    result = run_filter(
        make_model("lsa", env.d),
        env,
        config,
        seeds,
        metrics_fn=lsa_weight_metrics(W_star, env.reward_scale),
        checkpoint_dir=args.out / "checkpoint",
        stop_after=args.stop_after,
        quiet=args.quiet,
        mesh=mesh,
    )
    h = result.history
    per_iteration = {k: v for k, v in h.items() if k not in ("w_eff", "heldout_curve")}
    ref_name = "ftrl_eta_star" if space == "ball" else "hedge_best_eta"
    summary = {
        "iterations_done": int(result.state.iteration),
        **per_iteration,
        "heldout_regret_reference": result.reference[f"{ref_name}_heldout_regret"],
        "reference": ref_name,
        "reference_heldout_regret": {
            k: v for k, v in result.reference.items() if k.endswith("_heldout_regret")
        },
        "base": {k: v for k, v in result.base.items() if k not in ("heldout_curve",)},
        "W_eff": h["w_eff"][-1] if "w_eff" in h else result.base["w_eff"],
        "W_star": W_star,
        "hedge_eta": result.reference.get("hedge_eta"),
        "compile_s": result.timings.compile_s,
        "run_s": result.timings.run_s,
        "devices": args.devices,
        "env": env,
        "config": config,
        "seeds": seeds,
        "environment": environment_info(),
    }
    save_json(args.out / "result.json", summary)
    if "w_eff_rel_error" in h:
        err = np.asarray(h["w_eff_rel_error"])
        print(
            f"iterations={summary['iterations_done']} w_eff_rel_error={err[-1]:.4f} "
            f"heldout_regret={h['heldout_regret'][-1]:.3f} "
            f"({ref_name}: {summary['heldout_regret_reference']:.3f}) -> {args.out / 'result.json'}"
        )
    return 0
