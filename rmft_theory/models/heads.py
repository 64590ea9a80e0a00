"""Output heads: map a model's raw outputs ``g_t`` to policies or action logits (per example).

The models return raw outputs (THEORY §3 trains on them directly); a head turns them into a
point of the policy space, so one model serves the ball, the simplex and bandits.
``radius`` and ``temperature`` are configuration (Python numbers), not data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rmft_theory.spaces import SPACES, project_ball
from rmft_theory.validation import check_choice, check_positive


def ball_head(g_D: jax.Array, radius: float) -> jax.Array:
    """Lazy projection onto the ball: ``π = Proj_{B(0,ρ)}(g)`` (FTRL's head, THEORY §3)."""
    return project_ball(g_D, radius)


def simplex_head(g_D: jax.Array, temperature: float) -> jax.Array:
    """``π = softmax(g/τ)``; with ``g = η S_{t−1}`` and τ = 1 this is Hedge (THEORY §4)."""
    return jax.nn.softmax(g_D / temperature, axis=-1)


def action_logits(g_D: jax.Array, temperature: float) -> jax.Array:
    """Normalised logits ``log softmax(g/τ)`` for ``jax.random.categorical`` and cross-entropy."""
    return jax.nn.log_softmax(g_D / temperature, axis=-1)


def policy_head(
    g_TxD: jax.Array, space: str, radius: float = 1.0, temperature: float = 1.0
) -> jax.Array:
    """Policies ``π_t`` for every round of a (T, d) output: ball, simplex or unconstrained.

    ``"ball"`` projects each ``g_t`` onto ``B(0, radius)``; ``"simplex"`` takes
    ``softmax(g_t/temperature)``; ``"unconstrained"`` returns ``g`` unchanged.
    """
    check_choice("space", space, SPACES)
    check_positive("radius", radius)
    check_positive("temperature", temperature)
    if g_TxD.ndim != 2:
        raise ValueError(f"g_TxD must have shape (T, d), got {g_TxD.shape}")
    if space == "ball":
        return jax.vmap(ball_head, in_axes=(0, None))(g_TxD, radius)
    if space == "simplex":
        return simplex_head(g_TxD, temperature)
    return jnp.asarray(g_TxD)
