"""Projections onto the policy spaces: exact against NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmft_theory.spaces import project, project_ball, project_simplex


def simplex_reference(x):
    """Projection by bisection on θ in Σ max(x − θ, 0) = 1 (float64, 200 halvings)."""
    lo, hi = x.min() - 1.0, x.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(x - mid, 0).sum() > 1:
            lo = mid
        else:
            hi = mid
    return np.maximum(x - 0.5 * (lo + hi), 0)


@given(
    seed=st.integers(0, 10_000),
    d=st.sampled_from([1, 2, 5, 17]),
    scale=st.sampled_from([0.01, 1.0, 30.0]),
)
def test_simplex_projection_matches_bisection(seed, d, scale):
    x = np.random.default_rng(seed).normal(size=d) * scale
    got = np.asarray(project_simplex(jnp.asarray(x, jnp.float32)))
    # float32 arithmetic on values of size `scale`: a few ulps of the largest entry.
    np.testing.assert_allclose(got, simplex_reference(x), atol=4e-7 * max(scale, 1.0) * d)
    assert got.min() >= 0 and abs(got.sum() - 1) < 1e-5


def test_simplex_projection_fixed_points_and_ties():
    np.testing.assert_allclose(
        project_simplex(jnp.array([0.2, 0.3, 0.5])), [0.2, 0.3, 0.5], atol=1e-7
    )
    np.testing.assert_allclose(project_simplex(jnp.array([1.0, 1.0])), [0.5, 0.5], atol=1e-7)
    np.testing.assert_allclose(project_simplex(jnp.array([3.0, 0.0, -1.0])), [1, 0, 0], atol=1e-7)


@pytest.mark.parametrize("radius", [0.5, 1.0, 3.0])
def test_ball_projection(radius):
    inside = jnp.array([0.1, -0.2]) * radius
    np.testing.assert_allclose(project_ball(inside, radius), inside, rtol=1e-7)
    outside = jnp.array([3.0, 4.0]) * radius
    np.testing.assert_allclose(project_ball(outside, radius), outside / 5.0, rtol=1e-6)
    # The gradient at the origin is finite (the safe norm), and equals the identity.
    jac = jax.jacfwd(project_ball)(jnp.zeros(3), radius)
    np.testing.assert_array_equal(jac, np.eye(3))


def test_project_rejects_unknown_space():
    with pytest.raises(ValueError, match="space must be one of"):
        project(jnp.zeros(2), "cube")


@pytest.mark.parametrize("radius", [-1.0, 0.0, float("nan"), float("inf"), np.float32(-2.0)])
def test_ball_projection_rejects_a_bad_radius(radius):
    # Before the check, radius = -1 gave [-0.6, -0.8]: a point outside any ball, silently.
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        project_ball(jnp.array([3.0, 4.0]), radius)
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        project(jnp.array([3.0, 4.0]), "ball", radius)
    # A Python radius is checked at trace time as well.
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        jax.jit(lambda x: project_ball(x, radius))(jnp.array([3.0, 4.0]))


def test_ball_projection_takes_a_traced_radius_unchecked():
    # A JAX-array radius may be a tracer (vmap over radii): it is not checked, and it works.
    radii = jnp.array([0.5, 1.0, 10.0])
    got = jax.vmap(project_ball, in_axes=(None, 0))(jnp.array([3.0, 4.0]), radii)
    np.testing.assert_allclose(got, [[0.3, 0.4], [0.6, 0.8], [3.0, 4.0]], rtol=1e-6)


def test_simplex_ignores_radius():
    np.testing.assert_allclose(project(jnp.array([1.0, 1.0]), "simplex", -1.0), [0.5, 0.5])
