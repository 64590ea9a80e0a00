"""Bandit regret, non-stationarity and exploration metrics, and bootstrap intervals (THEORY §1).

Per-run functions act on one run's arrays (``mu_TxD`` the mean table ``μ_t(a)``,
``rewards_TxD`` the realised table ``r_t(a)``, ``actions_T`` the arms ``a_t``) and are pure
JAX; batch with ``jax.vmap``. Aggregates over runs (bootstrap, exploration curves, normalised
regret) are NumPy on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.regret import growth_exponent_bootstrap
from rmft_theory.validation import check_positive_int

# ----------------------------------------------------------------------------- per run (JAX)


def _chosen(table_TxD: jax.Array, actions_T: jax.Array) -> jax.Array:
    """``table_t(a_t)`` for t = 1..T."""
    if table_TxD.ndim != 2 or actions_T.shape != table_TxD.shape[:1]:
        raise ValueError(
            f"expected a (T, d) table and (T,) actions, got {tuple(table_TxD.shape)} and "
            f"{tuple(actions_T.shape)}"
        )
    return jnp.take_along_axis(table_TxD, actions_T[:, None].astype(jnp.int32), axis=1)[:, 0]


def pseudo_regret_curve(mu_TxD: jax.Array, actions_T: jax.Array) -> jax.Array:
    """Pseudo-regret against the best fixed arm, for t = 1..T.

    ``R_t = max_a Σ_{s≤t} μ_s(a) − Σ_{s≤t} μ_s(a_s)``. For a stationary bandit this is
    ``t·max_a μ_a − Σ_{s≤t} μ_{a_s}`` (THEORY §1) and is non-negative and non-decreasing.
    """
    best_T = jnp.max(jnp.cumsum(mu_TxD, axis=0), axis=-1)
    return best_T - jnp.cumsum(_chosen(mu_TxD, actions_T))


def pseudo_regret(mu_TxD: jax.Array, actions_T: jax.Array) -> jax.Array:
    """``max_a Σ_t μ_t(a) − Σ_t μ_t(a_t)`` (stationary: ``T·max_a μ_a − Σ_t μ_{a_t}``)."""
    return jnp.max(jnp.sum(mu_TxD, axis=0)) - jnp.sum(_chosen(mu_TxD, actions_T))


def dynamic_regret_curve(mu_TxD: jax.Array, actions_T: jax.Array) -> jax.Array:
    """Dynamic regret ``Σ_{s≤t} (max_a μ_s(a) − μ_s(a_s))`` for t = 1..T (THEORY §1).

    Non-negative and non-decreasing; equal to :func:`pseudo_regret_curve` for stationary means.
    """
    return jnp.cumsum(jnp.max(mu_TxD, axis=-1) - _chosen(mu_TxD, actions_T))


def dynamic_regret(mu_TxD: jax.Array, actions_T: jax.Array) -> jax.Array:
    """``Σ_t max_a μ_t(a) − Σ_t μ_t(a_t)``."""
    return jnp.sum(jnp.max(mu_TxD, axis=-1) - _chosen(mu_TxD, actions_T))


def realised_regret_curve(rewards_TxD: jax.Array, actions_T: jax.Array) -> jax.Array:
    """Realised regret ``max_a Σ_{s≤t} r_s(a) − Σ_{s≤t} r_s(a_s)`` for t = 1..T.

    The comparator is the best fixed arm on the realised table (the quantity that EXP3's bound
    controls in expectation); it can be negative.
    """
    best_T = jnp.max(jnp.cumsum(rewards_TxD, axis=0), axis=-1)
    return best_T - jnp.cumsum(_chosen(rewards_TxD, actions_T))


def realised_regret(rewards_TxD: jax.Array, actions_T: jax.Array) -> jax.Array:
    """``max_a Σ_t r_t(a) − Σ_t r_t(a_t)``."""
    return jnp.max(jnp.sum(rewards_TxD, axis=0)) - jnp.sum(_chosen(rewards_TxD, actions_T))


def variation_budget(mu_TxD: jax.Array) -> jax.Array:
    """``V_T = Σ_{t≥2} ‖μ_t − μ_{t−1}‖_∞`` (THEORY §1); 0 for stationary means."""
    return jnp.sum(jnp.max(jnp.abs(jnp.diff(mu_TxD, axis=0)), axis=-1))


def uniform_regret(mu_TxD: jax.Array, dynamic: bool = False) -> jax.Array:
    """Expected regret of playing uniformly at random: ``μ_t`` averaged over arms each round.

    Static: ``max_a Σ_t μ_t(a) − Σ_t mean_a μ_t(a)``; dynamic: ``Σ_t (max_a μ_t(a) −
    mean_a μ_t(a))``.
    """
    uniform = jnp.sum(jnp.mean(mu_TxD, axis=-1))
    if dynamic:
        return jnp.sum(jnp.max(mu_TxD, axis=-1)) - uniform
    return jnp.max(jnp.sum(mu_TxD, axis=0)) - uniform


def best_arm(mu_TxD: jax.Array) -> jax.Array:
    """The best fixed arm ``argmax_a Σ_t μ_t(a)`` (lowest index on ties)."""
    return jnp.argmax(jnp.sum(mu_TxD, axis=0)).astype(jnp.int32)


def pull_counts(actions_T: jax.Array, d: int) -> jax.Array:
    """``N_a = Σ_t 1[a_t = a]``, (d,)."""
    return jnp.sum(jax.nn.one_hot(actions_T, d, dtype=jnp.int32), axis=0)


def min_pull_fraction(actions_T: jax.Array, d: int) -> jax.Array:
    """``min_a N_a / T``: 0 if some arm is never pulled, ``1/d`` at most."""
    return jnp.min(pull_counts(actions_T, d)) / actions_T.shape[0]


def last_pull(actions_T: jax.Array, arm) -> jax.Array:
    """The last (1-indexed) round at which ``arm`` is pulled, 0 if never."""
    t_T = jnp.arange(1, actions_T.shape[0] + 1)
    return jnp.max(jnp.where(actions_T == arm, t_T, 0))


# ----------------------------------------------------------------------------- over runs (NumPy)


def never_pulled_after(last_pull_N, horizon: int) -> np.ndarray:
    """Fraction of runs that never pull the best arm after round t, for t = 0..T, (T + 1,).

    ``f(t) = (1/N) Σ_runs 1[last pull of the best arm ≤ t]``: ``f(0)`` is the fraction that
    never pulls it at all, ``f(T) = 1``. A learner that keeps exploring has ``f(t) → 0`` for
    ``t < T`` as N grows; one that locks onto a wrong arm has a plateau.
    """
    check_positive_int("horizon", horizon)
    last = np.asarray(last_pull_N)
    if last.ndim != 1 or last.size == 0:
        raise ValueError(f"last_pull_N must be a non-empty vector, got shape {last.shape}")
    counts = np.bincount(np.clip(last, 0, horizon).astype(np.int64), minlength=horizon + 1)
    return np.cumsum(counts) / last.size


def normalised_regret(regret_alg, regret_uniform, regret_ref):
    """``(R_uniform − R_alg)/(R_uniform − R_ref)``: 0 for uniform play, 1 for the reference.

    Above 1 is better than the reference, below 0 worse than uniform. Raises if the two anchors
    coincide (the scale is undefined).
    """
    den = np.asarray(regret_uniform, np.float64) - np.asarray(regret_ref, np.float64)
    if np.any(den == 0):
        raise ValueError("normalised regret needs R_uniform != R_ref")
    return (np.asarray(regret_uniform, np.float64) - np.asarray(regret_alg, np.float64)) / den


class BootstrapCI(NamedTuple):
    """A statistic over runs with its percentile-bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int


def bootstrap_ci(
    values,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    block: int = 1 << 22,
) -> BootstrapCI:
    """Percentile bootstrap interval over runs (resampling runs with replacement).

    ``values`` is (N,) or (N, k): one row per run. The statistic is ``statistic(means)`` of
    the run means (the mean itself by default); it maps (..., k) to (...), so a paired
    statistic of several per-run quantities (e.g. :func:`normalised_regret`) resamples them
    together. Vectorised NumPy: index matrices ``(n_boot, N)`` from ``default_rng(seed)`` in
    blocks of at most ``block`` entries; the interval is the ``(1 ∓ level)/2`` quantiles.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[0] == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"values must be a finite (N,) or (N, k) array, got shape {x.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    check_positive_int("n_boot", n_boot)
    stat = statistic if statistic is not None else (lambda m: m)
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    rows = max(1, block // x.size)
    boot = np.concatenate(
        [
            np.asarray(stat(x[rng.integers(0, n, (min(rows, n_boot - i), n))].mean(axis=1)))
            for i in range(0, n_boot, rows)
        ]
    )
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    estimate = float(stat(x.mean(axis=0)))
    return BootstrapCI(estimate, float(low), float(high), float(level), int(n_boot))


def mean_and_se(values_N) -> tuple[float, float]:
    """Sample mean and its standard error ``s/√N``."""
    x = np.asarray(values_N, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"values_N must be a vector of at least 2 values, got shape {x.shape}")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))


def growth_summary(curves_NxT, n_boot: int = 300, seed: int = 0) -> dict[str, float]:
    """The growth exponent of N runs' regret curves and their final regret, each with its
    standard error: ``beta``, ``beta_se`` (bootstrap over runs,
    :func:`rmft_theory.regret.growth_exponent_bootstrap`), ``final_regret`` and
    ``final_regret_se`` (``s/√N`` of the runs' final regrets)."""
    curves = np.asarray(curves_NxT, dtype=np.float64)
    fit = growth_exponent_bootstrap(curves, seed=seed, n_boot=n_boot)
    final, final_se = mean_and_se(curves[:, -1])
    return {"beta": fit.beta, "beta_se": fit.se, "final_regret": final, "final_regret_se": final_se}


def seed_summary(values) -> dict:
    """Mean, standard deviation (0 for one value), min, max and the values, over seeds."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": v.mean(),
        "std": v.std(ddof=1) if v.size > 1 else 0.0,
        "min": v.min(),
        "max": v.max(),
        "per_seed": v,
    }
