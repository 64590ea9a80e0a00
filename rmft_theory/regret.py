"""Regret definitions of THEORY §1 and the growth-exponent fit (per sequence; vmap to batch)."""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.spaces import check_space
from rmft_theory.validation import check_positive_if_concrete

COMPARATOR_SPACES = ("ball", "simplex")


def _check_comparator_space(space: str, radius=1.0) -> None:
    check_space(space)
    check_positive_if_concrete("radius", radius)
    if space not in COMPARATOR_SPACES:
        raise ValueError(
            f"space must be one of {COMPARATOR_SPACES} for static regret (the best fixed action "
            f"in an unconstrained space is unbounded), got {space!r}"
        )


def best_fixed_value(S_D: jax.Array, space: str, radius: float = 1.0) -> jax.Array:
    """``max_{π∈Π} <π, S>``: ``ρ‖S‖`` on the ball ``B(0, ρ)``, ``max_i S_i`` on the simplex."""
    _check_comparator_space(space, radius)
    if space == "ball":
        return radius * jnp.linalg.norm(S_D, axis=-1)
    return jnp.max(S_D, axis=-1)


def comparator(S_D: jax.Array, space: str, radius: float = 1.0) -> jax.Array:
    """The best fixed action in hindsight: ``ρ S/‖S‖`` on the ball, a vertex on the simplex."""
    _check_comparator_space(space, radius)
    if space == "ball":
        sq = jnp.sum(S_D * S_D)
        return jnp.where(sq > 0, radius * S_D / jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
    return jax.nn.one_hot(jnp.argmax(S_D), S_D.shape[-1], dtype=S_D.dtype)


def static_regret(
    rewards: jax.Array, policies: jax.Array, space: str, radius: float = 1.0
) -> jax.Array:
    """Static regret ``max_{π∈Π} Σ_t <π, R_t> − Σ_t <π_t, R_t>`` of one (T, d) sequence.

    THEORY §1. ``space`` is ``"ball"`` (comparator ``ρ‖S_T‖``) or ``"simplex"`` (best coordinate).
    """
    _check_shapes(rewards, policies)
    S_T = jnp.sum(rewards, axis=0)
    return best_fixed_value(S_T, space, radius) - jnp.sum(policies * rewards)


def cumulative_regret(
    rewards_TxD: jax.Array, policies_TxD: jax.Array, space: str, radius: float = 1.0
) -> jax.Array:
    """Regret curve ``Regret_t = max_π Σ_{s≤t} <π, R_s> − Σ_{s≤t} <π_s, R_s>`` for t = 1..T."""
    _check_shapes(rewards_TxD, policies_TxD)
    S_TxD = jnp.cumsum(rewards_TxD, axis=0)
    earned_T = jnp.cumsum(jnp.sum(policies_TxD * rewards_TxD, axis=-1))
    return best_fixed_value(S_TxD, space, radius) - earned_T


def _check_shapes(rewards: jax.Array, policies: jax.Array) -> None:
    if rewards.shape != policies.shape or rewards.ndim != 2:
        raise ValueError(
            "rewards and policies must both have shape (T, d); got rewards "
            f"{tuple(rewards.shape)} and policies {tuple(policies.shape)}"
        )


class GrowthFit(NamedTuple):
    """``log Regret_t = beta · log t + c``: slope, its standard error, intercept, points used,
    and the points of the fitted range left out because their regret was not positive."""

    beta: float
    se: float
    intercept: float
    n_points: int
    n_dropped: int = 0


def growth_exponent(curve_T: np.ndarray, start_fraction: float = 0.5) -> GrowthFit:
    """Least-squares fit of ``log Regret_t = β log t + c`` over the last part of the horizon.

    THEORY §1 fits over the second half (``start_fraction=0.5``). The standard error is the
    ordinary-least-squares one; the points of one curve are correlated in t, so prefer
    :func:`growth_exponent_bootstrap` over runs for a confidence interval.

    Regret can legitimately be zero or negative (a policy may beat the best fixed action so
    far), and such points have no logarithm: they are left out of the fit and counted in
    ``n_dropped``. Check it: a fit that dropped many points describes only part of the curve.
    NaN or infinite values are an error, not data, and raise ValueError.
    """
    curve = np.asarray(curve_T, dtype=np.float64)
    if curve.ndim != 1:
        raise ValueError(f"curve_T must be one-dimensional, got shape {curve.shape}")
    if not np.isfinite(curve).all():
        bad = np.flatnonzero(~np.isfinite(curve))
        raise ValueError(
            f"curve_T must be finite, got {bad.size} NaN or infinite values (first at index "
            f"{bad[0]})"
        )
    if not 0.0 <= start_fraction < 1.0:
        raise ValueError(f"start_fraction must lie in [0, 1), got {start_fraction}")
    t = np.arange(1, curve.size + 1, dtype=np.float64)
    in_range = t > start_fraction * curve.size
    sel = in_range & (curve > 0)
    if sel.sum() < 3:
        raise ValueError(
            "curve_T needs at least 3 positive values in the fitted range to fit a growth exponent"
        )
    x, y = np.log(t[sel]), np.log(curve[sel])
    X = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = max(sel.sum() - 2, 1)
    s2 = resid @ resid / dof
    se = float(np.sqrt(s2 / np.sum((x - x.mean()) ** 2)))
    n_dropped = int(in_range.sum() - sel.sum())
    return GrowthFit(float(coef[0]), se, float(coef[1]), int(sel.sum()), n_dropped)


def growth_exponent_bootstrap(
    curves_NxT: np.ndarray, seed: int = 0, n_boot: int = 500, start_fraction: float = 0.5
) -> GrowthFit:
    """β̂ of the mean regret curve over N runs, with a bootstrap-over-runs standard error.

    ``n_boot`` (at least 2) resamples of the runs; a resample whose mean curve has fewer than 3
    positive points in the fitted range is skipped, and fewer than 2 fitted resamples is an
    error. ``n_dropped`` is that of the fit to the mean curve.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 2:
        raise ValueError(
            f"n_boot must be an integer >= 2 (the standard error needs two resamples), "
            f"got {n_boot!r}"
        )
    curves = np.asarray(curves_NxT, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[0] < 2:
        raise ValueError(f"curves_NxT must have shape (N>=2, T), got {curves.shape}")
    if not np.isfinite(curves).all():
        raise ValueError(
            f"curves_NxT must be finite, got {int((~np.isfinite(curves)).sum())} NaN or "
            "infinite values"
        )
    fit = growth_exponent(curves.mean(axis=0), start_fraction)
    rng = np.random.default_rng(seed)
    betas = []
    for _ in range(n_boot):
        idx = rng.integers(0, curves.shape[0], curves.shape[0])
        try:
            betas.append(growth_exponent(curves[idx].mean(axis=0), start_fraction).beta)
        except ValueError:
            continue
    if len(betas) < 2:
        raise ValueError(
            f"curves_NxT: only {len(betas)} of {n_boot} bootstrap resamples had 3 positive "
            "points in the fitted range; the standard error needs 2"
        )
    se = float(np.std(betas, ddof=1))
    return fit._replace(se=se)
