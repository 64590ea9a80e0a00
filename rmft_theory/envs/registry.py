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
import jax.numpy as jnp

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
from rmft_theory.validation import qualified_name, same_definition


class Environment(Protocol):
    """The interface every registered environment implements.

    A frozen (hashable) dataclass whose fields are its options, validated in
    ``__post_init__``; vector options are tuples (:func:`make_env` turns lists into tuples, as
    TOML and ``--set`` give lists). Class attributes: ``feedback``, ``"full"`` (the learner
    sees every coordinate of ``R_t``) or ``"bandit"`` (only the pulled arm's); ``stationary``;
    for full information optionally ``symmetric_noise`` (True when, given the task,
    ``R_t − μ_t`` has the law of ``μ_t − R_t``; direct training's antithetic pairs need it).
    The three methods are pure and act on one task (batch them with ``jax.vmap``):
    ``sample_task(key)`` returns the task's parameters (a pytree of arrays),
    ``mean_rewards(task)`` the (T, d) floating-point means ``μ_t`` and
    ``sample_rewards(key, task)`` one (T, d) floating-point reward table; :func:`make_env`
    checks these shapes and dtypes by tracing them once (``jax.eval_shape``).
    """

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
    """A registered environment.

    Fields: ``cls``, the environment's dataclass (:class:`Environment`); ``summary``, one line
    for ``rmft`` listings; ``defaults``, option values used where the caller gives none;
    ``aliases``, other option names mapped to field names; ``adjust``, a function
    ``options -> options`` applied to the caller's options (after aliasing, before the
    defaults), e.g. to infer one option from another.
    """

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


FEEDBACKS = ("full", "bandit")


def register_env(name: str, entry: EnvEntry) -> None:
    """Register ``entry`` under ``name``; a ValueError names what does not fit.

    ``entry.cls`` must be a dataclass with fields ``d`` and ``horizon``, the class attribute
    ``feedback`` (one of :data:`FEEDBACKS`) and the methods of :class:`Environment`. Names are
    unique, except that the same class may register its name again (:func:`same_definition`).
    """
    if not isinstance(entry, EnvEntry):
        raise ValueError(
            f"register_env({name!r}, ...) takes an EnvEntry(cls, summary, ...), got {entry!r}"
        )
    cls = entry.cls
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"env {name!r}: EnvEntry.cls must be a dataclass class, got {cls!r}")
    fields = {f.name for f in dataclasses.fields(cls)}
    missing = [f for f in ("d", "horizon") if f not in fields]
    missing += [m for m in ("sample_task", "mean_rewards", "sample_rewards") if not hasattr(cls, m)]
    if missing:
        raise ValueError(f"env {name!r}: {cls.__name__} has no {missing} (see Environment)")
    feedback = getattr(cls, "feedback", None)
    if feedback not in FEEDBACKS:
        raise ValueError(
            f"env {name!r}: {cls.__name__}.feedback must be one of {FEEDBACKS}, got {feedback!r}"
        )
    old = ENVS.get(name)
    if old is not None and not same_definition(old.cls, cls):
        raise ValueError(f"env name {name!r} is already registered (by {qualified_name(old.cls)})")
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
    env = entry.cls(**{k: _tuples(v) for k, v in opts.items()})
    check_environment(env, name)
    return env


def _tuples(value):
    """Lists (from TOML, JSON or ``--set``) as tuples, nested, so that configs hash."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def check_environment(env, name: str | None = None) -> None:
    """Raise a ValueError naming the env unless it hashes (jit takes it as a static argument)
    and its methods give (T, d) floating-point means and rewards (traced, not run)."""
    name = name or type(env).__name__
    try:
        hash(env)
    except TypeError as err:
        raise ValueError(
            f"env {name!r} must be hashable (a frozen dataclass whose options are numbers, "
            f"strings or tuples): {err}"
        ) from None
    key = jax.random.key(0)
    task = jax.eval_shape(env.sample_task, key)
    T, d = env.horizon, env.d
    for method, out in (
        ("mean_rewards", jax.eval_shape(env.mean_rewards, task)),
        ("sample_rewards", jax.eval_shape(env.sample_rewards, key, task)),
    ):
        shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
        if shape != (T, d) or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(
                f"env {name!r}: {method} must return a floating-point (horizon, d) = "
                f"{(T, d)} array per task, got {shape} {dtype}"
            )


def env_name(env) -> str:
    """The registered name of ``env``'s class (the first one registered for it)."""
    for name, entry in ENVS.items():
        if type(env) is entry.cls:
            return name
    if type(env) is GaussianFOL:
        return "gaussian-fol"
    raise ValueError(f"env of type {type(env).__name__} is not registered")


def env_label(env) -> str:
    """:func:`env_name`, or ``module.QualifiedName`` for an environment class not registered."""
    try:
        return env_name(env)
    except ValueError:
        return qualified_name(type(env))


def is_gaussian_fol(env) -> bool:
    """Whether ``env`` is the built-in Gaussian environment (:class:`GaussianFOL` or the
    registry's :class:`GaussianFOLEnv`), whose closed forms (``W*``, THEORY §3) apply; a
    subclass may change its rewards, so it is not."""
    return type(env) in (GaussianFOL, GaussianFOLEnv)


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
