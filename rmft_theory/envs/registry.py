"""A name → environment registry, and the common interface as plain functions.

``make_env("bernoulli-bandit", means=(0.5, 0.6, 0.7), horizon=2000)`` builds a frozen, validated
environment config. Every registered environment has ``d``, ``horizon``, ``feedback``
(``"full"`` or ``"bandit"``), ``stationary``, ``reward_range``, ``reward_scale`` and the pure
per-example methods ``sample_task(key)``, ``mean_rewards(task)`` and ``sample_rewards(key, task)``
(see :mod:`rmft_theory.envs.processes`). The module-level functions below expose the same
interface with the argument order of :mod:`rmft_theory.envs.gaussian`, and also accept a plain
:class:`~rmft_theory.envs.gaussian.GaussianFOL`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax

from rmft_theory.envs.bandits import (
    BernoulliBandit,
    GaussianBandit,
    LinearTrendBandit,
    SineBandit,
    SwitchingBandit,
)
from rmft_theory.envs.gaussian import GaussianFOL
from rmft_theory.envs.processes import (
    AlternatingFOL,
    BernoulliFOL,
    GaussianFOLEnv,
    LinearTrendFOL,
    SineFOL,
)


class Environment(Protocol):
    """The interface every registered environment implements."""

    d: int
    horizon: int
    feedback: str
    stationary: bool

    @property
    def reward_range(self) -> tuple[float, float]: ...

    @property
    def reward_scale(self) -> float: ...

    def sample_task(self, key: jax.Array) -> Any: ...

    def mean_rewards(self, task: Any) -> jax.Array: ...

    def sample_rewards(self, key: jax.Array, task: Any) -> jax.Array: ...


class EnvEntry(NamedTuple):
    """A registered environment: its config class, default options, option aliases, summary."""

    cls: type
    summary: str
    defaults: dict | None = None
    aliases: dict | None = None
    adjust: Callable[[dict], dict] | None = None


def _gaussian_options(opts: dict) -> dict:
    """A fixed mean given without ``mean_kind`` means ``mean_kind="fixed"``."""
    if "mean" in opts and "mean_kind" not in opts:
        opts = {**opts, "mean_kind": "fixed"}
    if "mean_scale" in opts and "mean_kind" not in opts:
        opts = {**opts, "mean_kind": "random"}
    return opts


ENVS: dict[str, EnvEntry] = {}

# Options that fix a per-arm vector (or table of rows); when given without ``d``, they set it.
_VECTOR_OPTIONS = ("means", "mean", "start", "end", "segment_means")


def register_env(name: str, entry: EnvEntry) -> None:
    """Register ``entry`` under ``name`` (names are unique)."""
    if name in ENVS:
        raise ValueError(f"env name {name!r} is already registered")
    ENVS[name] = entry


def env_options(name: str) -> tuple[str, ...]:
    """The option names that ``make_env(name, ...)`` accepts."""
    entry = _entry(name)
    return tuple(f.name for f in dataclasses.fields(entry.cls)) + tuple(entry.aliases or {})


def make_env(name: str, **options) -> Environment:
    """Build the registered environment ``name``; one ValueError names any bad option.

    ``d`` may be left out when a per-arm vector (``means``, ``start``/``end``) or the rows of
    ``segment_means`` fix it.
    """
    entry = _entry(name)
    fields = {f.name: f for f in dataclasses.fields(entry.cls)}
    opts = {}
    for key, value in options.items():
        field = (entry.aliases or {}).get(key, key)
        if field not in fields:
            raise ValueError(
                f"env {name!r} has no option {key!r}; its options are {env_options(name)}"
            )
        opts[field] = value
    if entry.adjust is not None:
        opts = entry.adjust(opts)
    if "d" not in opts:
        for vec in _VECTOR_OPTIONS:
            if vec in opts and isinstance(opts[vec], (tuple, list)) and len(opts[vec]) > 0:
                first = opts[vec][0]
                # segment_means is a table: its rows have d entries.
                opts["d"] = len(first) if isinstance(first, (tuple, list)) else len(opts[vec])
                break
    opts = {**(entry.defaults or {}), **opts}
    for f in fields.values():
        if f.name not in opts and f.default is dataclasses.MISSING:
            raise ValueError(f"env {name!r} needs option {f.name!r}")
    return entry.cls(**opts)


def env_name(env) -> str:
    """The registered name of ``env``'s class (the first one registered for it)."""
    for name, entry in ENVS.items():
        if type(env) is entry.cls:
            return name
    if isinstance(env, GaussianFOL):
        return "gaussian-fol"
    raise ValueError(f"env of type {type(env).__name__} is not registered")


def as_environment(env) -> Environment:
    """``env`` itself, or a plain :class:`GaussianFOL` lifted to :class:`GaussianFOLEnv`."""
    if type(env) is GaussianFOL:
        return GaussianFOLEnv(**{f.name: getattr(env, f.name) for f in dataclasses.fields(env)})
    for attr in ("sample_task", "mean_rewards", "sample_rewards", "feedback", "horizon", "d"):
        if not hasattr(env, attr):
            raise ValueError(f"env of type {type(env).__name__} has no {attr!r}")
    return env


def sample_task(key: jax.Array, env) -> Any:
    """Draw one task's parameters (a pytree)."""
    return as_environment(env).sample_task(key)


def mean_rewards(task, env) -> jax.Array:
    """The mean table ``μ_t`` of one task, (T, d)."""
    return as_environment(env).mean_rewards(task)


def sample_rewards(key: jax.Array, env, task) -> jax.Array:
    """One realised reward table of one task, (T, d)."""
    return as_environment(env).sample_rewards(key, task)


def _entry(name: str) -> EnvEntry:
    if name not in ENVS:
        raise ValueError(
            f"env must be one of {sorted(ENVS)}, got {name!r} (one registered in your "
            "own module: import it first, or `rmft --import MODULE ...` on the command line)"
        )
    return ENVS[name]


def _register_builtin() -> None:
    register_env(
        "gaussian-fol",
        EnvEntry(
            GaussianFOLEnv,
            "full information, R_t ~ N(μ, Σ) i.i.d.",
            aliases={"means": "mean"},
            adjust=_gaussian_options,
        ),
    )
    register_env(
        "linear-trend-fol", EnvEntry(LinearTrendFOL, "full information, linear trend + noise")
    )
    register_env("sine-fol", EnvEntry(SineFOL, "full information, per-coordinate sine trend"))
    register_env(
        "alternating-fol",
        EnvEntry(AlternatingFOL, "full information, FTL-adversarial ±1 sequence", {"d": 2}),
    )
    register_env("bernoulli-fol", EnvEntry(BernoulliFOL, "full information, Bernoulli rewards"))
    register_env("gaussian-bandit", EnvEntry(GaussianBandit, "bandit, Gaussian arms"))
    register_env("bernoulli-bandit", EnvEntry(BernoulliBandit, "bandit, Bernoulli arms"))
    register_env("sine-bandit", EnvEntry(SineBandit, "bandit, sine-trend arm means"))
    register_env(
        "linear-trend-bandit", EnvEntry(LinearTrendBandit, "bandit, linear-trend arm means")
    )
    register_env(
        "switching-bandit", EnvEntry(SwitchingBandit, "bandit, piecewise-constant arm means")
    )


_register_builtin()
