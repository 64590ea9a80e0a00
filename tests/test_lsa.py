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
    # Same float32 sums; the batched program may pick other XLA kernels (summation order), so
    # allow ~8 ulps (rtol 1e-6) on outputs of size ~20; atol 1e-6 only for entries near 0.
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
    # float32: the two forms sum T = 15 terms in different orders, ≲ T·eps ≈ 2e-6 of the
    # output's scale (4e-7 measured); 1e-5 (was an unexplained 1e-4) still leaves 5× room.
    np.testing.assert_allclose(rebuilt, g, atol=1e-5 * float(jnp.abs(g).max()))


def test_invariants_ignore_the_rescaling_symmetry():
    params = random_params(jax.random.key(6), 3)
    alpha = 3.7
    rescaled = {"V": alpha * params["V"], "K": params["K"] / alpha, "Q": params["Q"]}
    for a, b in zip(invariants(params), invariants(rescaled)):
        # float32: αV and K/α are rounded once each and k = KᵀQc sums d+1 = 4 products, a few
        # ulps (3e-7 relative measured); atol 1e-6 (~30 ulps of entries ~0.3) for entries near 0.
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_params_from_weights_has_zero_even_terms():
    W = jnp.array([[0.3, -0.1], [0.2, 0.5]])
    inv = invariants(params_from_weights(W))
    np.testing.assert_array_equal(inv.W_eff, W)
    assert float(jnp.abs(inv.quad).max()) == 0.0 and float(jnp.abs(inv.drift).max()) == 0.0


def lsa_reference(params, rewards_TxD):
    """THEORY §2 term by term in float64: ``g_t = Σ_{i<t} (V e_i)(e_iᵀ Kᵀ Q c)``, with
    ``e_i = [R_i; 1]`` and ``c = e_{d+1}``."""
    V, K, Q = (np.asarray(params[name], np.float64) for name in ("V", "K", "Q"))
    R = np.asarray(rewards_TxD, np.float64)
    T, d = R.shape
    c = np.zeros(d + 1)
    c[d] = 1.0
    g = np.zeros((T, d))
    for t in range(T):
        for i in range(t):
            e_i = np.append(R[i], 1.0)
            g[t] += (V @ e_i) * (e_i @ K.T @ Q @ c)
    return g


@pytest.mark.parametrize("d", [3, 8])  # the embedding and the split layout (split_layout)
def test_flax_module_matches_the_theory_formula(d):
    """The module (its parameter names, shapes and wiring) against an independent float64
    loop over THEORY §2, not against the function it calls."""
    model = make_model("lsa", d=d, init_scale=0.5)  # far from (0, I, I): K ≠ Kᵀ, Q ≠ Qᵀ
    assert isinstance(model, LinearSelfAttention)
    rewards = jax.random.normal(jax.random.key(7), (10, d))
    params = model.init(jax.random.key(8), rewards)["params"]
    assert {k: v.shape for k, v in params.items()} == {
        "V": (d, d + 1),
        "K": (d + 1, d + 1),
        "Q": (d + 1, d + 1),
    }
    got = model.apply({"params": params}, rewards)
    want = lsa_reference(params, rewards)
    # The reference is exact in float64 on the same float32 parameters; the module's float32
    # rounding over ≤ 9 summed terms of (d+1)-term products is ≲ 1e-6 of the output scale.
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    with pytest.raises(ValueError, match="model must be one of"):
        make_model("no-such-model", d=3)


def test_flax_module_init_scale_zero_is_the_identity_start():
    params = make_model("lsa", d=2, init_scale=0.0).init(jax.random.key(0), jnp.zeros((4, 2)))
    params = params["params"]
    np.testing.assert_array_equal(params["V"], np.zeros((2, 3)))
    np.testing.assert_array_equal(params["K"], np.eye(3))
    np.testing.assert_array_equal(params["Q"], np.eye(3))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"d": 0}, "d must be an integer >= 1, got 0"),
        ({"d": -3}, "d must be an integer >= 1, got -3"),
        ({"d": 2.0}, "d must be an integer >= 1"),
        ({"d": True}, "d must be an integer >= 1"),
        ({"d": 2, "init_scale": float("nan")}, "init_scale must be a finite number >= 0"),
        ({"d": 2, "init_scale": float("inf")}, "init_scale must be a finite number >= 0"),
        ({"d": 2, "init_scale": -0.1}, "init_scale must be a finite number >= 0"),
        ({"d": 2, "init_scale": "big"}, "init_scale must be a finite number >= 0"),
    ],
)
def test_flax_module_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        LinearSelfAttention(**options)


def test_flax_module_rejects_rewards_of_the_wrong_shape():
    model = LinearSelfAttention(d=3)
    params = model.init(jax.random.key(0), jnp.zeros((5, 3)))
    for shape in [(5, 2), (4, 5, 3), (3,)]:  # wrong d; a batch (vmap instead); no time axis
        with pytest.raises(ValueError, match=r"rewards_TxD must have shape \(T, 3\)"):
            model.apply(params, jnp.zeros(shape))


def test_closed_form_in_float64(x64):
    rewards = jax.random.normal(jax.random.key(9), (40, 3), dtype=jnp.float64)
    W = eta_star(3, 40) * jnp.eye(3, dtype=jnp.float64)
    got = lsa_policies(params_from_weights(W), rewards, 1.0)
    assert got.dtype == jnp.float64
    # The same prefix sums in float64, associated differently: measured 1.1e-16 absolute
    # (5e-16 relative) on policies of norm ≤ 1; 1e-13 leaves ~200x for other CPUs, while a
    # float32 path anywhere would give ~1e-7 and fail.
    np.testing.assert_allclose(got, ftrl_policies(rewards, W, 1.0), rtol=1e-13, atol=1e-14)
