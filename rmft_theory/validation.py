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
