"""Test configuration: strict numerics, hypothesis profiles, and a float64 switch.

* ``jax_numpy_rank_promotion="raise"`` catches silent broadcasting bugs.
* Warnings are errors (see ``pyproject.toml``).
* The ``x64`` fixture runs selected checks in float64 inside the normal run (the LSA's closed
  form, the deeper models, the LSA as EXP3 on importance-weighted bandit rewards).
* Hypothesis profiles: ``ci`` (default, few examples, derandomised) and ``dev`` (more).
"""

from __future__ import annotations

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "ci",
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled, restoring the previous setting after."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
