"""The reproduction pipeline: discover ``experiments/fig_*.py``, run them resumably, plot.

An experiment module defines two functions:

* ``compute(fig_dir: Path, quick: bool) -> None`` computes its data one resumable unit at a
  time (see :func:`unit`) and writes the figure's data, ``fig_dir/<name>.npz`` and/or
  ``fig_dir/<name>.json``;
* ``plot(fig_dir: Path) -> list[Path]`` reads only that saved data and writes
  ``fig_dir/<name>.png`` and ``fig_dir/<name>.pdf`` beside it.

A unit's arrays are saved atomically as ``fig_dir/units/<name>/<unit>.npz`` once computed; a
rerun after an interruption (even ``kill -9``) loads finished units instead of recomputing them.
Each saved unit carries a fingerprint of the mode (quick or full) and of the settings its caller
passes (:func:`fingerprint`); a unit saved with another fingerprint, or with none (saved before
fingerprints existed), is stale and is computed again. Likewise a finished experiment is skipped
only while its mode and its script's contents are those it was computed with.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib.util
import json
import shutil
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from rmft_theory.io import (
    environment_info,
    load_json,
    load_npz,
    save_json,
    save_npz,
    to_jsonable,
)


def repo_root() -> Path:
    """The checkout that holds this package (experiments live beside it)."""
    return Path(__file__).resolve().parent.parent


def default_experiments_dir() -> Path:
    """``<checkout>/experiments``."""
    return repo_root() / "experiments"


def default_figures_dir(quick: bool) -> Path:
    """``figures/`` for full runs, ``figures/quick/`` for quick ones (full figures stay intact)."""
    base = repo_root() / "figures"
    return base / "quick" if quick else base


def discover(experiments_dir: Path | None = None) -> dict[str, Path]:
    """Map ``fig_NAME`` to its script for every ``fig_*.py`` in the experiments folder."""
    folder = Path(experiments_dir or default_experiments_dir())
    if not folder.is_dir():
        raise ValueError(f"experiments folder {folder} does not exist (pass --experiments-dir)")
    return {p.stem: p for p in sorted(folder.glob("fig_*.py"))}


def load_experiment(path: Path) -> ModuleType:
    """Import an experiment script by path, checking that it has ``compute`` and ``plot``."""
    spec = importlib.util.spec_from_file_location(f"rmft_experiments.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    for fn in ("compute", "plot"):
        if not callable(getattr(module, fn, None)):
            raise ValueError(f"experiment {path.name} must define {fn}()")
    return module


def units_dir(fig_dir: Path, experiment: str) -> Path:
    """Where the resumable units of ``experiment`` live."""
    return Path(fig_dir) / "units" / experiment


# The mode of the reproduction in progress (set by :func:`run_all`), for units whose caller does
# not pass ``quick`` itself; None outside a reproduction.
_RUN_QUICK: contextvars.ContextVar[bool | None] = contextvars.ContextVar("_RUN_QUICK", default=None)

FINGERPRINT_KEY = "_unit_fingerprint"
"""The array in a unit's ``.npz`` that holds its fingerprint (a reserved name)."""


def fingerprint(quick: bool | None, settings=None) -> str:
    """SHA-256 (hex) of the mode and ``settings``: dataclasses, tuples and arrays are converted
    by :func:`rmft_theory.io.to_jsonable`, then encoded as JSON with sorted keys."""
    try:
        text = json.dumps(
            {"quick": quick, "settings": to_jsonable(settings)},
            sort_keys=True,
            separators=(",", ":"),
        )
    except TypeError as err:
        raise TypeError(f"unit settings must be JSON-able: {err}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def _load_unit(path: Path, want: str) -> tuple[dict[str, np.ndarray] | None, str]:
    """The unit saved at ``path`` when its fingerprint is ``want``, else None and why not."""
    if not path.exists():
        return None, "missing"
    try:
        arrays = load_npz(path)
    except (OSError, ValueError, zipfile.BadZipFile):
        return None, "unreadable"
    saved = arrays.pop(FINGERPRINT_KEY, None)
    if saved is None:
        return None, "saved without a fingerprint"
    if str(saved) != want:
        return None, "mode or settings changed"
    return arrays, "cached"


def unit(
    fig_dir: Path,
    experiment: str,
    name: str,
    compute_fn: Callable[[], dict],
    *,
    quick: bool | None = None,
    settings=None,
) -> dict[str, np.ndarray]:
    """Return the saved arrays of unit ``name``, computing and saving them first if missing or
    stale.

    ``quick``: the mode (default: that of the :func:`run_all` in progress). ``settings``: a
    JSON-able value (dataclasses allowed) holding everything the result depends on beyond the
    mode; a saved unit is reused only when both match what it was saved with. Prints one line to
    stderr when the unit is reused and two (start, and end with seconds) when it is computed.
    """
    if quick is None:
        quick = _RUN_QUICK.get()
    want = fingerprint(quick, settings)
    path = units_dir(fig_dir, experiment) / f"{name}.npz"
    arrays, why = _load_unit(path, want)
    if arrays is not None:
        print(f"  unit {name}: cached", file=sys.stderr)
        return arrays
    note = "" if why == "missing" else f" ({why})"
    print(f"  unit {name}: computing{note}", file=sys.stderr)
    t0 = time.perf_counter()
    arrays = {k: np.asarray(v) for k, v in compute_fn().items()}
    if FINGERPRINT_KEY in arrays:
        raise ValueError(f"unit {name}: {FINGERPRINT_KEY!r} is a reserved array name")
    save_npz(path, **arrays, **{FINGERPRINT_KEY: np.asarray(want)})
    print(f"  unit {name}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return arrays


def check_saved_data(fig_dir: Path, name: str) -> None:
    """Raise a ValueError naming the experiment unless ``fig_dir`` holds its saved data
    (``NAME.json`` or ``NAME.npz``), which plotting alone needs."""
    fig_dir = Path(fig_dir)
    if not any((fig_dir / f"{name}{ext}").exists() for ext in (".json", ".npz")):
        quick = " --quick" if fig_dir.name == "quick" else ""
        raise ValueError(
            f"no saved data for {name} in {str(fig_dir)!r} ({name}.json or {name}.npz); "
            f"compute it first: rmft reproduce{quick} --only {name}"
        )


def experiment_fingerprint(script: Path, quick: bool) -> str:
    """What a finished experiment must match to be skipped: the mode and the script's bytes."""
    return fingerprint(
        quick, {"script_sha256": hashlib.sha256(Path(script).read_bytes()).hexdigest()}
    )


def write_provenance(fig_dir: Path, name: str, record: dict) -> Path:
    """Write ``<fig_dir>/<name>.provenance.json`` beside the figure's data (``units/`` is not
    committed): ``record`` (mode, compute time, the library's source hash, ...), package
    versions and the git revision."""
    provenance = {"experiment": name, **record, "environment": environment_info()}
    path = Path(fig_dir) / f"{name}.provenance.json"
    save_json(path, provenance)
    return path


def library_sha256() -> str:
    """SHA-256 (hex) of the ``rmft_theory`` package's Python sources, path by path.

    Recorded beside each finished experiment: a cached experiment computed with other library
    code is reported (its units' fingerprints hold only the mode and settings).
    """
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files left by writes that a kill interrupted; return how many.

    Completed writes never leave one (see :func:`rmft_theory.io.atomic_path`), so any found here
    belong to a dead process. Do not run two reproductions into the same folder at once.
    """
    count = 0
    if Path(folder).is_dir():
        for path in Path(folder).rglob(".*.tmp*"):
            path.unlink(missing_ok=True)
            count += 1
    return count


def run_all(
    names: list[str] | None,
    quick: bool,
    figures_dir: Path | None = None,
    experiments_dir: Path | None = None,
    plot_only: bool = False,
    recompute: bool = False,
) -> dict:
    """Compute (unless ``plot_only``) and plot the chosen experiments; return a status dict.

    A finished experiment is recorded in ``<figures>/units/<name>/status.json`` with
    :func:`experiment_fingerprint` and skipped on a rerun in the same mode with the same script;
    otherwise it runs again, reusing those of its saved units whose fingerprints still match (so a
    partly finished one resumes). A computed experiment also writes ``<figures>/<name>.provenance
    .json`` (mode, compute time, library hash, package versions and git revision). A skipped
    experiment computed with other library sources
    (:func:`library_sha256`) is reported on stderr. ``recompute`` deletes the chosen
    experiments' saved units first and computes them from scratch.
    """
    found = discover(experiments_dir)
    chosen = names or list(found)
    unknown = [n for n in chosen if n not in found]
    if unknown:
        raise ValueError(f"--only must name experiments among {sorted(found)}, got {unknown}")
    fig_dir = Path(figures_dir or default_figures_dir(quick))
    fig_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(fig_dir)
    if recompute and plot_only:
        raise ValueError("recompute and plot_only exclude each other")
    library = library_sha256()
    status = {}
    for name in chosen:
        module = load_experiment(found[name])
        done_file = units_dir(fig_dir, name) / "status.json"
        want = experiment_fingerprint(found[name], quick)
        t0 = time.perf_counter()
        if recompute and units_dir(fig_dir, name).exists():
            shutil.rmtree(units_dir(fig_dir, name))
        done = load_json(done_file) if done_file.exists() else {}
        if plot_only:
            check_saved_data(fig_dir, name)
            state = "plotted"
        elif done.get("fingerprint") == want:
            state = "cached"
            recorded = done.get("library_sha256")
            if recorded != library:
                which = "other" if recorded else "unrecorded (older)"
                print(
                    f"== {name}: cached, but computed with {which} rmft_theory sources; "
                    f"rmft reproduce{' --quick' if quick else ''} --recompute --only {name} "
                    "computes it again",
                    file=sys.stderr,
                )
        else:
            print(f"== {name}: computing ({'quick' if quick else 'full'} mode)", file=sys.stderr)
            token = _RUN_QUICK.set(quick)
            try:
                module.compute(fig_dir, quick)
            finally:
                _RUN_QUICK.reset(token)
            record = {
                "quick": quick,
                "fingerprint": want,
                "library_sha256": library,
                "compute_s": time.perf_counter() - t0,
            }
            save_json(done_file, record)
            write_provenance(fig_dir, name, record)
            state = "computed"
        outputs = module.plot(fig_dir)
        status[name] = {
            "state": state,
            "seconds": time.perf_counter() - t0,
            "outputs": [str(p) for p in outputs],
        }
        print(
            f"== {name}: {state}, {status[name]['seconds']:.1f}s -> "
            f"{', '.join(Path(p).name for p in outputs)}",
            file=sys.stderr,
        )
    return status
