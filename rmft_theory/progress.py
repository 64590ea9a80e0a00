"""Progress for compiled loops: compile once (timed apart), then run with a bar and ETA.

Two levels of feedback:

* between compiled calls, :func:`run_chunks` advances the bar after each chunk;
* inside a compiled loop, :meth:`Progress.tick` sends the step count to the host through
  ``jax.debug.callback``, throttled on the device to one call every ``every`` steps, so a long
  ``lax.scan`` still moves the bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm import tqdm


class Timings(NamedTuple):
    """Wall-clock seconds spent compiling and running (compile time excluded from run time)."""

    compile_s: float
    run_s: float


def compile_timed(
    fn: Callable, *args, compiler_options: dict | None = None
) -> tuple[Callable, float]:
    """Ahead-of-time compile ``jax.jit(fn)`` for ``args`` (with XLA ``compiler_options``, if
    given); return the executable and seconds."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile(compiler_options=compiler_options or None)
    return compiled, time.perf_counter() - t0


class Progress:
    """A tqdm bar (ETA included) that compiled code can advance with :meth:`tick`."""

    def __init__(
        self, total: int, desc: str, unit: str = "step", quiet: bool = False, every: int = 50
    ):
        self.desc, self.quiet, self.every = desc, quiet, max(int(every), 1)
        self.total, self.unit = total, unit
        self.bar = None  # started after compilation, so that the ETA measures running only

    def start(self, initial: int = 0) -> None:
        """Open the bar at ``initial`` finished units (its clock and ETA start now)."""
        if self.bar is None:
            self.bar = tqdm(
                total=self.total,
                initial=int(initial),
                desc=self.desc,
                unit=self.unit,
                disable=self.quiet,
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
            )

    def message(self, text: str) -> None:
        """Print a status line (e.g. 'compiling') unless quiet."""
        if not self.quiet:
            tqdm.write(f"[{self.desc}] {text}", file=sys.stderr)

    def set(self, n: int) -> None:
        """Host side: move the bar to ``n`` (never backwards)."""
        self.start()
        n = int(n)
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def tick(self, count: jax.Array) -> None:
        """Traced side: report ``count`` finished units every ``self.every`` units."""
        if self.quiet:
            return

        def report():
            jax.debug.callback(lambda n: self.set(np.asarray(n)), count)

        jax.lax.cond(count % self.every == 0, report, lambda: None)

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


def check_same_metrics(history: list[dict], names) -> None:
    """Raise a ValueError unless every entry of a run's history has the metric names ``names``
    (those the run's steps give): a run resumed from a checkpoint with another ``metrics_fn``
    would mix two sets. Checked before a resumed run's first step."""
    names = set(names)
    for i, entry in enumerate(history):
        if set(entry) != names:
            raise ValueError(
                "metrics_fn must give the metrics the checkpointed run recorded: entry "
                f"{i} has {sorted(entry)}, this run's steps give {sorted(names)}"
            )


def run_chunks(
    advance: Callable[[Any], tuple[Any, Any]],
    state: Any,
    n_chunks: int,
    progress: Progress,
    units_per_chunk: int = 1,
    start: int = 0,
    after_chunk: Callable[[int, Any, Any, Timings], None] | None = None,
) -> tuple[Any, list, Timings]:
    """Apply ``advance`` to chunks ``start .. n_chunks − 1``; it is compiled once, before
    anything runs (nothing is compiled when no chunk is left).

    ``after_chunk(i, state, metrics, timings)``, if given, runs on the host after chunk i, with
    this call's compile time and the chunk's run time (e.g. to write a checkpoint). Returns the
    final state, the per-chunk metrics of the chunks run here, pulled to NumPy, and the timings.
    """
    if start >= n_chunks:
        return state, [], Timings(0.0, 0.0)
    progress.message("compiling ...")
    compiled, compile_s = compile_timed(advance, state)
    progress.message(f"compiled in {compile_s:.2f}s")
    history = []
    t0 = time.perf_counter()
    progress.start(initial=start * units_per_chunk)
    try:
        for i in range(start, n_chunks):
            t_chunk = time.perf_counter()
            state, metrics = compiled(state)
            history.append(jax.tree.map(np.asarray, metrics))  # waits for the chunk
            if after_chunk is not None:
                chunk = Timings(compile_s, time.perf_counter() - t_chunk)
                after_chunk(i, state, history[-1], chunk)
            progress.set((i + 1) * units_per_chunk)
        jax.block_until_ready(state)
    finally:
        progress.close()
    return state, history, Timings(compile_s, time.perf_counter() - t0)
