"""Named PRNG streams: one integer seed per source of randomness, each with its own key.

Changing the initialisation seed never moves the tasks or the rewards, and so on. A stream's key
is ``fold_in(key(seed), stream_id)``; keys are typed (``jax.random.key``). The bulk Gaussian
draws (rewards and exploration noise) go through :func:`standard_normal`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.validation import check_nonnegative

STREAM_IDS = {"init": 0, "tasks": 1, "rewards": 2, "noise": 3, "heldout": 4, "actions": 5}

#: Evaluation streams (``rmft evaluate``): each takes the seed of the training stream it mirrors
#: but a stream id of its own, so that evaluating with a run's seed never draws from a key on
#: the training's paths (``fold_in(key("tasks"), i)`` is training step i's parent key).
EVALUATION_STREAMS = {
    "evaluation_tasks": ("tasks", 6),
    "evaluation_rewards": ("rewards", 7),
    "evaluation_actions": ("actions", 8),
}


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
        """The typed key of ``stream`` (one of :data:`STREAM_IDS` or
        :data:`EVALUATION_STREAMS`)."""
        if stream in EVALUATION_STREAMS:
            field, stream_id = EVALUATION_STREAMS[stream]
            return jax.random.fold_in(jax.random.key(getattr(self, field)), stream_id)
        if stream not in STREAM_IDS:
            names = (*STREAM_IDS, *EVALUATION_STREAMS)
            raise ValueError(f"stream must be one of {names}, got {stream!r}")
        return jax.random.fold_in(jax.random.key(getattr(self, stream)), STREAM_IDS[stream])


def standard_normal(key: jax.Array, shape: tuple[int, ...], dtype=None) -> jax.Array:
    """Standard Gaussians ``N(0, I)`` of ``shape``: ``jax.random.normal`` with threefry's
    sequential counters, bit for bit, computed faster on CPU.

    The library's bulk Gaussian draw: the rewards of the Gaussian environments and the rollouts'
    exploration noise. Two measured choices:

    * **Sequential counters** (``jax.threefry_partitionable(False)``): the default
      (partitionable) layout spends one threefry hash per 32-bit word, the sequential one a hash
      per two words. On the 2-core benchmark CPU the rollout with per-step noise ran 1.3-1.6×
      faster with it, the fastest of the PRNGs measured (threefry2x32 in either layout,
      threefry4x32, philox4x32, rbg, unsafe_rbg; benchmarks/bench_rollout.py, the per-step RNG
      table), and drawing the headline's (64, 200, 8) rewards took 0.37 against 0.55 ms. The
      rollout drawing its own rewards (per-trajectory noise, M = L = 64, d = 8, interleaved
      rounds in one process) ran 1.46× (T = 200) and 1.37× (T = 2000) faster on two cores and
      1.14× / 1.18× on one. (Before the per-trajectory score ran in blocks of rounds,
      :data:`rmft_theory.rollout.BLOCK_ELEMENTS`, that rollout at T = 2000 took twice as long
      on one core with these rewards: the layout then changed how XLA fused the draw.)
    * **The hash unrolled** (:func:`threefry2x32`): on CPU, JAX lowers its threefry as a rolled
      5-iteration loop, each iteration a separate pass over the counters; written out in
      elementwise operations, XLA fuses the hash, the mantissa trick and ``erf_inv`` into one
      loop. The draws are identical (a test checks it). In 60 s of rounds between core-latency
      probes, the rollout with per-step noise (M = L = 64, T = 200, d = 8) took 13.5 against
      19.2 ms where the two vCPUs shared no cache (229 rounds) and 12.6 ms both ways where they
      shared one (244 rounds); on one core the draws alone took the same time either way.

    Float32 draws from typed threefry2x32 keys take the unrolled path; other dtypes and key
    implementations call ``jax.random.normal`` under sequential counters (the same numbers).
    Draws are per task or per trajectory, never sharded within one call, so the partitionable
    layout would buy nothing here. ``dtype`` defaults to JAX's default float type.
    """
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    n = math.prod(shape)
    if dtype != jnp.float32 or not _is_threefry(key) or n >= _MAX_COUNT:
        with jax.threefry_partitionable(False):
            return jax.random.normal(key, shape, dtype)
    bits = _sequential_bits(jax.random.key_data(key), n).reshape(shape)
    # jax.random.uniform's mantissa trick on [lo, 1) with lo = nextafter(-1, 0), then erf_inv.
    one = np.array(1.0, np.float32)
    floats = jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | one.view(np.uint32), jnp.float32)
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0), dtype=np.float32)
    u = jnp.maximum(lo, (floats - one) * (one - lo) + lo)
    return np.float32(np.sqrt(2.0)) * jax.lax.erf_inv(u)


#: Rotation constants of Threefry-2x32 (Salmon et al., 2011), for rounds 1-4 and 5-8 of each 8.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
#: JAX draws more than 2^32 - 1 words from split keys; those sizes take ``jax.random.normal``.
_MAX_COUNT = 2**32 - 1


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array):
    """Threefry-2x32 with 20 rounds (Salmon et al., 2011) of the key ``(k0, k1)`` on the
    counter pairs ``(x0, x1)``, uint32, in elementwise operations (no loop)."""
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r)))
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _sequential_bits(key_data: jax.Array, n: int) -> jax.Array:
    """The n uint32 words ``jax.random.bits`` draws under sequential counters: counters
    0..n-1 (padded with one 0 to an even count) split in halves and hashed as pairs."""
    half = (n + 1) // 2
    c = jax.lax.iota(jnp.uint32, half)
    x1 = c + np.uint32(half)
    if n % 2:
        x1 = jnp.where(c == half - 1, np.uint32(0), x1)
    h0, h1 = threefry2x32(key_data[..., 0], key_data[..., 1], c, x1)
    return jnp.concatenate([h0, h1])[:n]


def _is_threefry(key: jax.Array) -> bool:
    """Whether ``key`` is a typed key of JAX's threefry2x32 implementation."""
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and (
        str(jax.random.key_impl(key)) == "threefry2x32"
    )
