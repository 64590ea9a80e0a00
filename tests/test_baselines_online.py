"""Full-information baselines (rmft_theory.baselines.online): their inputs are validated.

A Python or NumPy scalar ``eta`` or ``radius`` must be finite and > 0 (a ValueError naming it,
raised at call or trace time); JAX arrays, which may be tracers, pass unchecked and still work.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmft_theory.baselines.online import ftl_policies, ftrl_policies, hedge_policies

REWARDS = jax.random.normal(jax.random.key(0), (6, 3))
BAD = [-1.0, 0.0, float("nan"), float("inf"), np.float32(np.nan), np.array(-0.5), -2]


@pytest.mark.parametrize("eta", BAD)
def test_ftrl_rejects_a_bad_scalar_eta(eta):
    with pytest.raises(ValueError, match="eta must be a finite number > 0"):
        ftrl_policies(REWARDS, eta, 1.0)


@pytest.mark.parametrize("eta", BAD)
def test_hedge_rejects_a_bad_eta(eta):
    with pytest.raises(ValueError, match="eta must be a finite number > 0"):
        hedge_policies(REWARDS, eta)


@pytest.mark.parametrize("radius", BAD)
def test_ball_baselines_reject_a_bad_radius(radius):
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        ftrl_policies(REWARDS, 0.1, radius)
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        ftl_policies(REWARDS, "ball", radius)


def test_checks_run_at_trace_time_for_python_scalars():
    with pytest.raises(ValueError, match="eta must be a finite number > 0"):
        jax.jit(lambda r: hedge_policies(r, -1.0))(REWARDS)
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        jax.jit(lambda r: ftrl_policies(r, 0.1, 0.0))(REWARDS)


def test_traced_eta_is_accepted_and_matches_eager():
    # rmft.tune_eta passes η as a traced jit argument; a vmap over η is traced too.
    etas = jnp.array([0.1, 1.0])
    traced = jax.vmap(hedge_policies, in_axes=(None, 0))(REWARDS, etas)
    for eta, got in zip([0.1, 1.0], traced):
        np.testing.assert_allclose(got, hedge_policies(REWARDS, eta), rtol=1e-6, atol=1e-7)
    jitted = jax.jit(ftrl_policies, static_argnums=2)(REWARDS, jnp.float32(0.3), 1.0)
    np.testing.assert_allclose(jitted, ftrl_policies(REWARDS, 0.3, 1.0), rtol=1e-6, atol=1e-7)


def test_valid_edge_inputs_are_accepted():
    # radius None: unconstrained FTRL, π_t = η S_{t−1}.
    S_prev = np.concatenate([np.zeros((1, 3)), np.cumsum(np.asarray(REWARDS), 0)[:-1]])
    np.testing.assert_allclose(ftrl_policies(REWARDS, 0.5, None), 0.5 * S_prev, rtol=1e-6)
    # A (d, d) NumPy matrix W is preconditioned FTRL (not checked: any matrix is allowed).
    W = np.diag([0.5, 0.5, 0.5])
    np.testing.assert_allclose(ftrl_policies(REWARDS, W, None), 0.5 * S_prev, rtol=1e-6)
    # FTL on the simplex does not use the radius.
    np.testing.assert_allclose(ftl_policies(REWARDS, "simplex", -1.0)[0], np.full(3, 1 / 3))
    # An integer eta is a valid scalar.
    np.testing.assert_allclose(hedge_policies(REWARDS, 1), hedge_policies(REWARDS, 1.0))
