"""``rmft evaluate``: run a registered policy on a registered environment; write its regret."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rmft_theory.cli import add_seed_argument

EXAMPLES = """examples:
  rmft evaluate --policy ucb1 --env bernoulli-bandit --means 0.5,0.6,0.7 --horizon 2000 \\
      --runs 500 --seed 0 --out runs/ucb1
  rmft evaluate --policy sw-ucb --env switching-bandit --d 5 --env-opt n_switches=4 \\
      --policy-opt window=300 --out runs/swucb
  rmft evaluate --policy ftrl --env gaussian-fol --d 5 --sigma 1 --horizon 100 --out runs/ftrl
  rmft evaluate --policy ftl --env alternating-fol --reference hedge --out runs/ftl

environments: gaussian-fol, linear-trend-fol, sine-fol, alternating-fol, bernoulli-fol,
  gaussian-bandit, bernoulli-bandit, sine-bandit, linear-trend-bandit, switching-bandit
policies: ucb1, thompson-gaussian, thompson-bernoulli, epsilon-greedy, exp3, sw-ucb,
  discounted-ts, uniform (bandit); ftrl, hedge, ftl, uniform (full information);
  model:DIR (a run directory written by rmft train, which saved the model in DIR/model)
option values: numbers, true/false, comma-separated vectors (0.5,0.6), rows split by ';'
"""


def add_parser(sub) -> None:
    """Register ``evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="evaluate a policy on an environment: regret with a bootstrap CI",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--policy", required=True, help="policy name, or model:PATH")
    p.add_argument("--env", required=True, help="environment name")
    p.add_argument("--horizon", type=int, default=1000, help="rounds T")
    p.add_argument("--runs", type=int, default=100, help="independent runs (tasks)")
    add_seed_argument(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--d", type=int, default=None, help="arms / coordinates")
    p.add_argument("--sigma", type=float, default=None, help="reward noise standard deviation")
    p.add_argument("--means", default=None, help="fixed arm means, e.g. 0.5,0.6,0.7")
    p.add_argument(
        "--env-opt", action="append", default=[], metavar="KEY=VALUE", help="environment option"
    )
    p.add_argument(
        "--policy-opt", action="append", default=[], metavar="KEY=VALUE", help="policy option"
    )
    p.add_argument("--reference", default=None, help="reference policy for normalised regret")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the CI")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--batch-size", type=int, default=None, help="runs per vmapped chunk")
    p.set_defaults(func=run)


def parse_value(text: str):
    """``true``/``false``, an int, a float, a comma vector, ``;``-separated rows, or the text."""
    s = text.strip()
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    if ";" in s:
        return tuple(parse_value(row) for row in s.split(";"))
    if "," in s:
        parts = tuple(parse_value(x) for x in s.split(","))
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in parts):
            raise ValueError(f"vector option values must be numbers, got {text!r}")
        return tuple(float(x) for x in parts)
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    return s


def parse_options(flag: str, items: list[str]) -> dict:
    """``["a=1", "b=0.5,0.6"]`` → ``{"a": 1, "b": (0.5, 0.6)}``; one ValueError per bad item."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{flag} must be KEY=VALUE, got {item!r}")
        key = key.strip().replace("-", "_")
        if key in out:
            raise ValueError(f"{flag} {key} is given twice")
        out[key] = parse_value(value)
    return out


def parse_means(text: str) -> tuple[float, ...]:
    """``"0.5,0.6,0.7"`` → ``(0.5, 0.6, 0.7)``."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--means must be comma-separated numbers, got {text!r}") from None
    return values


def run(args) -> int:
    """Evaluate, then write ``OUT/result.json`` and ``OUT/curves.npz``."""
    from rmft_theory.envs import make_env
    from rmft_theory.evaluate import evaluate, make_policy, summarise
    from rmft_theory.io import environment_info, save_json, save_npz
    from rmft_theory.keys import Seeds
    from rmft_theory.validation import check_positive_int

    t_start = time.perf_counter()
    check_positive_int("--runs", args.runs)
    check_positive_int("--horizon", args.horizon)
    check_positive_int("--n-boot", args.n_boot)
    if not 0 < args.level < 1:
        raise ValueError(f"--level must lie in (0, 1), got {args.level}")
    if args.batch_size is not None:
        check_positive_int("--batch-size", args.batch_size)
    env_opts = parse_options("--env-opt", args.env_opt)
    for flag, value in (("d", args.d), ("sigma", args.sigma)):
        if value is not None:
            if flag in env_opts and env_opts[flag] != value:
                raise ValueError(
                    f"--{flag} {value} and --env-opt {flag}={env_opts[flag]} disagree; give one"
                )
            env_opts[flag] = value
    if args.means is not None:
        env_opts["means"] = parse_means(args.means)
    env = make_env(args.env, horizon=args.horizon, **env_opts)
    policy_opts = parse_options("--policy-opt", args.policy_opt)
    policy, resolved = make_policy(args.policy, env, **policy_opts)
    reference = None
    if args.reference is not None:
        reference, _ = make_policy(args.reference, env)
    seeds = Seeds.from_seed(args.seed)

    evaluation = evaluate(policy, env, args.runs, seeds, args.batch_size)
    ref_eval = evaluate(reference, env, args.runs, seeds, args.batch_size) if reference else None
    summary = summarise(evaluation, env.horizon, args.level, args.n_boot, args.seed, ref_eval)
    timings = {**evaluation.timings, "total_s": time.perf_counter() - t_start}
    save_npz(
        args.out / "curves.npz",
        regret_curve=evaluation.mean_curve,
        **{f"per_run_{k}": v for k, v in evaluation.per_run.items()},
    )
    save_json(
        args.out / "result.json",
        {
            "policy": args.policy,
            "env": args.env,
            **summary,
            "policy_options": resolved,
            "env_config": env,
            "config": {
                "horizon": args.horizon,
                "runs": args.runs,
                "level": args.level,
                "n_boot": args.n_boot,
                "batch_size": args.batch_size,
                "reference": args.reference,
            },
            "seeds": seeds,
            "timings": timings,
            "environment": environment_info(),
        },
    )
    print(
        f"{args.policy} on {args.env}: {summary['regret_kind']} regret "
        f"{summary['mean_regret']:.4g} [{summary['ci_low']:.4g}, {summary['ci_high']:.4g}] "
        f"({args.runs} runs, T={args.horizon}) -> {args.out / 'result.json'}"
    )
    return 0
