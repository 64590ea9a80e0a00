"""Validation helpers: each raises one ValueError that names the parameter and what is allowed."""

from __future__ import annotations

import math
import numbers

import numpy as np


def check_positive_int(name: str, value) -> int:
    """``value`` must be an integer ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_finite(name: str, value) -> float:
    """``value`` must be a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value) -> float:
    """``value`` must be a finite real number ≥ 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive(name: str, value) -> float:
    """``value`` must be a finite real number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_choice(name: str, value, choices) -> str:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_positive_if_concrete(name: str, value) -> None:
    """A Python or NumPy real scalar (or 0-d NumPy array) ``value`` must be finite and > 0;
    anything else (a JAX array, a tracer under ``jit``/``vmap``) passes unchecked.

    For functions that may be traced: the check runs in Python at call or trace time, so it
    adds nothing to compiled code and never waits on the device.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, numbers.Real):
        check_positive(name, value)


def is_builtin(obj) -> bool:
    """Whether ``obj`` (a class or function, e.g. a registered env class or model factory)
    ships with this library rather than with a plugin."""
    return getattr(obj, "__module__", "").startswith("rmft_theory.")


def same_definition(old, new) -> bool:
    """Whether ``new`` may replace ``old`` under one registered name: the same object, or the
    same module-level definition again (a re-run notebook cell or ``importlib.reload``); two
    lambdas or locally defined classes of one module are never taken for each other."""
    if old is new:
        return True
    qualified = [qualified_name(f) for f in (old, new)]
    return qualified[0] == qualified[1] and "<" not in qualified[0]


def qualified_name(obj) -> str:
    """``module.QualifiedName`` of a class or function."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
