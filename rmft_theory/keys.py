"""Named PRNG streams: one integer seed per source of randomness, each with its own key.

Changing the initialisation seed never moves the tasks or the rewards, and so on. A stream's key
is ``fold_in(key(seed), stream_id)``; keys are typed (``jax.random.key``).
"""

from __future__ import annotations

import dataclasses

import jax

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
