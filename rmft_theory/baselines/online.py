"""Full-information baselines as pure functions of one reward history (vmap to batch).

Every policy at round t uses only ``S_{t−1} = Σ_{s<t} R_s`` (``S_0 = 0``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rmft_theory.spaces import check_space, project_ball
from rmft_theory.validation import check_positive_if_concrete


def prefix_sums(rewards_TxD: jax.Array) -> jax.Array:
    """``S_{t−1}`` for t = 1..T: the exclusive cumulative sum, with ``S_0 = 0``."""
    S_TxD = jnp.cumsum(rewards_TxD, axis=0)
    return jnp.concatenate([jnp.zeros_like(S_TxD[:1]), S_TxD[:-1]], axis=0)


def ftrl_policies(rewards: jax.Array, eta, radius: float | None = 1.0) -> jax.Array:
    """FTRL with regulariser ``‖π‖²/(2η)`` and lazy projection (THEORY §3).

    ``π_t = Proj_{B(0,ρ)}(η S_{t−1})``, ``π_1 = 0``. ``eta`` is a scalar or a (d, d) matrix
    (preconditioned FTRL, ``π_t = Proj(W S_{t−1})``); ``radius=None`` leaves it unprojected.

    Args:
      rewards: (T, d) reward sequence.
      eta: scalar learning rate (> 0) or (d, d) matrix W.
      radius: ball radius ρ (> 0), or None for the unconstrained space.

    Returns:
      (T, d) policies.

    A scalar ``eta`` and ``radius`` given as Python or NumPy numbers are checked (finite, > 0;
    a ValueError names the parameter) when called or traced; JAX arrays are not, as they may
    be tracers (``rmft.tune_eta`` passes η as a traced argument), nor is a matrix W.
    """
    check_positive_if_concrete("eta", eta)
    if radius is not None:
        check_positive_if_concrete("radius", radius)
    S_prev = prefix_sums(rewards)
    eta = jnp.asarray(eta, dtype=S_prev.dtype)
    if eta.ndim == 0:
        x = eta * S_prev
    elif eta.shape == (rewards.shape[-1],) * 2:
        x = S_prev @ eta.T
    else:
        raise ValueError(f"eta must be a scalar or a (d, d) matrix, got shape {eta.shape}")
    if radius is None:
        return x
    return jax.vmap(project_ball, in_axes=(0, None))(x, radius)


def hedge_policies(rewards: jax.Array, eta) -> jax.Array:
    """Hedge (entropic FTRL on the simplex): ``π_t = softmax(η S_{t−1})``, ``π_1`` uniform.

    ``eta`` > 0; checked as in :func:`ftrl_policies` (Python/NumPy scalars only, not JAX arrays).
    """
    check_positive_if_concrete("eta", eta)
    return jax.nn.softmax(jnp.asarray(eta) * prefix_sums(rewards), axis=-1)


def ftl_policies(rewards: jax.Array, space: str = "ball", radius: float = 1.0) -> jax.Array:
    """Follow-the-leader: the best fixed action on ``S_{t−1}``.

    Ball: ``ρ S_{t−1}/‖S_{t−1}‖`` (0 when ``S_{t−1} = 0``). Simplex: the leading vertex, ties
    split uniformly (so ``π_1`` is uniform). ``radius`` (> 0, ball only) is checked as in
    :func:`ftrl_policies`.
    """
    check_space(space)
    if space == "ball":
        check_positive_if_concrete("radius", radius)
    S_prev = prefix_sums(rewards)
    if space == "ball":
        sq = jnp.sum(S_prev**2, axis=-1, keepdims=True)
        return jnp.where(sq > 0, radius * S_prev / jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
    if space == "simplex":
        lead = (S_prev == jnp.max(S_prev, axis=-1, keepdims=True)).astype(S_prev.dtype)
        return lead / jnp.sum(lead, axis=-1, keepdims=True)
    raise ValueError("space must be 'ball' or 'simplex' for follow-the-leader, got 'unconstrained'")


def uniform_policies(rewards: jax.Array) -> jax.Array:
    """The uniform distribution on the simplex at every round."""
    return jnp.full_like(rewards, 1.0 / rewards.shape[-1])


def zero_policies(rewards: jax.Array) -> jax.Array:
    """The zero policy (centre of the ball) at every round."""
    return jnp.zeros_like(rewards)
