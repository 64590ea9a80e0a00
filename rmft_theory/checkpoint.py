"""Pickle-free, atomic checkpoints of a JAX pytree plus JSON metadata.

The pytree's leaves go to ``state_<iteration>.npz`` (typed PRNG keys as their raw key data); the
metadata, with the name of that file, goes to ``checkpoint.json``. Both writes are atomic
(:mod:`rmft_theory.io`), and the JSON is written **after** the arrays it points to, while the
previous arrays are deleted only after the JSON names the new ones, so a kill at any moment
leaves a consistent checkpoint: the old one or the new one. Loading needs a template pytree with
the same structure, shapes and dtypes (e.g. a freshly initialised state).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.io import load_json, load_npz, save_json, save_npz

META_FILE = "checkpoint.json"


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
