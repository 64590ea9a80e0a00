"""The single-layer LSA of THEORY §2: exact FTRL, O(T) = O(T²), causality, invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmft_theory.baselines import ftrl_policies, prefix_sums
from rmft_theory.models import (
    LinearSelfAttention,
    invariants,
    lsa_apply,
    lsa_apply_quadratic,
    make_model,
    params_from_weights,
)
from rmft_theory.models.lsa import lsa_apply_layout, split_layout
from rmft_theory.spaces import project_ball
from rmft_theory.theory import eta_star

D_MENU, T_MENU = [1, 2, 5], [1, 7, 30]


def lsa_policies(params, rewards, radius):
    return jax.vmap(project_ball, in_axes=(0, None))(lsa_apply(params, rewards), radius)


def random_params(key, d, scale=0.5):
    k1, k2, k3 = jax.random.split(key, 3)
    E = d + 1
    return {
        "V": scale * jax.random.normal(k1, (d, E)),
        "K": scale * jax.random.normal(k2, (E, E)),
        "Q": scale * jax.random.normal(k3, (E, E)),
    }


@given(
    seed=st.integers(0, 2**16),
    d=st.sampled_from(D_MENU),
    T=st.sampled_from(T_MENU),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    radius=st.sampled_from([0.5, 1.0, 3.0]),
    matrix=st.booleans(),
)
def test_closed_form_lsa_is_ftrl(seed, d, T, scale, radius, matrix):
    key_r, key_w = jax.random.split(jax.random.key(seed))
    rewards = scale * jax.random.normal(key_r, (T, d))
    if matrix:
        A = jax.random.normal(key_w, (d, d))
        W = 0.1 * (A @ A.T + jnp.eye(d))  # any matrix works; a PD one is the FTRL-like case
    else:
        W = eta_star(d, max(T, 1)) * jnp.eye(d)
    expected = ftrl_policies(rewards, W, radius)
    params = params_from_weights(W)
    eager = lsa_policies(params, rewards, radius)
    jitted = jax.jit(lsa_policies, static_argnums=2)(params, rewards, radius)
    # float32: prefix sums of T ≤ 30 terms of size `scale`, times ‖W‖ ≤ ~3, then projected
    # onto a ball of radius ≤ 3: relative 1e-5 of the policy scale.
    tol = 1e-5 * max(radius, 1.0)
    np.testing.assert_allclose(eager, expected, atol=tol, rtol=1e-5)
    np.testing.assert_allclose(jitted, expected, atol=tol, rtol=1e-5)


@given(seed=st.integers(0, 2**16), d=st.sampled_from(D_MENU), T=st.sampled_from(T_MENU))
def test_prefix_sum_form_equals_quadratic_form(seed, d, T):
    key_p, key_r = jax.random.split(jax.random.key(seed))
    params = random_params(key_p, d)
    rewards = jax.random.normal(key_r, (T, d))
    fast, slow = lsa_apply(params, rewards), lsa_apply_quadratic(params, rewards)
    # Same sum in a different order (float32): relative 1e-5 of the output's scale.
    np.testing.assert_allclose(fast, slow, atol=1e-5 * (1 + float(jnp.abs(slow).max())))


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("d", [1, 3, 8, 12])
def test_both_prefix_sum_layouts_equal_the_quadratic_form(d, split):
    """:func:`lsa_apply` picks a layout by d (:func:`split_layout`); each must be the model."""
    key_p, key_r = jax.random.split(jax.random.key(d))
    params = random_params(key_p, d)
    rewards = jax.random.normal(key_r, (30, d))
    fast, slow = lsa_apply_layout(params, rewards, split), lsa_apply_quadratic(params, rewards)
    # Same sum in a different order (float32): relative 1e-5 of the output's scale.
    np.testing.assert_allclose(fast, slow, atol=1e-5 * (1 + float(jnp.abs(slow).max())))


def test_split_layout_rule():
    """The split layout at d = 2 and multiples of 4 from 8 (measured; lsa.split_layout)."""
    chosen = [n for n in range(1, 33) if split_layout(n)]
    assert chosen == [2, 8, 12, 16, 20, 24, 28, 32]


def test_vmap_equals_python_loop():
    params = random_params(jax.random.key(0), 3)
    rewards = jax.random.normal(jax.random.key(1), (6, 12, 3))
    batched = jax.vmap(lsa_apply, in_axes=(None, 0))(params, rewards)
    looped = jnp.stack([lsa_apply(params, r) for r in rewards])
    np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("apply", [lsa_apply, lsa_apply_quadratic])
def test_causality_through_gradients(apply):
    params = random_params(jax.random.key(2), 3)
    rewards = jax.random.normal(jax.random.key(3), (9, 3))
    jac = jax.jacrev(lambda r: apply(params, r))(rewards)  # (T, d, T, d): dg_t / dR_s
    T = rewards.shape[0]
    for t in range(T):
        assert np.all(np.asarray(jac[t, :, t:, :]) == 0.0), f"g_{t} depends on R_s, s >= t"
        if t > 0:
            assert np.any(np.asarray(jac[t, :, :t, :]) != 0.0)


def test_invariant_decomposition_reconstructs_output():
    # THEORY §2: g_t = W_eff S_{t−1} + Σ_{i<t} quad[:, b, c] R_{i,b} R_{i,c} + drift·(t−1).
    params = random_params(jax.random.key(4), 4)
    rewards = jax.random.normal(jax.random.key(5), (15, 4))
    inv = invariants(params)
    outer = jnp.einsum("tb,tc->tbc", rewards, rewards)
    quad_prev = prefix_sums(jnp.einsum("abc,tbc->ta", inv.quad, outer))
    t_minus_1 = jnp.arange(15, dtype=rewards.dtype)[:, None]
    rebuilt = prefix_sums(rewards) @ inv.W_eff.T + quad_prev + t_minus_1 * inv.drift[None, :]
    g = lsa_apply(params, rewards)
    np.testing.assert_allclose(rebuilt, g, atol=1e-4 * float(jnp.abs(g).max()))


def test_invariants_ignore_the_rescaling_symmetry():
    params = random_params(jax.random.key(6), 3)
    alpha = 3.7
    rescaled = {"V": alpha * params["V"], "K": params["K"] / alpha, "Q": params["Q"]}
    for a, b in zip(invariants(params), invariants(rescaled)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_params_from_weights_has_zero_even_terms():
    W = jnp.array([[0.3, -0.1], [0.2, 0.5]])
    inv = invariants(params_from_weights(W))
    np.testing.assert_array_equal(inv.W_eff, W)
    assert float(jnp.abs(inv.quad).max()) == 0.0 and float(jnp.abs(inv.drift).max()) == 0.0


def test_flax_module_matches_pure_function_and_registry():
    model = make_model("lsa", d=3)
    assert isinstance(model, LinearSelfAttention)
    rewards = jax.random.normal(jax.random.key(7), (10, 3))
    params = model.init(jax.random.key(8), rewards)["params"]
    np.testing.assert_allclose(model.apply({"params": params}, rewards), lsa_apply(params, rewards))
    with pytest.raises(ValueError, match="model must be one of"):
        make_model("no-such-model", d=3)


def test_closed_form_in_float64(x64):
    rewards = jax.random.normal(jax.random.key(9), (40, 3), dtype=jnp.float64)
    W = eta_star(3, 40) * jnp.eye(3, dtype=jnp.float64)
    got = lsa_policies(params_from_weights(W), rewards, 1.0)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, ftrl_policies(rewards, W, 1.0), rtol=1e-13, atol=1e-14)
