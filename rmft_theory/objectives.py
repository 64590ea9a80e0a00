"""The two training objectives of THEORY §3, per sequence (vmap to batch).

Both act on the raw model outputs ``g_t`` (before any projection), as in the theory, where the
effective class is ``π_t = W S_{t−1}``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rmft_theory.regret import best_fixed_value, comparator

OBJECTIVES = ("imitation", "regret-loss")


def imitation_loss(g_TxD: jax.Array, rewards_TxD: jax.Array, radius: float = 1.0) -> jax.Array:
    """Imitation of the best action in hindsight: ``(1/T) Σ_t ‖g_t − π*‖²``, ``π* = ρ S_T/‖S_T‖``.

    THEORY §3 objective (1); the limit of the regret filter with per-trajectory noise (§4).
    """
    target_D = comparator(jnp.sum(rewards_TxD, axis=0), "ball", radius)
    return jnp.mean(jnp.sum((g_TxD - target_D) ** 2, axis=-1))


def squared_regret_loss(g_TxD: jax.Array, rewards_TxD: jax.Array, radius: float = 1.0) -> jax.Array:
    """Squared regret-loss ``(ρ‖S_T‖ − Σ_t <g_t, R_t>)²`` of one sequence (THEORY §3 obj. (2))."""
    best = best_fixed_value(jnp.sum(rewards_TxD, axis=0), "ball", radius)
    return (best - jnp.sum(g_TxD * rewards_TxD)) ** 2


def objective_fn(name: str):
    """The per-sequence loss called ``name``."""
    if name == "imitation":
        return imitation_loss
    if name == "regret-loss":
        return squared_regret_loss
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")
