"""Compare learned single-layer models with the closed-form FTRL weights (no plotting)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rmft_theory.baselines.online import ftrl_policies
from rmft_theory.models.lsa import invariants
from rmft_theory.spaces import project_ball
from rmft_theory.validation import check_positive_if_concrete


def _check_same_shape(name: str, a, reference_name: str, reference) -> None:
    """Raise a ValueError naming ``name`` unless it has the shape of ``reference``: these
    comparisons must not broadcast (a scalar η against a (d, d) matrix is not ``η I``)."""
    a_shape, ref_shape = jnp.shape(a), jnp.shape(reference)
    if a_shape != ref_shape:
        raise ValueError(
            f"{name} must have the shape of {reference_name}, {tuple(ref_shape)}, "
            f"got {tuple(a_shape)}"
        )


def relative_error(W, W_star) -> jax.Array:
    """Relative Frobenius error ``‖W − W*‖_F / ‖W*‖_F`` of two matrices of the same shape."""
    _check_same_shape("W_star", W_star, "W", W)
    W_star = jnp.asarray(W_star, dtype=jnp.asarray(W).dtype)
    return jnp.linalg.norm(W - W_star) / jnp.linalg.norm(W_star)


def invariant_report(params, W_star, reward_scale: float = 1.0) -> dict:
    """How far LSA parameters are from FTRL, through the invariants of THEORY §2.

    Returns:
      ``rel_error``: ``‖W_eff − W*‖_F/‖W*‖_F``;
      ``quad_rel``: ``‖V_R ⊗ k_R‖_F · s / ‖W*‖_F``;
      ``drift_rel``: ``‖κ v_0‖ / (s ‖W*‖_F)``;
    where ``s`` is the reward scale (one reward's standard deviation), which puts the quadratic
    term (a map from R⊗R) and the drift (a constant) in the units of the linear term, per
    token. Summed over the t − 1 past tokens the quadratic and drift terms grow like t − 1,
    while the linear term ``W_eff S_{t−1}`` of zero-mean rewards grows like ``sqrt(t − 1)``:
    their share of the output at round t is up to ``sqrt(t − 1)`` times these ratios.
    """
    check_positive_if_concrete("reward_scale", reward_scale)
    inv = invariants(params)
    _check_same_shape("W_star", W_star, "the model's W_eff", inv.W_eff)
    W_star = jnp.asarray(W_star, dtype=inv.W_eff.dtype)
    norm = jnp.linalg.norm(W_star)
    return {
        "rel_error": jnp.linalg.norm(inv.W_eff - W_star) / norm,
        "quad_rel": jnp.linalg.norm(inv.quad) * reward_scale / norm,
        "drift_rel": jnp.linalg.norm(inv.drift) / (reward_scale * norm),
    }


def policy_distance(policies_a_TxD, policies_b_TxD) -> jax.Array:
    """Mean over rounds of ``‖π_a,t − π_b,t‖`` (vmap over sequences, then average)."""
    _check_same_shape("policies_b_TxD", policies_b_TxD, "policies_a_TxD", policies_a_TxD)
    return jnp.mean(jnp.linalg.norm(policies_a_TxD - policies_b_TxD, axis=-1))


def distance_report(policies_NxTxD, reference_NxTxD) -> dict:
    """Mean ``‖π_t − π_ref,t‖`` overall, per round, per sequence, and over the mean ``‖π_ref‖``."""
    _check_same_shape("reference_NxTxD", reference_NxTxD, "policies_NxTxD", policies_NxTxD)
    dist_NxT = jnp.linalg.norm(policies_NxTxD - reference_NxTxD, axis=-1)
    distance = jnp.mean(dist_NxT)
    reference_norm = jnp.mean(jnp.linalg.norm(reference_NxTxD, axis=-1))
    return {
        "distance": distance,
        "reference_norm": reference_norm,
        "relative": distance / reference_norm,
        "distance_per_round": jnp.mean(dist_NxT, axis=0),
        "distance_per_sequence": jnp.mean(dist_NxT, axis=1),
    }


def ball_policies(apply_fn, params, rewards_NxTxD, radius: float = 1.0) -> jax.Array:
    """A model's policies ``Proj_B(g_θ,t)`` on N reward sequences, (N, T, d)."""

    def one(rewards_TxD):
        return jax.vmap(project_ball, in_axes=(0, None))(apply_fn(params, rewards_TxD), radius)

    return jax.vmap(one)(rewards_NxTxD)


def ftrl_distance(apply_fn, params, rewards_NxTxD, W_star, radius: float = 1.0) -> dict:
    """:func:`distance_report` of any model's ball policies against FTRL at ``W*`` (THEORY §3)."""
    W = jnp.asarray(W_star, dtype=rewards_NxTxD.dtype)
    ftrl_NxTxD = jax.vmap(ftrl_policies, in_axes=(0, None, None))(rewards_NxTxD, W, radius)
    return distance_report(ball_policies(apply_fn, params, rewards_NxTxD, radius), ftrl_NxTxD)
