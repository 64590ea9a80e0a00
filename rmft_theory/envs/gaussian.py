"""Gaussian-reward full-information online learning (THEORY §1).

A task is a mean vector ``μ``; its rewards are ``R_t = μ + L z_t`` i.i.d. with ``L Lᵀ = Σ``.
Everything acts on one task and one sequence; batch with ``jax.vmap`` over keys.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.keys import standard_normal
from rmft_theory.validation import check_choice, check_nonnegative, check_positive_int

COV_KINDS = ("isotropic", "diagonal", "full")
MEAN_KINDS = ("zero", "fixed", "random")


@dataclasses.dataclass(frozen=True)
class GaussianFOL:
    """Gaussian full-information online learning: ``R_t ~ N(μ, Σ)`` i.i.d. over ``t = 1..T``.

    Attributes:
      d: number of coordinates (actions).
      horizon: number of rounds T.
      sigma: standard deviation for ``cov_kind="isotropic"`` (``Σ = σ² I``).
      cov_kind: ``"isotropic"``, ``"diagonal"`` or ``"full"``.
      cov: for ``"diagonal"`` the d variances; for ``"full"`` a d×d positive-definite matrix as
        nested tuples. Must be empty for ``"isotropic"``.
      mean_kind: ``"zero"`` (the theory), ``"fixed"`` (``mean``) or ``"random"``
        (``μ ~ N(0, mean_scale² I)`` per task).
      mean: the fixed mean (d values), for ``mean_kind="fixed"`` only.
      mean_scale: standard deviation of random task means (> 0 for ``mean_kind="random"``
        only).
      symmetric_noise: (class attribute) True: given the task, ``R_t − μ`` has the law of
        ``μ − R_t`` (Gaussian noise), so direct training may pair R with its mirror ``2μ − R``.
    """

    d: int
    horizon: int
    sigma: float = 1.0
    cov_kind: str = "isotropic"
    cov: tuple = ()
    mean_kind: str = "zero"
    mean: tuple = ()
    mean_scale: float = 0.0

    symmetric_noise: ClassVar[bool] = True

    def __post_init__(self):
        check_positive_int("d", self.d)
        check_positive_int("horizon", self.horizon)
        check_nonnegative("sigma", self.sigma)
        check_choice("cov_kind", self.cov_kind, COV_KINDS)
        check_choice("mean_kind", self.mean_kind, MEAN_KINDS)
        check_nonnegative("mean_scale", self.mean_scale)
        # Normalise containers to tuples so that the config stays hashable.
        object.__setattr__(self, "cov", _to_tuple(self.cov))
        object.__setattr__(self, "mean", _to_tuple(self.mean))
        # Settings that only one kind reads are errors under another kind, not silently dropped.
        if self.mean_scale > 0 and self.mean_kind != "random":
            raise ValueError(
                f"mean_scale={self.mean_scale} needs mean_kind='random', got {self.mean_kind!r}"
            )
        if self.mean_kind == "random" and self.mean_scale <= 0:
            raise ValueError(
                f"mean_scale must be > 0 for mean_kind='random', got {self.mean_scale}"
            )
        if self.mean and self.mean_kind != "fixed":
            raise ValueError(f"mean needs mean_kind='fixed', got {self.mean_kind!r}")
        if self.cov and self.cov_kind == "isotropic":
            raise ValueError(
                "cov needs cov_kind='diagonal' or 'full' (isotropic uses sigma), "
                f"got cov_kind={self.cov_kind!r}"
            )
        if self.cov_kind == "isotropic" and self.sigma <= 0:
            raise ValueError(f"sigma must be > 0 for an isotropic covariance, got {self.sigma}")
        if self.cov_kind == "diagonal":
            v = np.asarray(self.cov, dtype=np.float64)
            if v.shape != (self.d,) or np.any(v <= 0) or not np.all(np.isfinite(v)):
                raise ValueError(f"cov must be {self.d} positive variances for cov_kind='diagonal'")
        if self.cov_kind == "full":
            c = np.asarray(self.cov, dtype=np.float64)
            if c.shape != (self.d, self.d):
                raise ValueError(f"cov must be a {self.d}x{self.d} matrix, got shape {c.shape}")
            if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12):
                raise ValueError("cov must be symmetric")
            if not np.all(np.isfinite(c)) or np.linalg.eigvalsh(c).min() <= 0:
                raise ValueError("cov must be positive definite")
        if self.mean_kind == "fixed":
            m = np.asarray(self.mean, dtype=np.float64)
            if m.shape != (self.d,) or not np.all(np.isfinite(m)):
                raise ValueError(f"mean must be {self.d} finite values for mean_kind='fixed'")

    @cached_property
    def cov_matrix(self) -> np.ndarray:
        """The covariance Σ as a float64 (d, d) array."""
        if self.cov_kind == "isotropic":
            return self.sigma**2 * np.eye(self.d)
        if self.cov_kind == "diagonal":
            return np.diag(np.asarray(self.cov, dtype=np.float64))
        return np.asarray(self.cov, dtype=np.float64)

    @cached_property
    def cov_factor(self) -> np.ndarray:
        """A factor L with ``L Lᵀ = Σ`` (Cholesky)."""
        return np.linalg.cholesky(self.cov_matrix)

    @property
    def reward_scale(self) -> float:
        """Root-mean variance ``sqrt(tr Σ / d)``: the natural unit of one reward coordinate."""
        return float(np.sqrt(np.trace(self.cov_matrix) / self.d))


def _to_tuple(x):
    if isinstance(x, (list, tuple, np.ndarray)):
        return tuple(_to_tuple(v) for v in x)
    return float(x)


def sample_task(key: jax.Array, env: GaussianFOL) -> jax.Array:
    """Draw one task mean ``μ`` of shape (d,)."""
    if env.mean_kind == "zero":
        return jnp.zeros((env.d,))
    if env.mean_kind == "fixed":
        return jnp.asarray(env.mean, dtype=jnp.result_type(float))
    return env.mean_scale * jax.random.normal(key, (env.d,))


def sample_rewards(key: jax.Array, env: GaussianFOL, mean_D: jax.Array) -> jax.Array:
    """Draw one reward sequence ``R_t = μ + L z_t``, shape (T, d)."""
    z_TxD = standard_normal(key, (env.horizon, env.d))
    if env.cov_kind == "isotropic":
        return mean_D[None, :] + env.sigma * z_TxD
    L = jnp.asarray(env.cov_factor, dtype=z_TxD.dtype)
    return mean_D[None, :] + z_TxD @ L.T
