"""The ``rmft`` command line: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each module defines ``add_parser(subparsers)``, which registers a parser whose ``func``
# default takes the parsed arguments and returns an exit code.
SUBCOMMAND_MODULES = (
    "rmft_theory.cli.train_theory",
    "rmft_theory.cli.train_filter",
    "rmft_theory.cli.reproduce",
    "rmft_theory.cli.evaluate",
    "rmft_theory.cli.train",
    "rmft_theory.cli.bench",
)


def _seed(text: str) -> int:
    """An integer seed >= 0 (argparse names ``--seed`` in the error)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
    """``--seed S``, the integer >= 0 every random stream starts from."""
    parser.add_argument("--seed", type=_seed, default=0, help="seed of every random stream")


def add_devices_argument(parser: argparse.ArgumentParser) -> None:
    """``--devices N`` for a command that runs the regret filter."""
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="run each filter iteration over N JAX devices, its tasks split over them (the "
        "task count must be a multiple of N); on a CPU-only machine the host is split into N "
        "devices (XLA_FLAGS, set by this command before JAX starts). Results equal one "
        "device's up to float rounding; a checkpoint resumes only with the same N",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full ``rmft`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="rmft",
        description="rmft-theory: Iterative RMFT and its FTRL theory, in JAX.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--pin-xla-threads",
        action="store_true",
        help="pin XLA's CPU worker threads one per CPU for this run (Linux; for a machine the "
        "run has to itself: see rmft_theory.runtime; not for bench, whose benchmarks run in "
        "their own processes)",
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import the Python module MODULE (from the current directory or sys.path) before "
        "running the command, so that its register_env / register_model calls are visible; "
        "repeatable",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


class PluginImportError(Exception):
    """A module named by ``--import`` could not be imported."""


def import_plugins(modules: list[str]) -> None:
    """Import each of ``modules`` in order, with the current directory on ``sys.path``.

    The ``rmft`` script's ``sys.path`` starts at its own folder, not the current directory, so
    that is added (at the end, once) for a user's ``mymodule.py`` next to their configs. Any
    exception the import raises becomes one :class:`PluginImportError` line naming the module.
    """
    if not modules:
        return
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # any failure in the user's module, reported as one line
            detail = " ".join(str(err).split())
            what = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
            raise PluginImportError(f"--import {name}: {what}") from err


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; configuration errors exit 2 with one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pin_xla_threads and args.command == "bench":
        print(
            "rmft bench: error: --pin-xla-threads would pin only this process, and each "
            "benchmark runs in its own; they time JAX pinned and unpinned themselves",
            file=sys.stderr,
        )
        return 2
    if getattr(args, "devices", 1) != 1:
        # Before anything can start JAX's backends: XLA reads the host device count only then.
        # It stays in os.environ (child processes inherit it); where this process has started
        # JAX already (main called from a notebook), it changes nothing here and mesh_of says so.
        from rmft_theory.runtime import xla_flags_with_host_devices

        try:
            os.environ["XLA_FLAGS"] = xla_flags_with_host_devices(args.devices)
        except ValueError as err:
            print(f"rmft {args.command}: error: {err}", file=sys.stderr)
            return 2
    try:
        import_plugins(args.imports)
    except PluginImportError as err:
        print(f"rmft: error: {err}", file=sys.stderr)
        return 2
    if args.pin_xla_threads:
        from rmft_theory.runtime import pin_xla_threads

        if not pin_xla_threads():
            print("rmft: --pin-xla-threads: thread placement unavailable here", file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except ValueError as err:
        print(f"rmft {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
