"""``rmft train-theory``: train the single-layer LSA directly; compare it with closed-form FTRL."""

from __future__ import annotations

import argparse
from pathlib import Path

from rmft_theory.cli import add_seed_argument

EXAMPLES = """examples:
  rmft train-theory --objective imitation --d 5 --horizon 50 --out runs/imit
  rmft train-theory --objective regret-loss --d 2 --horizon 25 --steps 2000 --seed 1 --out runs/rl
"""


def add_parser(sub) -> None:
    """Register ``train-theory``."""
    p = sub.add_parser(
        "train-theory",
        help="train the single-layer LSA on a THEORY §3 objective and compare with W*",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--objective", choices=["imitation", "regret-loss"], default="imitation")
    p.add_argument("--d", type=int, default=5, help="reward dimension")
    p.add_argument("--horizon", type=int, default=50, help="rounds T")
    p.add_argument("--sigma", type=float, default=1.0, help="reward standard deviation")
    p.add_argument("--radius", type=float, default=1.0, help="ball radius ρ")
    p.add_argument("--steps", type=int, default=4000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=512, help="fresh tasks per step")
    p.add_argument("--lr", type=float, default=1e-2, help="peak Adam learning rate")
    p.add_argument("--chunk", type=int, default=200, help="steps per compiled call")
    add_seed_argument(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    """Train, then write ``OUT/result.json`` and ``OUT/curves.npz``."""
    from rmft_theory.envs import GaussianFOL
    from rmft_theory.io import environment_info, save_json, save_npz
    from rmft_theory.keys import Seeds
    from rmft_theory.theory_path import train_theory
    from rmft_theory.train import DirectTrainConfig

    env = GaussianFOL(d=args.d, horizon=args.horizon, sigma=args.sigma)
    chunk = min(args.chunk, args.steps)
    config = DirectTrainConfig(
        objective=args.objective,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        radius=args.radius,
        chunk=chunk,
    )
    seeds = Seeds.from_seed(args.seed)
    summary, curves = train_theory(
        env, config, seeds, quiet=args.quiet, checkpoint_dir=args.out / "checkpoint"
    )
    save_npz(args.out / "curves.npz", **curves)
    save_json(
        args.out / "result.json",
        {
            **summary,
            "env": env,
            "config": config,
            "seeds": seeds,
            "environment": environment_info(),
        },
    )
    print(
        f"rel_error={summary['rel_error']:.4f} quad_rel={summary['quad_rel']:.2e} "
        f"drift_rel={summary['drift_rel']:.2e} -> {args.out / 'result.json'}"
    )
    return 0
