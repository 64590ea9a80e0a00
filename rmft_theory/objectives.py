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
    return jnp.mean(jnp.sum((g_TxD - target_D[None, :]) ** 2, axis=-1))


def squared_regret_loss(
    g_TxD: jax.Array, rewards_TxD: jax.Array, radius: float = 1.0, baseline=0.0
) -> jax.Array:
    """Squared regret-loss ``(ρ‖S_T‖ − b − Σ_t <g_t, R_t>)²`` of one sequence (THEORY §3 obj. (2)).

    ``b`` is a control variate that does not depend on this sequence (0 by default, the plain
    objective). On zero-mean rewards independent over time, every causal model has
    ``E <g_t, R_t> = E <g_t, E[R_t | R_{<t}]> = 0``, so ``∇ E[(ρ‖S_T‖ − b − Σ_t<g_t,R_t>)²]`` is
    the same for every such b: the gradient of the plain objective. With b ≈ ``E ρ‖S_T‖`` the
    residual loses its mean (which no causal model can fit), and the gradient noise falls by
    about ``E[ρ‖S_T‖]² / Var(residual)``, a factor that depends on the model: at d = 10,
    T = 100 about 20 at W = 0 (near the initialisation) and about 580 at W*. With non-zero means
    the baseline turns the objective into the centred one.
    """
    best = best_fixed_value(jnp.sum(rewards_TxD, axis=0), "ball", radius)
    return (best - baseline - jnp.sum(g_TxD * rewards_TxD)) ** 2


def objective_fn(name: str):
    """The per-sequence loss called ``name``."""
    if name == "imitation":
        return imitation_loss
    if name == "regret-loss":
        return squared_regret_loss
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")
