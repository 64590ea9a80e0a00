"""Atomic, pickle-free storage of results: JSON for metadata, npz for arrays.

Every write goes to a temporary file in the target folder, is flushed and fsynced, and is then
renamed over the target, so that a reader (or a resumed run after ``kill -9``) sees either the
old file or the complete new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def to_jsonable(obj):
    """Convert arrays, NumPy scalars, dataclasses, tuples and paths into JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        arr = np.asarray(obj)
        return arr.tolist() if arr.ndim else arr.item()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def json_differences(saved, current, prefix: str = "") -> list[str]:
    """Dotted paths at which two JSON-ready trees differ, e.g. ``["config.keep"]``.

    Dicts are compared key by key (a key on one side only is a difference); any other values,
    lists included, by equality.
    """
    if isinstance(saved, dict) and isinstance(current, dict):
        paths = []
        for key in sorted(set(saved) | set(current), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved or key not in current:
                paths.append(where)
            else:
                paths += json_differences(saved[key], current[key], where)
        return paths
    return [] if saved == current else [prefix or "<root>"]


def save_json(path, obj) -> None:
    """Atomically write ``obj`` (converted by :func:`to_jsonable`) as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def load_json(path):
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def save_npz(path, **arrays) -> None:
    """Atomically write arrays to an ``.npz`` file (no pickled objects)."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npz(path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` file with pickling disabled."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# Folders the project writes its results into: changes there do not make a revision "dirty".
OUTPUT_PATHS = ("figures", "benchmarks/results", "benchmarks/RESULTS.md")


def git_revision(repo: Path | None = None) -> str | None:
    """The checkout's git revision, with ``-dirty`` when tracked files other than the outputs
    (:data:`OUTPUT_PATHS`, which the runs themselves rewrite) differ from it; None outside a
    git checkout. ``repo``: a folder inside the checkout (default: this package's)."""
    here = Path(repo or Path(__file__).resolve().parent)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        rev = git("describe", "--always", "--abbrev=12")
        if not rev:
            return None
        excluded = [f":(top,exclude){path}" for path in OUTPUT_PATHS]
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", *excluded)
        return f"{rev}-dirty" if changed else rev
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info() -> dict:
    """Package versions, Python, platform, JAX backend and devices, and the git revision."""
    import jax

    versions = {}
    for pkg in ("rmft-theory", "jax", "jaxlib", "flax", "optax", "numpy", "scipy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
        "git_revision": git_revision(),
    }
