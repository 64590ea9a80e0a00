"""Compare learned single-layer models with the closed-form FTRL weights (no plotting)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from rmft_theory.baselines.online import ftrl_policies
from rmft_theory.models.lsa import invariants
from rmft_theory.spaces import project_ball
from rmft_theory.theory import expected_norm


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


def distance_report(policies_NxTxD, reference_NxTxD) -> dict:
    """Mean ``‖π_t − π_ref,t‖`` overall, per round, per sequence, and over the mean ``‖π_ref‖``."""
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


def posterior_comparator_policies(rewards_NxTxD, sigma: float = 1.0, radius: float = 1.0):
    """The unrestricted minimiser of both objectives of THEORY §3: ``ρ E[S_T/‖S_T‖ | S_{t−1}]``.

    Beyond the linear class of THEORY §3, over *all* causal policies, and for zero-mean rewards
    ``N(0, σ² I)``:

    - imitation (objective (1)) is minimised by the conditional mean ``E[π* | R_{<t}]``;
    - the squared regret-loss (objective (2)) separates over t, because the cross terms
      ``E[<g_s, R_s><g_t, R_t>]`` (s < t) vanish, and is minimised by
      ``g_t = Σ^{-1} E[ρ‖S_T‖ R_t | R_{<t}]``, which Stein's lemma turns into the same mean.

    With ``S_T = S_{t−1} + Z``, ``Z ~ N(0, v_t I)``, ``v_t = (T − t + 1) σ²``, and
    ``∇_μ E‖μ + Z‖`` for the non-central chi mean:

        π_t = ρ · E‖Z₁‖ / (d √v_t) · ₁F₁(1/2; d/2 + 1; −‖S_{t−1}‖²/(2 v_t)) · S_{t−1},

    with ``Z₁ ~ N(0, I_d)``. It is FTRL with a round- and state-dependent rate: at small
    ``‖S_{t−1}‖`` the rate is ``η* √(T/(T−t+1))`` (``η*`` at t = 1), and for large ones the
    policy saturates at ``ρ S_{t−1}/‖S_{t−1}‖`` (follow-the-leader). Its norm never exceeds ρ.

    Args:
      rewards_NxTxD: (N, T, d) reward sequences (host arrays; SciPy in float64).
      sigma: reward standard deviation σ (isotropic covariance).
      radius: ball radius ρ.

    Returns:
      (N, T, d) float64 policies.
    """
    R = np.asarray(rewards_NxTxD, dtype=np.float64)
    _, T, d = R.shape
    S_prev = np.concatenate([np.zeros_like(R[:, :1]), np.cumsum(R, axis=1)[:, :-1]], axis=1)
    v_1xTx1 = (T - np.arange(T, dtype=np.float64))[None, :, None] * sigma**2
    x = np.sum(S_prev**2, axis=-1, keepdims=True) / (2.0 * v_1xTx1)
    coef = radius * expected_norm(d) / (d * np.sqrt(v_1xTx1)) * special.hyp1f1(0.5, d / 2 + 1, -x)
    return coef * S_prev
