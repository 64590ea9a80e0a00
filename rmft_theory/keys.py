"""Named PRNG streams: one integer seed per source of randomness, each with its own key.

Changing the initialisation seed never moves the tasks or the rewards, and so on. A stream's key
is ``fold_in(key(seed), stream_id)``; keys are typed (``jax.random.key``). The bulk Gaussian
draws (rewards and exploration noise) go through :func:`standard_normal`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rmft_theory.validation import check_nonnegative

STREAM_IDS = {"init": 0, "tasks": 1, "rewards": 2, "noise": 3, "heldout": 4, "actions": 5}


@dataclasses.dataclass(frozen=True)
class Seeds:
    """Seeds for each named stream; ``Seeds.from_seed(s)`` uses one integer for all of them."""

    init: int = 0
    tasks: int = 0
    rewards: int = 0
    noise: int = 0
    heldout: int = 0
    actions: int = 0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"seeds.{f.name} must be an integer, got {v!r}")
            check_nonnegative(f"seeds.{f.name}", v)

    @classmethod
    def from_seed(cls, seed: int) -> Seeds:
        """Every stream from the same integer (streams still differ through their ids)."""
        return cls(**{name: seed for name in STREAM_IDS})

    def key(self, stream: str) -> jax.Array:
        """The typed key of ``stream``."""
        if stream not in STREAM_IDS:
            raise ValueError(f"stream must be one of {tuple(STREAM_IDS)}, got {stream!r}")
        return jax.random.fold_in(jax.random.key(getattr(self, stream)), STREAM_IDS[stream])


def standard_normal(key: jax.Array, shape: tuple[int, ...], dtype=None) -> jax.Array:
    """Standard Gaussians ``N(0, I)`` of ``shape`` with threefry's sequential counters.

    The library's bulk Gaussian draw: the rewards of the Gaussian environments and the rollouts'
    exploration noise. ``jax.threefry_partitionable(False)``: the default (partitionable) layout
    spends one threefry hash per 32-bit word, the sequential one a hash per two words. On the
    2-core benchmark CPU the rollout with per-step noise ran 1.3-1.6× faster with it, the fastest
    of the PRNGs measured (threefry2x32 in either layout, threefry4x32, philox4x32, rbg,
    unsafe_rbg; benchmarks/bench_rollout.py, the per-step RNG table), and drawing the headline's
    (64, 200, 8) rewards took 0.37 against 0.55 ms, the per-trajectory rollout that draws them
    1.03 against 1.31 ms. Draws are per task or per trajectory, never sharded within one call,
    so the partitionable layout would buy nothing here. ``dtype`` defaults to JAX's default
    float type.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    with jax.threefry_partitionable(False):
        return jax.random.normal(key, shape, dtype)
