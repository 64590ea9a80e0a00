"""Output heads: ball projection, softmax simplex, action logits and the dispatcher."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmft_theory.baselines import ftrl_policies, hedge_policies
from rmft_theory.models import (
    LinearAttention,
    action_logits,
    ball_head,
    params_from_lsa,
    params_from_weights,
    policy_head,
    simplex_head,
)
from rmft_theory.spaces import project_ball

T, D = 9, 4


def outputs(seed, scale):
    return scale * jax.random.normal(jax.random.key(seed), (T, D))


@jax.jit
def all_heads(g_TxD, radius, temperature):
    """Every head on one (T, d) output; radius and temperature traced (one compile)."""
    ball = jax.vmap(ball_head, in_axes=(0, None))(g_TxD, radius)
    simplex = simplex_head(g_TxD, temperature)
    logits = action_logits(g_TxD, temperature)
    return ball, simplex, logits


@given(
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.01, 1.0, 100.0]),
    radius=st.sampled_from([0.5, 1.0, 3.0]),
    temperature=st.sampled_from([0.1, 1.0, 10.0]),
)
def test_heads_land_in_their_spaces(seed, scale, radius, temperature):
    g = outputs(seed, scale)
    ball, simplex, logits = all_heads(g, radius, temperature)
    # Norms of projected points: float32 relative 1e-6 of the radius.
    assert bool(jnp.all(jnp.linalg.norm(ball, axis=-1) <= radius * (1 + 1e-6)))
    # jit vs eager of the same projection: float32 relative 1e-6.
    want = jax.vmap(project_ball, in_axes=(0, None))(g, radius)
    np.testing.assert_allclose(ball, want, rtol=1e-6, atol=1e-6 * radius)
    assert bool(jnp.all(simplex >= 0))
    # Softmax rows sum to 1 up to float32 rounding of d = 4 terms.
    np.testing.assert_allclose(jnp.sum(simplex, axis=-1), 1.0, rtol=1e-6)
    # log softmax and softmax agree: exp(log p) = p to float32 relative precision (the tiny
    # probabilities at τ = 0.1, scale 100 are compared absolutely).
    np.testing.assert_allclose(jnp.exp(logits), simplex, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(jax.nn.logsumexp(logits, axis=-1), 0.0, atol=1e-5)


def test_simplex_head_hand_values():
    g = jnp.array([0.0, jnp.log(2.0), jnp.log(5.0)])
    np.testing.assert_allclose(simplex_head(g, 1.0), [1 / 8, 2 / 8, 5 / 8], rtol=1e-6)
    # Temperature 2 takes square roots of the unnormalised weights: 1, √2, √5.
    w = np.array([1.0, np.sqrt(2.0), np.sqrt(5.0)])
    np.testing.assert_allclose(simplex_head(g, 2.0), w / w.sum(), rtol=1e-6)
    # Shift invariance: adding a constant to g changes nothing.
    np.testing.assert_allclose(simplex_head(g + 7.0, 1.0), simplex_head(g, 1.0), rtol=1e-6)


def test_ball_head_hand_values():
    np.testing.assert_allclose(ball_head(jnp.array([3.0, 4.0]), 1.0), [0.6, 0.8], rtol=1e-6)
    inside = jnp.array([0.3, 0.4])
    np.testing.assert_array_equal(ball_head(inside, 1.0), inside)  # unchanged, bit for bit
    np.testing.assert_array_equal(ball_head(jnp.zeros(2), 1.0), [0.0, 0.0])


def test_action_logits_sample_the_simplex_policy():
    g = jnp.array([0.5, -1.0, 2.0, 0.0])
    temperature = 0.7
    n = 20_000
    actions = jax.random.categorical(jax.random.key(0), action_logits(g, temperature), shape=(n,))
    freq = np.bincount(np.asarray(actions), minlength=4) / n
    p = np.asarray(simplex_head(g, temperature))
    # Multinomial frequencies: 5 standard errors sqrt(p(1-p)/n) per action.
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-12)


def test_policy_head_dispatch_and_validation():
    g = outputs(1, 2.0)
    ball, simplex, _ = all_heads(g, 1.5, 0.5)
    # Eager dispatcher vs the jitted heads: float32 relative 1e-6.
    np.testing.assert_allclose(policy_head(g, "ball", radius=1.5), ball, rtol=1e-6)
    np.testing.assert_allclose(policy_head(g, "simplex", temperature=0.5), simplex, rtol=1e-6)
    np.testing.assert_array_equal(policy_head(g, "unconstrained"), g)
    jitted = jax.jit(policy_head, static_argnames=("space", "radius", "temperature"))
    np.testing.assert_allclose(jitted(g, "ball", radius=1.5), ball, rtol=1e-6)
    for kwargs, name in [
        ({"space": "cube"}, "space"),
        ({"space": "ball", "radius": 0.0}, "radius"),
        ({"space": "simplex", "temperature": -1.0}, "temperature"),
        ({"space": "simplex", "temperature": float("nan")}, "temperature"),
    ]:
        with pytest.raises(ValueError, match=name):
            policy_head(g, **kwargs)
    with pytest.raises(ValueError, match="g_TxD"):
        policy_head(g[0], "ball")


def test_one_model_serves_the_ball_and_the_simplex():
    # The same constructed linear-attention model (raw output η S_{t−1}) is FTRL on the ball
    # (THEORY §3) through the ball head and Hedge (THEORY §4) through the simplex head.
    eta, radius = 0.3, 1.0
    rewards = jax.random.normal(jax.random.key(2), (T, D))
    model = LinearAttention(d=D, depth=1)
    init = model.init(jax.random.key(3), rewards)["params"]
    params = params_from_lsa(init, params_from_weights(eta * jnp.eye(D)))
    g = model.apply({"params": params}, rewards)
    # float32 prefix sums of 9 unit-scale terms: 1e-5 absolute on policies of size ≤ 1.
    np.testing.assert_allclose(
        policy_head(g, "ball", radius=radius), ftrl_policies(rewards, eta, radius), atol=1e-5
    )
    np.testing.assert_allclose(policy_head(g, "simplex"), hedge_policies(rewards, eta), atol=1e-5)
