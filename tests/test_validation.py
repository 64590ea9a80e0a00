"""rmft_theory.validation: each check raises one ValueError naming the parameter and the rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmft_theory.validation import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_if_concrete,
    check_positive_int,
)

NOT_POSITIVE = [0, 0.0, -1, -1e-30, float("nan"), float("inf"), -float("inf"), True, "1", None]


@pytest.mark.parametrize("value", NOT_POSITIVE)
def test_check_positive_names_the_parameter_and_the_rule(value):
    with pytest.raises(ValueError, match=r"^eta must be a finite number > 0, got "):
        check_positive("eta", value)


@pytest.mark.parametrize("value", [1, 0.5, 1e-30, np.float32(2.0), np.int64(3)])
def test_check_positive_returns_a_float(value):
    assert check_positive("eta", value) == float(value)
    assert isinstance(check_positive("eta", value), float)


def test_check_nonnegative_allows_zero_only_beyond_positive():
    assert check_nonnegative("scale", 0) == 0.0
    for value in (-1, float("nan"), float("inf"), False, "0"):
        with pytest.raises(ValueError, match=r"^scale must be a finite number >= 0, got "):
            check_nonnegative("scale", value)


def test_check_positive_int_refuses_bools_floats_and_small_values():
    assert check_positive_int("tasks", np.int32(4)) == 4
    for value in (0, -2, 1.0, True, "2"):
        with pytest.raises(ValueError, match=r"^tasks must be an integer >= 1, got "):
            check_positive_int("tasks", value)


def test_check_choice_lists_the_choices():
    assert check_choice("space", "ball", ("ball", "simplex")) == "ball"
    with pytest.raises(ValueError, match=r"space must be one of \('ball', 'simplex'\), got 'x'"):
        check_choice("space", "x", ("ball", "simplex"))


def test_check_positive_if_concrete_checks_python_and_numpy_scalars_only():
    for value in (0.0, float("nan"), np.array(-1.0), np.float32(0.0)):
        with pytest.raises(ValueError, match=r"^radius must be a finite number > 0"):
            check_positive_if_concrete("radius", value)
    check_positive_if_concrete("radius", np.array(2.0))
    # JAX arrays and tracers pass unchecked: checking them would wait on the device, or fail
    # under jit; the caller's compiled code is unchanged.
    check_positive_if_concrete("radius", jnp.asarray(-1.0))
    seen = []

    def f(r):
        check_positive_if_concrete("radius", r)
        seen.append(type(r).__name__)
        return r * 2

    assert float(jax.jit(f)(-1.0)) == -2.0 and seen  # traced: no check
