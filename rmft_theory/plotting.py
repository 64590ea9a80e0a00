"""Plotting helpers shared by the experiment scripts (headless Matplotlib)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rmft_theory.io import atomic_path


def subplots(*args, **kwargs):
    """``plt.subplots`` with a constrained layout."""
    kwargs.setdefault("layout", "constrained")
    if "width_ratios" in kwargs:
        kwargs.setdefault("gridspec_kw", {})["width_ratios"] = kwargs.pop("width_ratios")
    return plt.subplots(*args, **kwargs)


def savefig(fig, fig_dir: Path, name: str) -> list[Path]:
    """Atomically save ``fig`` as ``fig_dir/name.png`` and ``.pdf``; close it."""
    paths = []
    for ext in ("png", "pdf"):
        path = Path(fig_dir) / f"{name}.{ext}"
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, dpi=150, format=ext)
        paths.append(path)
    plt.close(fig)
    return paths


def script_main(compute, plot, name: str) -> None:
    """Command line of one experiment script: ``--quick``, ``--out DIR``, ``--plot-only``."""
    from rmft_theory.reproduce import (
        check_saved_data,
        default_figures_dir,
        library_sha256,
        write_provenance,
    )

    p = argparse.ArgumentParser(description=f"Regenerate {name}.")
    p.add_argument("--quick", action="store_true", help="small settings, minutes on a laptop")
    p.add_argument("--out", type=Path, default=None, help="figures folder")
    p.add_argument("--plot-only", action="store_true", help="redraw from saved data")
    args = p.parse_args()
    fig_dir = args.out or default_figures_dir(args.quick)
    if args.plot_only:
        try:
            check_saved_data(fig_dir, name)
        except ValueError as err:
            p.error(str(err))
    else:
        fig_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        compute(fig_dir, args.quick)
        record = {"quick": args.quick, "compute_s": time.perf_counter() - t0}
        write_provenance(fig_dir, name, {**record, "library_sha256": library_sha256()})
    for path in plot(fig_dir):
        print(path)
