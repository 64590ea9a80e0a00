"""Multi-armed bandit environments, stationary and non-stationary (THEORY §1).

Each environment produces the full reward table ``r_t(a)`` (T, d) of one task and its mean
table ``μ_t(a)``; the learner sees only ``r_t(a_t)`` (``feedback = "bandit"``). The interface is
the one described in :mod:`rmft_theory.envs.processes`. Regret definitions live in
:mod:`rmft_theory.metrics`: pseudo-regret ``T·max_a μ_a − Σ_t μ_{a_t}`` for stationary
bandits, dynamic regret ``Σ_t max_a μ_t(a) − Σ_t μ_t(a_t)`` and the variation budget
``V_T = Σ_{t≥2} ‖μ_t − μ_{t−1}‖_∞`` for the non-stationary ones.

Non-stationary bandits take ``noise="bernoulli"`` (``r_t(a) ~ Bernoulli(μ_t(a))``, means in
[0, 1]) or ``noise="gaussian"`` (``r_t(a) = μ_t(a) + σ z``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.envs.processes import (
    INF,
    BernoulliFOL,
    SineTask,
    TrendTask,
    bernoulli_table,
    check_finite,
    check_range,
    check_vector,
    gaussian_noise,
    linear_means,
    sample_segment_means,
    sample_sine_task,
    sample_trend_task,
    sine_means,
)
from rmft_theory.validation import check_choice, check_nonnegative, check_positive_int

NOISE_KINDS = ("bernoulli", "gaussian")


def _check_common(env) -> None:
    check_positive_int("d", env.d)
    check_positive_int("horizon", env.horizon)


class _NoisyBandit:
    """Shared pieces of the non-stationary bandits: the noise model and its bounds."""

    feedback: ClassVar[str] = "bandit"
    stationary: ClassVar[bool] = False

    def _check_noise(self) -> None:
        check_choice("noise", self.noise, NOISE_KINDS)
        check_nonnegative("sigma", self.sigma)

    @property
    def mean_bounds(self) -> tuple[float, float]:
        """Means must lie in [0, 1] for Bernoulli noise; anything finite for Gaussian noise."""
        return (0.0, 1.0) if self.noise == "bernoulli" else (-INF, INF)

    @property
    def reward_range(self) -> tuple[float, float]:
        """[0, 1] for Bernoulli noise, unbounded for Gaussian noise."""
        return (0.0, 1.0) if self.noise == "bernoulli" else (-INF, INF)

    @property
    def reward_scale(self) -> float:
        """Nominal reward scale: 1/2 for Bernoulli noise, σ (or 1) for Gaussian."""
        return 0.5 if self.noise == "bernoulli" else (self.sigma or 1.0)

    def sample_rewards(self, key: jax.Array, task) -> jax.Array:
        """The full reward table ``r_t(a)`` drawn around ``μ_t(a)``, (T, d)."""
        mu_TxD = self.mean_rewards(task)
        if self.noise == "bernoulli":
            return bernoulli_table(key, mu_TxD)
        return gaussian_noise(key, mu_TxD, self.sigma)


@dataclasses.dataclass(frozen=True)
class GaussianBandit:
    """Gaussian arms ``r_t(a) = μ_a + σ z``; the task is ``μ`` (d,).

    ``means`` fixes ``μ``; otherwise ``μ ~ N(0, mean_scale² I)`` per task.
    """

    d: int
    horizon: int
    means: tuple = ()
    mean_scale: float = 1.0
    sigma: float = 1.0

    feedback: ClassVar[str] = "bandit"
    stationary: ClassVar[bool] = True

    def __post_init__(self):
        _check_common(self)
        check_nonnegative("mean_scale", self.mean_scale)
        check_nonnegative("sigma", self.sigma)
        if self.means:
            object.__setattr__(self, "means", check_vector("means", self.means, self.d))

    @property
    def reward_range(self) -> tuple[float, float]:
        """Gaussian rewards are unbounded."""
        return (-INF, INF)

    @property
    def reward_scale(self) -> float:
        """Nominal reward scale: σ (or 1)."""
        return self.sigma or 1.0

    def sample_task(self, key: jax.Array) -> jax.Array:
        """The arm means ``μ`` (d,)."""
        if self.means:
            return jnp.asarray(self.means, jnp.result_type(float))
        return self.mean_scale * jax.random.normal(key, (self.d,), jnp.result_type(float))

    def mean_rewards(self, task: jax.Array) -> jax.Array:
        """``μ_t = μ`` for every round, (T, d)."""
        return jnp.broadcast_to(task, (self.horizon, self.d))

    def sample_rewards(self, key: jax.Array, task: jax.Array) -> jax.Array:
        """The full reward table, (T, d)."""
        return gaussian_noise(key, self.mean_rewards(task), self.sigma)


@dataclasses.dataclass(frozen=True)
class BernoulliBandit(BernoulliFOL):
    """Bernoulli arms ``r_t(a) ~ Bernoulli(μ_a)``; the task is ``μ`` (d,).

    ``means`` fixes ``μ``; otherwise ``μ_a ~ U[low, high]`` i.i.d. per task. The reward process
    is :class:`~rmft_theory.envs.processes.BernoulliFOL`'s; only the feedback differs.
    """

    feedback: ClassVar[str] = "bandit"


@dataclasses.dataclass(frozen=True)
class SineBandit(_NoisyBandit):
    """Sine-trend arms ``μ_t(a) = offset + amplitude · sin(2π f_a t/T + φ_a)``.

    Per task, ``f_a ~ U[freq_low, freq_high]`` (cycles per horizon) and ``φ_a ~ U[0, 2π)``.
    """

    d: int
    horizon: int
    noise: str = "bernoulli"
    sigma: float = 1.0
    offset: float = 0.5
    amplitude: float = 0.4
    freq_low: float = 0.5
    freq_high: float = 3.0

    def __post_init__(self):
        _check_common(self)
        self._check_noise()
        check_finite("offset", self.offset)
        check_nonnegative("amplitude", self.amplitude)
        check_range("freq_low", self.freq_low, "freq_high", self.freq_high, lo=0.0)
        lo, hi = self.mean_bounds
        if self.offset - self.amplitude < lo or self.offset + self.amplitude > hi:
            raise ValueError(
                f"amplitude must keep offset ± amplitude in [{lo}, {hi}] for {self.noise} noise, "
                f"got offset={self.offset}, amplitude={self.amplitude}"
            )

    def sample_task(self, key: jax.Array) -> SineTask:
        """Per-arm frequency and phase."""
        return sample_sine_task(key, self.d, self.freq_low, self.freq_high)

    def mean_rewards(self, task: SineTask) -> jax.Array:
        """The sine mean table, (T, d)."""
        return sine_means(self.offset, self.amplitude, task.freq, task.phase, self.horizon)


@dataclasses.dataclass(frozen=True)
class LinearTrendBandit(_NoisyBandit):
    """Linear-trend arms ``μ_t(a) = start_a + (end_a − start_a)(t − 1)/(T − 1)``.

    ``start``/``end`` fix the task; otherwise both are drawn i.i.d. ``U[low, high]`` per arm.
    """

    d: int
    horizon: int
    noise: str = "bernoulli"
    sigma: float = 1.0
    start: tuple = ()
    end: tuple = ()
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self):
        _check_common(self)
        self._check_noise()
        lo, hi = self.mean_bounds
        check_range("low", self.low, "high", self.high, lo=lo, hi=hi)
        if bool(self.start) != bool(self.end):
            raise ValueError("start and end must be given together (or both left out for random)")
        if self.start:
            object.__setattr__(self, "start", check_vector("start", self.start, self.d, lo, hi))
            object.__setattr__(self, "end", check_vector("end", self.end, self.d, lo, hi))

    def sample_task(self, key: jax.Array) -> TrendTask:
        """The start and end means (d,) each."""
        return sample_trend_task(key, self.d, self.start, self.end, self.low, self.high)

    def mean_rewards(self, task: TrendTask) -> jax.Array:
        """The linear mean table, (T, d)."""
        return linear_means(task.start, task.end, self.horizon)


@dataclasses.dataclass(frozen=True)
class SwitchingBandit(_NoisyBandit):
    """Piecewise-stationary arms with ``n_switches`` abrupt changes at evenly spaced rounds.

    Round t (1-indexed) lies in segment ``k(t) = ⌊(t − 1)(n + 1)/T⌋``, ``n = n_switches``, and
    ``μ_t = m_{k(t)}``. The segment means ``m`` (n + 1, d) are ``segment_means`` if given, else
    i.i.d. ``U[low, high]`` per task. ``V_T = Σ_k ‖m_k − m_{k−1}‖_∞``.
    """

    d: int
    horizon: int
    noise: str = "bernoulli"
    sigma: float = 1.0
    n_switches: int = 3
    low: float = 0.0
    high: float = 1.0
    segment_means: tuple = ()

    def __post_init__(self):
        _check_common(self)
        self._check_noise()
        if isinstance(self.n_switches, bool) or not isinstance(self.n_switches, int):
            raise ValueError(f"n_switches must be an integer >= 0, got {self.n_switches!r}")
        if not 0 <= self.n_switches < self.horizon:
            raise ValueError(
                f"n_switches must lie in [0, horizon - 1] = [0, {self.horizon - 1}], "
                f"got {self.n_switches}"
            )
        lo, hi = self.mean_bounds
        check_range("low", self.low, "high", self.high, lo=lo, hi=hi)
        if self.segment_means:
            m = np.asarray(self.segment_means, dtype=object)
            if m.ndim != 2 or m.shape[0] != self.n_switches + 1:
                raise ValueError(
                    f"segment_means must be {self.n_switches + 1} rows (n_switches + 1) of "
                    f"{self.d} means each"
                )
            rows = tuple(check_vector("segment_means", row, self.d, lo, hi) for row in m)
            object.__setattr__(self, "segment_means", rows)

    @property
    def segment_index(self) -> np.ndarray:
        """``k(t)`` for t = 1..T, (T,) integers."""
        t0 = np.arange(self.horizon)
        return t0 * (self.n_switches + 1) // self.horizon

    @property
    def switch_rounds(self) -> tuple[int, ...]:
        """The 1-indexed rounds at which a new segment starts."""
        k = self.segment_index
        return tuple(int(t) + 1 for t in np.flatnonzero(np.diff(k)) + 1)

    def sample_task(self, key: jax.Array) -> jax.Array:
        """The segment means (n_switches + 1, d)."""
        if self.segment_means:
            return jnp.asarray(self.segment_means, jnp.result_type(float))
        return sample_segment_means(key, self.n_switches + 1, self.d, self.low, self.high)

    def mean_rewards(self, task: jax.Array) -> jax.Array:
        """The piecewise-constant mean table, (T, d)."""
        return task[jnp.asarray(self.segment_index)]
