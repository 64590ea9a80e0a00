"""Compare learned single-layer models with the closed-form FTRL weights (no plotting)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rmft_theory.models.lsa import invariants


def relative_error(W, W_star) -> jax.Array:
    """Relative Frobenius error ``‖W − W*‖_F / ‖W*‖_F``."""
    W_star = jnp.asarray(W_star, dtype=jnp.asarray(W).dtype)
    return jnp.linalg.norm(W - W_star) / jnp.linalg.norm(W_star)


def invariant_report(params, W_star, reward_scale: float = 1.0) -> dict:
    """How far LSA parameters are from FTRL, through the invariants of THEORY §2.

    Returns:
      ``rel_error``: ``‖W_eff − W*‖_F/‖W*‖_F``;
      ``quad_rel``: ``‖V_R ⊗ k_R‖_F · s / ‖W*‖_F``;
      ``drift_rel``: ``‖κ v_0‖ / (s ‖W*‖_F)``;
    where ``s`` is the reward scale (one reward's standard deviation), which puts the quadratic
    term (a map from R⊗R) and the drift (a constant) in the units of the linear term.
    """
    inv = invariants(params)
    W_star = jnp.asarray(W_star, dtype=inv.W_eff.dtype)
    norm = jnp.linalg.norm(W_star)
    return {
        "rel_error": jnp.linalg.norm(inv.W_eff - W_star) / norm,
        "quad_rel": jnp.linalg.norm(inv.quad) * reward_scale / norm,
        "drift_rel": jnp.linalg.norm(inv.drift) / (reward_scale * norm),
    }


def policy_distance(policies_a_TxD, policies_b_TxD) -> jax.Array:
    """Mean over rounds of ``‖π_a,t − π_b,t‖`` (vmap over sequences, then average)."""
    return jnp.mean(jnp.linalg.norm(policies_a_TxD - policies_b_TxD, axis=-1))
