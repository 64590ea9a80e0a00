"""``rmft bench``: run the benchmarks (each in its own process) and write benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  rmft bench --quick                 # every benchmark, small sizes (minutes)
  rmft bench                         # the full grids
  rmft bench --only filter_iteration bandits
  rmft bench --list

Each benchmarks/bench_NAME.py writes benchmarks/results/NAME.json and NAME.md; afterwards the
Markdown tables are gathered into benchmarks/RESULTS.md with the machine they came from. Timings
exclude compilation (reported separately) and are medians of repeats after a warm-up.
"""


def add_parser(sub) -> None:
    """Register ``bench``."""
    p = sub.add_parser(
        "bench",
        help="run the speed benchmarks and write benchmarks/RESULTS.md",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes; tables go to benchmarks/results/quick/, never over the full ones",
    )
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these benchmarks")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the chosen benchmarks, then assemble RESULTS.md; non-zero if any failed."""
    from rmft_theory.benchmarking import assemble_results, discover_benchmarks, run_benchmarks

    if args.list:
        for name, path in discover_benchmarks().items():
            print(f"{name}\t{path}")
        return 0
    codes = run_benchmarks(args.only, args.quick)
    path = assemble_results(quick=args.quick)
    failed = [n for n, c in codes.items() if c != 0]
    print(f"{len(codes) - len(failed)}/{len(codes)} benchmarks ran; tables in {path}")
    return 1 if failed else 0
