"""Full-information reward processes beyond Gaussian (THEORY §1), and the mean-curve helpers
that the non-stationary bandits share.

Every environment here and in :mod:`rmft_theory.envs.bandits` is a frozen, validated dataclass
with ``d``, ``horizon``, the class attributes ``feedback`` (``"full"`` or ``"bandit"``) and
``stationary``, the properties ``reward_range`` and ``reward_scale``, and three pure methods
that act on one task and one sequence (batch them with ``jax.vmap`` over keys and tasks).
A full-information environment may also set the class attribute ``symmetric_noise``: True
when, given the task, ``R_t − μ_t`` has the same law as ``μ_t − R_t`` (jointly over rounds
and coordinates), which lets direct training pair every sequence with its mirror ``2μ − R``
(:class:`rmft_theory.train.DirectTrainConfig`'s ``antithetic``); left out, it counts as False.

* ``sample_task(key) -> task``: the per-task parameters, a pytree of arrays;
* ``mean_rewards(task) -> (T, d)``: the means ``μ_t = E[R_t]``;
* ``sample_rewards(key, task) -> (T, d)``: one realised reward table ``R_t``.

Rounds are 1-indexed in the formulas (``t = 1..T``) and 0-indexed in arrays.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.envs import gaussian
from rmft_theory.envs.gaussian import GaussianFOL
from rmft_theory.keys import standard_normal
from rmft_theory.validation import check_finite, check_nonnegative, check_positive_int

INF = float("inf")


def check_vector(name: str, values, d: int, low: float = -INF, high: float = INF) -> tuple:
    """``values`` must be ``d`` finite numbers in ``[low, high]``; returns them as a float tuple."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {d} numbers, got {values!r}") from None
    if v.shape != (d,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be {d} finite numbers (one per arm), got {values!r}")
    if np.any(v < low) or np.any(v > high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {values!r}")
    return tuple(float(x) for x in v)


def check_range(low_name: str, low, high_name: str, high, lo=-INF, hi=INF) -> None:
    """``lo ≤ low ≤ high ≤ hi`` for a pair of finite bounds."""
    for name, v in ((low_name, low), (high_name, high)):
        check_finite(name, v)
        if not lo <= v <= hi:
            raise ValueError(f"{name} must lie in [{lo}, {hi}], got {v!r}")
    if low > high:
        raise ValueError(f"{low_name} must be <= {high_name}, got {low} > {high}")


def _float():
    return jnp.result_type(float)


# ----------------------------------------------------------------------------- mean curves


def time_fraction(horizon: int) -> jax.Array:
    """``x_t = (t − 1)/(T − 1)`` for ``t = 1..T`` (all zeros when T = 1), shape (T,)."""
    t = jnp.arange(horizon, dtype=_float())
    return t / max(horizon - 1, 1)


def linear_means(start_D: jax.Array, end_D: jax.Array, horizon: int) -> jax.Array:
    """Linear trend ``μ_t = start + (end − start)·(t − 1)/(T − 1)``, shape (T, d)."""
    x_T = time_fraction(horizon)
    return start_D[None, :] + (end_D - start_D)[None, :] * x_T[:, None]


def sine_means(offset, amplitude, freq_D: jax.Array, phase_D: jax.Array, horizon: int) -> jax.Array:
    """Sine trend ``μ_t(i) = offset + amplitude · sin(2π f_i t / T + φ_i)``, shape (T, d).

    ``f_i`` counts cycles per horizon and ``φ_i`` is the phase of arm (coordinate) i.
    """
    t_T = jnp.arange(1, horizon + 1, dtype=_float())
    angle_TxD = 2 * jnp.pi * freq_D[None, :] * t_T[:, None] / horizon + phase_D[None, :]
    return offset + amplitude * jnp.sin(angle_TxD)


def bernoulli_table(key: jax.Array, p_TxD: jax.Array) -> jax.Array:
    """Independent Bernoulli draws ``R_t(i) = 1[U_t(i) < p_t(i)]`` with ``U ~ U[0, 1)``."""
    u = jax.random.uniform(key, p_TxD.shape, dtype=p_TxD.dtype)
    return (u < p_TxD).astype(p_TxD.dtype)


def alternating_sequence(horizon: int) -> jax.Array:
    """The classic sequence ``x = (1/2, −1, +1, −1, …)``: ``x_1 = 1/2``, ``x_t = (−1)^{t+1}``."""
    t = jnp.arange(1, horizon + 1)
    x = jnp.where(t % 2 == 1, 1.0, -1.0).astype(_float())
    return x.at[0].set(0.5)


def sample_segment_means(key, n_segments: int, d: int, low: float, high: float) -> jax.Array:
    """Means of each stationary segment, i.i.d. ``U[low, high]``, shape (n_segments, d)."""
    return jax.random.uniform(key, (n_segments, d), dtype=_float(), minval=low, maxval=high)


class TrendTask(NamedTuple):
    """A linear-trend task: the means at the first and the last round, (d,) each."""

    start: jax.Array
    end: jax.Array


class SineTask(NamedTuple):
    """A sine-trend task: per-arm frequency (cycles per horizon) and phase, (d,) each."""

    freq: jax.Array
    phase: jax.Array


def sample_trend_task(key, d, start, end, low, high) -> TrendTask:
    """Fixed ``start``/``end`` if given, else both i.i.d. ``U[low, high]`` per coordinate."""
    if start:
        return TrendTask(jnp.asarray(start, _float()), jnp.asarray(end, _float()))
    k_start, k_end = jax.random.split(key)
    draw = lambda k: jax.random.uniform(k, (d,), _float(), low, high)  # noqa: E731
    return TrendTask(draw(k_start), draw(k_end))


def sample_sine_task(key, d, freq_low, freq_high) -> SineTask:
    """``f_i ~ U[freq_low, freq_high]`` and ``φ_i ~ U[0, 2π)`` independently per coordinate."""
    k_freq, k_phase = jax.random.split(key)
    freq = jax.random.uniform(k_freq, (d,), _float(), freq_low, freq_high)
    phase = jax.random.uniform(k_phase, (d,), _float(), 0.0, 2 * jnp.pi)
    return SineTask(freq, phase)


def gaussian_noise(key, mean_TxD: jax.Array, sigma: float) -> jax.Array:
    """``R_t = μ_t + σ z_t`` with ``z_t ~ N(0, I)`` i.i.d."""
    return mean_TxD + sigma * standard_normal(key, mean_TxD.shape, mean_TxD.dtype)


# ----------------------------------------------------------------------------- environments


@dataclasses.dataclass(frozen=True)
class GaussianFOLEnv(GaussianFOL):
    """:class:`~rmft_theory.envs.gaussian.GaussianFOL` with the common environment interface.

    The task is the mean ``μ`` (d,); ``μ_t = μ`` for every t.
    """

    feedback: ClassVar[str] = "full"
    stationary: ClassVar[bool] = True

    @property
    def reward_range(self) -> tuple[float, float]:
        """Gaussian rewards are unbounded."""
        return (-INF, INF)

    def sample_task(self, key: jax.Array) -> jax.Array:
        """The task mean ``μ`` (d,)."""
        return gaussian.sample_task(key, self)

    def mean_rewards(self, task: jax.Array) -> jax.Array:
        """``μ_t = μ`` for every round, (T, d)."""
        return jnp.broadcast_to(task, (self.horizon, self.d))

    def sample_rewards(self, key: jax.Array, task: jax.Array) -> jax.Array:
        """``R_t = μ + L z_t``, (T, d)."""
        return gaussian.sample_rewards(key, self, task)


@dataclasses.dataclass(frozen=True)
class LinearTrendFOL:
    """Linear trend plus Gaussian noise: ``R_t = start + (end − start)(t−1)/(T−1) + σ z_t``.

    Attributes:
      d: coordinates. horizon: rounds T. sigma: noise standard deviation (0 allowed).
      start, end: fixed means at t = 1 and t = T (d values each); empty for random tasks, drawn
        i.i.d. ``U[low, high]`` per coordinate.
    """

    d: int
    horizon: int
    sigma: float = 1.0
    start: tuple = ()
    end: tuple = ()
    low: float = -1.0
    high: float = 1.0

    feedback: ClassVar[str] = "full"
    stationary: ClassVar[bool] = False
    symmetric_noise: ClassVar[bool] = True  # Gaussian noise around the mean curve

    def __post_init__(self):
        check_positive_int("d", self.d)
        check_positive_int("horizon", self.horizon)
        check_nonnegative("sigma", self.sigma)
        check_range("low", self.low, "high", self.high)
        _check_start_end(self)

    @property
    def reward_range(self) -> tuple[float, float]:
        """Unbounded if σ > 0, else the range of the means."""
        return _noisy_range(self.sigma, self.low, self.high, self.start + self.end)

    @property
    def reward_scale(self) -> float:
        """Nominal per-coordinate scale, for default learning rates: σ (1 if σ = 0)."""
        return self.sigma or 1.0

    def sample_task(self, key: jax.Array) -> TrendTask:
        """The start and end means (d,) each."""
        return sample_trend_task(key, self.d, self.start, self.end, self.low, self.high)

    def mean_rewards(self, task: TrendTask) -> jax.Array:
        """The linear mean curve, (T, d)."""
        return linear_means(task.start, task.end, self.horizon)

    def sample_rewards(self, key: jax.Array, task: TrendTask) -> jax.Array:
        """Means plus i.i.d. ``N(0, σ²)`` noise, (T, d)."""
        return gaussian_noise(key, self.mean_rewards(task), self.sigma)


@dataclasses.dataclass(frozen=True)
class SineFOL:
    """Sine trend plus Gaussian noise: ``R_t(i) = offset + A sin(2π f_i t/T + φ_i) + σ z_t(i)``.

    Per task, each coordinate draws its frequency ``f_i ~ U[freq_low, freq_high]`` (cycles per
    horizon) and phase ``φ_i ~ U[0, 2π)``.
    """

    d: int
    horizon: int
    sigma: float = 1.0
    amplitude: float = 1.0
    offset: float = 0.0
    freq_low: float = 0.5
    freq_high: float = 3.0

    feedback: ClassVar[str] = "full"
    stationary: ClassVar[bool] = False
    symmetric_noise: ClassVar[bool] = True  # Gaussian noise around the mean curve

    def __post_init__(self):
        check_positive_int("d", self.d)
        check_positive_int("horizon", self.horizon)
        check_nonnegative("sigma", self.sigma)
        check_nonnegative("amplitude", self.amplitude)
        check_finite("offset", self.offset)
        check_range("freq_low", self.freq_low, "freq_high", self.freq_high, lo=0.0)

    @property
    def reward_range(self) -> tuple[float, float]:
        """Unbounded if σ > 0, else ``offset ± amplitude``."""
        lo, hi = self.offset - self.amplitude, self.offset + self.amplitude
        return _noisy_range(self.sigma, lo, hi, ())

    @property
    def reward_scale(self) -> float:
        """Nominal per-coordinate scale: σ (the amplitude if σ = 0, else 1)."""
        return self.sigma or self.amplitude or 1.0

    def sample_task(self, key: jax.Array) -> SineTask:
        """Per-coordinate frequency and phase."""
        return sample_sine_task(key, self.d, self.freq_low, self.freq_high)

    def mean_rewards(self, task: SineTask) -> jax.Array:
        """The sine mean curve, (T, d)."""
        return sine_means(self.offset, self.amplitude, task.freq, task.phase, self.horizon)

    def sample_rewards(self, key: jax.Array, task: SineTask) -> jax.Array:
        """Means plus i.i.d. ``N(0, σ²)`` noise, (T, d)."""
        return gaussian_noise(key, self.mean_rewards(task), self.sigma)


@dataclasses.dataclass(frozen=True)
class AlternatingFOL:
    """The alternating adversarial sequence on which follow-the-leader has linear regret.

    With ``x = (1/2, −1, +1, −1, …)``, ``R_t = s · scale · (x_t, −x_t, 0, …, 0) + σ z_t``. The
    task is the sign ``s``: +1, or ±1 with probability 1/2 each when ``random_sign``.

    On the simplex, FTL follows the coordinate that just won and earns ``−scale`` in every round
    after the first (0 in the first, where it is uniform); ``S_T = ±(1/2, −1/2, 0, …)·scale``,
    so the best fixed coordinate earns ``scale/2`` and FTL's regret is ``scale·(T − 1/2)``
    (σ = 0). Hedge and FTRL at a ``1/√T`` learning rate stay ``O(√T)``.
    """

    d: int
    horizon: int
    scale: float = 1.0
    sigma: float = 0.0
    random_sign: bool = False

    feedback: ClassVar[str] = "full"
    stationary: ClassVar[bool] = False
    symmetric_noise: ClassVar[bool] = True  # Gaussian noise (or none) around the sequence

    def __post_init__(self):
        check_positive_int("d", self.d)
        if self.d < 2:
            raise ValueError(f"d must be >= 2 for the alternating sequence, got {self.d}")
        check_positive_int("horizon", self.horizon)
        check_nonnegative("scale", self.scale)
        check_nonnegative("sigma", self.sigma)
        if not isinstance(self.random_sign, bool):
            raise ValueError(f"random_sign must be True or False, got {self.random_sign!r}")

    @property
    def reward_range(self) -> tuple[float, float]:
        """``[−scale, scale]`` without noise; unbounded with it."""
        return _noisy_range(self.sigma, -self.scale, self.scale, ())

    @property
    def reward_scale(self) -> float:
        """Nominal per-coordinate scale: ``scale``."""
        return self.scale or 1.0

    def sample_task(self, key: jax.Array) -> jax.Array:
        """The sign ``s`` (a scalar)."""
        if not self.random_sign:
            return jnp.ones((), _float())
        return jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(_float())

    def mean_rewards(self, task: jax.Array) -> jax.Array:
        """``s · scale · (x_t, −x_t, 0, …)``, (T, d)."""
        x_T = self.scale * task * alternating_sequence(self.horizon)
        pad = jnp.zeros((self.horizon, self.d - 2), x_T.dtype)
        return jnp.concatenate([x_T[:, None], -x_T[:, None], pad], axis=1)

    def sample_rewards(self, key: jax.Array, task: jax.Array) -> jax.Array:
        """The sequence plus i.i.d. ``N(0, σ²)`` noise (none by default), (T, d)."""
        return gaussian_noise(key, self.mean_rewards(task), self.sigma)


@dataclasses.dataclass(frozen=True)
class BernoulliFOL:
    """Full-information Bernoulli rewards: ``R_t(i) ~ Bernoulli(p_i)`` independently.

    The task is ``p`` (d,): ``means`` if given, else i.i.d. ``U[low, high]`` per coordinate.
    """

    d: int
    horizon: int
    means: tuple = ()
    low: float = 0.0
    high: float = 1.0

    feedback: ClassVar[str] = "full"
    stationary: ClassVar[bool] = True
    symmetric_noise: ClassVar[bool] = False  # Bernoulli noise is skewed unless p = 1/2

    def __post_init__(self):
        check_positive_int("d", self.d)
        check_positive_int("horizon", self.horizon)
        check_range("low", self.low, "high", self.high, lo=0.0, hi=1.0)
        if self.means:
            object.__setattr__(self, "means", check_vector("means", self.means, self.d, 0, 1))

    @property
    def reward_range(self) -> tuple[float, float]:
        """Rewards are 0 or 1."""
        return (0.0, 1.0)

    @property
    def reward_scale(self) -> float:
        """Nominal per-coordinate scale: 1/2, the largest Bernoulli standard deviation."""
        return 0.5

    def sample_task(self, key: jax.Array) -> jax.Array:
        """The success probabilities ``p`` (d,)."""
        return sample_unit_means(key, self.d, self.means, self.low, self.high)

    def mean_rewards(self, task: jax.Array) -> jax.Array:
        """``μ_t = p`` for every round, (T, d)."""
        return jnp.broadcast_to(task, (self.horizon, self.d))

    def sample_rewards(self, key: jax.Array, task: jax.Array) -> jax.Array:
        """Independent Bernoulli draws, (T, d)."""
        return bernoulli_table(key, self.mean_rewards(task))


def sample_unit_means(key, d: int, means: tuple, low: float, high: float) -> jax.Array:
    """``means`` if given, else i.i.d. ``U[low, high]`` per arm, (d,)."""
    if means:
        return jnp.asarray(means, _float())
    return jax.random.uniform(key, (d,), _float(), low, high)


def _check_start_end(env) -> None:
    if bool(env.start) != bool(env.end):
        raise ValueError("start and end must be given together (or both left out for random)")
    if env.start:
        object.__setattr__(env, "start", check_vector("start", env.start, env.d))
        object.__setattr__(env, "end", check_vector("end", env.end, env.d))


def _noisy_range(sigma: float, low: float, high: float, fixed: tuple) -> tuple[float, float]:
    if sigma > 0:
        return (-INF, INF)
    if fixed:
        return (min(fixed), max(fixed))
    return (float(low), float(high))
