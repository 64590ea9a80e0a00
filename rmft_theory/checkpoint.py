"""Pickle-free, atomic checkpoints of a JAX pytree plus JSON metadata.

The pytree's leaves go to ``state_<iteration>.npz`` (typed PRNG keys as their raw key data); the
metadata, with the name of that file, goes to ``checkpoint.json``. Both writes are atomic
(:mod:`rmft_theory.io`), and the JSON is written **after** the arrays it points to, while the
previous arrays are deleted only after the JSON names the new ones, so a kill at any moment
leaves a consistent checkpoint: the old one or the new one. Loading needs a template pytree with
the same structure, shapes and dtypes (e.g. a freshly initialised state).

A run's per-step log goes beside it as one small npz record per step (:func:`save_record`),
written once and never rewritten, so a run of N steps writes O(N) bytes of log, not the O(N²)
of rewriting the whole log at every checkpoint. A step's record is written before the
checkpoint that counts the step, so a kill between the two leaves a record that the resumed
run recomputes and overwrites.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.envs.registry import ENVS, env_label
from rmft_theory.io import json_differences, load_json, load_npz, save_json, save_npz, to_jsonable
from rmft_theory.validation import is_builtin

META_FILE = "checkpoint.json"
RECORDS_DIR = "records"


def _is_key(leaf) -> bool:
    return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def save_checkpoint(directory, state, step: int, meta: dict) -> Path:
    """Write ``state`` (any pytree) and ``meta`` (JSON-ready) as checkpoint ``step``."""
    directory = Path(directory)
    leaves = jax.tree_util.tree_leaves(state)
    arrays = {}
    for i, leaf in enumerate(leaves):
        if _is_key(leaf):
            arrays[f"key_{i:04d}"] = np.asarray(jax.random.key_data(leaf))
        else:
            arrays[f"leaf_{i:04d}"] = np.asarray(leaf)
    name = f"state_{step:06d}.npz"
    save_npz(directory / name, **arrays)
    save_json(directory / META_FILE, {**meta, "step": step, "state_file": name})
    for old in directory.glob("state_*.npz"):
        if old.name != name:
            old.unlink()
    return directory / name


def has_checkpoint(directory) -> bool:
    """Whether ``directory`` holds a checkpoint."""
    return (Path(directory) / META_FILE).exists()


def load_checkpoint(directory, template):
    """Read the checkpoint in ``directory`` into the structure of ``template``.

    Returns ``(state, meta)``, or None when there is no checkpoint. Raises a ValueError when
    the saved leaves do not match the template's structure, shapes or dtypes.
    """
    directory = Path(directory)
    if not has_checkpoint(directory):
        return None
    meta = load_json(directory / META_FILE)
    arrays = load_npz(directory / meta["state_file"])
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(arrays) != len(t_leaves):
        raise ValueError(
            f"checkpoint in {directory} has {len(arrays)} arrays but the state has "
            f"{len(t_leaves)} leaves (written by a different model or configuration)"
        )
    leaves = []
    for i, t in enumerate(t_leaves):
        if _is_key(t):
            data = arrays.get(f"key_{i:04d}")
            want = jax.random.key_data(t)
            if data is None or data.shape != want.shape or data.dtype != want.dtype:
                raise ValueError(f"checkpoint in {directory}: PRNG key leaf {i} does not match")
            leaves.append(jax.random.wrap_key_data(data, impl=jax.random.key_impl(t)))
        else:
            a = arrays.get(f"leaf_{i:04d}")
            t = jnp.asarray(t)
            if a is None or a.shape != t.shape or a.dtype != t.dtype:
                got = None if a is None else (a.shape, str(a.dtype))
                raise ValueError(
                    f"checkpoint in {directory}: leaf {i} is {got}, expected "
                    f"{(t.shape, str(t.dtype))} (written by a different model or configuration)"
                )
            leaves.append(jnp.asarray(a))
    return jax.tree_util.tree_unflatten(treedef, leaves), meta


def run_fingerprint(env, settings, seeds, params) -> dict:
    """What a training run's checkpoint must match to be resumed: the environment (its kind,
    :func:`env_kind`, and its options), the settings, the seeds and the parameter shapes, as
    JSON."""
    shapes = [list(np.shape(x)) for x in jax.tree_util.tree_leaves(params)]
    return to_jsonable(
        {
            "env_kind": env_kind(env),
            "env": env,
            "config": settings,
            "seeds": seeds,
            "param_shapes": shapes,
        }
    )


def env_kind(env) -> str:
    """The environment's registered name, or ``module.QualifiedName`` of an unregistered class
    (:func:`rmft_theory.envs.registry.env_label`): two environment classes with the same
    options are different runs. The plain and the registry's Gaussian environment are both
    ``"gaussian-fol"``."""
    return env_label(env)


def _builtin_kind(kind) -> bool:
    """Whether an :func:`env_kind` names an environment that ships with this library."""
    return isinstance(kind, str) and kind in ENVS and is_builtin(ENVS[kind].cls)


def check_resumable(directory, fingerprint: dict, free: tuple[str, ...] = ()) -> None:
    """Raise a ValueError naming the settings that differ when the checkpoint in ``directory``
    belongs to a run with another :func:`run_fingerprint`, its ``config`` entries ``free`` left
    out on both sides (so checkpoints written when those entries still counted resume). Checked
    before any array is read: another run's arrays may not even fit this run's state."""

    def settings(fp):
        fp = to_jsonable(fp)
        if isinstance(fp, dict) and isinstance(fp.get("config"), dict):
            fp = {**fp, "config": {k: v for k, v in fp["config"].items() if k not in free}}
        if isinstance(fp, dict) and "env_kind" not in saved_keys and builtin_now:
            # Saved before the kind counted: then only a built-in environment is known to be
            # the one that wrote it (a plugin subclass of GaussianFOL was recorded as the plain
            # one), so only a built-in one resumes.
            fp = {k: v for k, v in fp.items() if k != "env_kind"}
        env = fp.get("env") if isinstance(fp, dict) else None
        if isinstance(env, dict) and env.get("mean_kind") in ("zero", "fixed"):
            # GaussianFOL once ignored mean_scale unless mean_kind was "random" (rmft
            # train-filter recorded its 0.3 default on zero-mean tasks); it now must be 0 there.
            fp = {**fp, "env": {**env, "mean_scale": 0.0}}
        return fp

    saved = load_json(Path(directory) / META_FILE).get("fingerprint")
    saved_keys = saved if isinstance(saved, dict) else {}
    builtin_now = _builtin_kind(to_jsonable(fingerprint).get("env_kind"))
    differ = json_differences(settings(saved), settings(fingerprint))
    if differ:
        raise ValueError(
            f"checkpoint_dir {directory} holds a run with different settings "
            f"({', '.join(differ)}); use another --out folder or delete it"
        )


def _record_path(directory, step: int) -> Path:
    return Path(directory) / RECORDS_DIR / f"step_{step:06d}.npz"


def save_record(directory, step: int, record: dict) -> None:
    """Atomically write step ``step``'s log record, a flat dict of numbers and arrays (npz)."""
    arrays = {name: np.asarray(value) for name, value in record.items()}
    for name, a in arrays.items():
        if a.dtype == object:  # npz would pickle it
            raise ValueError(f"record entry {name!r} must be numeric, got {type(record[name])}")
    path = _record_path(directory, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, **arrays)


def load_records(directory, n_steps: int) -> list[dict[str, np.ndarray]]:
    """The log records of steps ``0 .. n_steps − 1``; a ValueError names the first missing."""
    records = []
    for step in range(n_steps):
        path = _record_path(directory, step)
        if not path.exists():
            raise ValueError(f"checkpoint in {directory} is missing the record of step {step}")
        records.append(load_npz(path))
    return records
