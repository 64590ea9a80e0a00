"""Compile once, then run a jitted chunk of work repeatedly behind a progress bar with ETA."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm


class Timings(NamedTuple):
    """Wall-clock seconds spent compiling and running (compile time excluded from run time)."""

    compile_s: float
    run_s: float


def compile_timed(fn: Callable, *args) -> tuple[Callable, float]:
    """Ahead-of-time compile ``jax.jit(fn)`` for ``args``; return the executable and seconds."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def run_chunks(
    advance: Callable[[Any], tuple[Any, Any]],
    state: Any,
    n_chunks: int,
    desc: str,
    unit_per_chunk: int = 1,
    unit: str = "step",
    quiet: bool = False,
) -> tuple[Any, list, Timings]:
    """Apply ``advance`` ``n_chunks`` times; ``advance`` is compiled once, before the bar starts.

    Returns the final state, the per-chunk metrics pulled to NumPy, and the timings.
    """
    compiled, compile_s = compile_timed(advance, state)
    if not quiet:
        print(f"[{desc}] compiled in {compile_s:.2f}s", file=sys.stderr)
    history = []
    t0 = time.perf_counter()
    with tqdm(
        total=n_chunks * unit_per_chunk,
        desc=desc,
        unit=unit,
        disable=quiet,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        for _ in range(n_chunks):
            state, metrics = compiled(state)
            history.append(jax.tree.map(np.asarray, metrics))
            bar.update(unit_per_chunk)
    jax.block_until_ready(state)
    return state, history, Timings(compile_s, time.perf_counter() - t0)
