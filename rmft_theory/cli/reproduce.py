"""``rmft reproduce`` and ``rmft plot``: regenerate every figure, or redraw from saved data."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPRODUCE_EXAMPLES = """examples:
  rmft reproduce --quick                      # every figure, small settings -> figures/quick/
  rmft reproduce                              # every figure, full settings  -> figures/
  rmft reproduce --only fig_weight_convergence --quick
  rmft reproduce --list

A killed run (even kill -9) resumes on the next call: finished experiments and finished units
inside an experiment are loaded, not recomputed. A finished experiment is reused as long as its
script and mode are unchanged; one computed with other rmft_theory sources is reported, and
--recompute --only NAME computes it again from scratch.
"""

PLOT_EXAMPLES = """examples:
  rmft plot                  # redraw every figure in figures/ from its saved .npz/.json
  rmft plot --quick --only fig_weight_convergence
"""


def _common(p) -> None:
    p.add_argument("--quick", action="store_true", help="quick mode (figures/quick/)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these experiments")
    p.add_argument("--figures-dir", type=Path, help="where figures and data go")
    p.add_argument("--experiments-dir", type=Path, help="folder with experiments/fig_*.py")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")


def add_parser(sub) -> None:
    """Register ``reproduce`` and ``plot``."""
    p = sub.add_parser(
        "reproduce",
        help="run every experiment and write data and figures",
        description=__doc__,
        epilog=REPRODUCE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument(
        "--recompute",
        action="store_true",
        help="delete the chosen experiments' saved units and compute them from scratch",
    )
    p.set_defaults(func=run_reproduce)
    q = sub.add_parser(
        "plot",
        help="redraw figures from saved data without recomputing",
        description=__doc__,
        epilog=PLOT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(q)
    q.set_defaults(func=run_plot)


def _run(args, plot_only: bool) -> int:
    from rmft_theory.reproduce import discover, run_all

    if args.list:
        for name, path in discover(args.experiments_dir).items():
            print(f"{name}\t{path}")
        return 0
    t0 = time.perf_counter()
    status = run_all(
        args.only,
        args.quick,
        args.figures_dir,
        args.experiments_dir,
        plot_only=plot_only,
        recompute=getattr(args, "recompute", False),
    )
    states = [s["state"] for s in status.values()]
    print(
        f"{len(status)} experiments ({states.count('computed')} computed, "
        f"{states.count('cached')} cached, {states.count('plotted')} redrawn) "
        f"in {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    return 0


def run_reproduce(args) -> int:
    """Compute what is missing, then plot."""
    return _run(args, plot_only=False)


def run_plot(args) -> int:
    """Plot from saved data only."""
    return _run(args, plot_only=True)
