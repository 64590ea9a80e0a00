"""Policy spaces of THEORY §1 and their Euclidean projections (per example; vmap to batch)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rmft_theory.validation import check_positive_if_concrete

SPACES = ("ball", "simplex", "unconstrained")


def check_space(space: str) -> str:
    """Return ``space`` if it names a policy space, else raise a ValueError naming it."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    return space


def project_ball(x_D: jax.Array, radius: float) -> jax.Array:
    """Projection onto ``B(0, radius)``: ``x · min(1, radius/‖x‖)``; safe (finite gradient) at 0.

    ``radius`` must be a finite number > 0; a Python or NumPy scalar is checked (ValueError
    naming ``radius``) when the function is called or traced, a JAX array is not (it may be
    a tracer).
    """
    check_positive_if_concrete("radius", radius)
    sq = jnp.sum(x_D * x_D)
    safe_norm = jnp.sqrt(jnp.where(sq > 0, sq, 1.0))
    scale = jnp.where(sq > radius * radius, radius / safe_norm, 1.0)
    return x_D * scale


def project_simplex(x_D: jax.Array) -> jax.Array:
    """Exact Euclidean projection onto the probability simplex by sorting.

    ``argmin_{p∈Δ} ‖p − x‖`` is ``max(x − θ, 0)`` with ``θ = (Σ_{i≤ρ} u_i − 1)/ρ``, where ``u`` is
    ``x`` sorted in decreasing order and ``ρ = max{j : u_j − (Σ_{i≤j} u_i − 1)/j > 0}``
    (Held et al. 1974; Duchi et al. 2008).
    """
    d = x_D.shape[-1]
    u = jnp.sort(x_D)[::-1]
    css = jnp.cumsum(u) - 1.0
    j = jnp.arange(1, d + 1, dtype=x_D.dtype)
    cond = u - css / j > 0
    rho = jnp.max(jnp.where(cond, jnp.arange(1, d + 1), 1))
    theta = css[rho - 1] / rho.astype(x_D.dtype)
    return jnp.maximum(x_D - theta, 0.0)


def project(x_D: jax.Array, space: str, radius: float = 1.0) -> jax.Array:
    """Project one point onto ``space`` (``radius`` is used by the ball only)."""
    check_space(space)
    if space == "ball":
        return project_ball(x_D, radius)
    if space == "simplex":
        return project_simplex(x_D)
    return x_D
