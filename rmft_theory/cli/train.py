"""``rmft train``: train any registered model on any registered environment from a config."""

from __future__ import annotations

import argparse
from pathlib import Path

from rmft_theory.cli import add_devices_argument

EXAMPLES = """examples:
  rmft train --config configs/lsa_filter.toml --out runs/filter
  rmft train --set method=direct --set env.options.d=3 --set direct.steps=400 --out runs/direct
  rmft train --config configs/transformer_direct.yaml --set model.options.depth=4 --out runs/t4
  rmft train --print-config                      # the defaults, as TOML-like JSON

Config files are TOML, YAML or JSON with the sections of TrainRunConfig: method, seed,
[model] (name, options), [env] (name, options), [direct] and [filter]. --set KEY=VALUE
overrides any field (values are read as JSON when they parse). Nothing in a config runs code.
A filter run resumes from OUT/checkpoint when rerun with the same --out.
"""


def add_parser(sub) -> None:
    """Register ``train``."""
    p = sub.add_parser(
        "train",
        help="train any registered model on any registered env (direct or filter)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="TOML, YAML or JSON config file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (repeatable)",
    )
    p.add_argument("--out", type=Path, help="run directory")
    p.add_argument("--print-config", action="store_true", help="print the resolved config")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_devices_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Load and validate the config, then train."""
    import json

    from rmft_theory import config as config_lib
    from rmft_theory.io import to_jsonable
    from rmft_theory.runs import TrainRunConfig, run_training
    from rmft_theory.sharding import mesh_of

    cfg = config_lib.load(TrainRunConfig, args.config, args.overrides)
    if args.print_config:
        print(json.dumps(to_jsonable(cfg), indent=2))
        return 0
    if args.out is None:
        raise ValueError("--out is required to train (or pass --print-config)")
    if args.devices != 1 and cfg.method != "filter":  # before asking JAX for devices
        raise ValueError(f"devices={args.devices} needs method 'filter', got {cfg.method!r}")
    summary = run_training(cfg, args.out, quiet=args.quiet, mesh=mesh_of(args.devices))
    final = summary.get("final", {})
    shown = ", ".join(
        f"{k}={v:.4g}" for k, v in list(final.items())[:4] if isinstance(v, (int, float))
    )
    print(f"{cfg.method} {cfg.model.name} on {cfg.env.name}: {shown} -> {args.out}")
    return 0
