"""Held-out distance of a model's policies to FTRL at W* (analysis.ftrl_distance)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmft_theory.analysis import (
    distance_report,
    ftrl_distance,
    invariant_report,
    policy_distance,
    relative_error,
)
from rmft_theory.envs import GaussianFOL
from rmft_theory.models import make_model, params_from_lsa, params_from_weights
from rmft_theory.theory import ftrl_weights
from rmft_theory.train import sample_batch

ENV = GaussianFOL(d=3, horizon=12)


def _rewards(n=16, seed=0):
    key_tasks, key_rewards = jax.random.split(jax.random.key(seed))
    return sample_batch(key_tasks, key_rewards, ENV, n)


def _project_np(x_TxD, radius):
    norm = np.linalg.norm(x_TxD, axis=-1, keepdims=True)
    return x_TxD * np.minimum(1.0, radius / np.maximum(norm, 1e-300))


def _reference(rewards_NxTxD, W_model, W_star, radius):
    """Plain NumPy: per-round ‖Proj(W_model S_{t−1}) − Proj(W* S_{t−1})‖ and ‖Proj(W* S_{t−1})‖."""
    R = np.asarray(rewards_NxTxD, np.float64)
    S_prev = np.concatenate([np.zeros_like(R[:, :1]), np.cumsum(R, axis=1)[:, :-1]], axis=1)
    pi_a = _project_np(S_prev @ np.asarray(W_model).T, radius)
    pi_b = _project_np(S_prev @ np.asarray(W_star).T, radius)
    return np.linalg.norm(pi_a - pi_b, axis=-1), np.linalg.norm(pi_b, axis=-1)


@pytest.mark.parametrize("radius", [1.0, 0.3])
def test_matches_numpy_reference_for_a_linear_model(radius):
    # A linear "model" g_t = W S_{t−1} with W ≠ W* (scaled and rotated), against a NumPy
    # reference of the same mean distance. Float32 accumulation over T = 12 rounds: rtol 1e-5.
    W_star = ftrl_weights(ENV.cov_matrix, ENV.horizon, radius)
    W_model = 2.5 * W_star + 0.05 * np.arange(9.0).reshape(3, 3)
    rewards = _rewards()

    def apply_fn(W, r_TxD):
        S_prev = jnp.concatenate([jnp.zeros_like(r_TxD[:1]), jnp.cumsum(r_TxD, axis=0)[:-1]])
        return S_prev @ W.T

    out = jax.jit(ftrl_distance, static_argnums=(0, 4))(
        apply_fn, jnp.asarray(W_model, jnp.float32), rewards, W_star, radius
    )
    dist_NxT, norm_NxT = _reference(rewards, W_model, W_star, radius)
    np.testing.assert_allclose(out["distance"], dist_NxT.mean(), rtol=1e-5)
    np.testing.assert_allclose(out["reference_norm"], norm_NxT.mean(), rtol=1e-5)
    np.testing.assert_allclose(out["relative"], dist_NxT.mean() / norm_NxT.mean(), rtol=1e-5)
    np.testing.assert_allclose(out["distance_per_round"], dist_NxT.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["distance_per_sequence"], dist_NxT.mean(1), rtol=1e-5)
    assert out["distance"] > 0.05  # the check is not vacuous


@pytest.mark.parametrize("name", ["lsa", "linear-attention"])
def test_models_that_implement_ftrl_are_at_distance_zero(name):
    # LSA with W_eff = W* (THEORY §2) and the same function inside a depth-2 linear-attention
    # stack (params_from_lsa) reproduce FTRL at W*; float32 round-off only: atol 1e-6 on
    # policies of norm ≈ 0.3.
    W_star = ftrl_weights(ENV.cov_matrix, ENV.horizon)
    lsa_params = params_from_weights(np.asarray(W_star, np.float32))
    rewards = _rewards()
    if name == "lsa":
        model, params = make_model("lsa", ENV.d), lsa_params
    else:
        model = make_model("linear-attention", ENV.d, depth=2)
        init = model.init(jax.random.key(0), rewards[0])["params"]
        params = params_from_lsa(init, lsa_params)

    def apply_fn(p, r):
        return model.apply({"params": p}, r)

    out = ftrl_distance(apply_fn, params, rewards, W_star)
    assert float(out["distance"]) < 1e-6
    assert 0.1 < float(out["reference_norm"]) < 1.0


def test_comparisons_refuse_to_broadcast_and_name_the_argument():
    # A scalar η against a (d, d) W_eff, or one sequence's policies against N, would broadcast
    # into a wrong number instead of an error.
    W_star = ftrl_weights(np.eye(3), 10)
    params = params_from_weights(W_star)
    assert float(invariant_report(params, W_star)["rel_error"]) < 1e-6
    for bad in (float(W_star[0, 0]), np.diag(W_star)):
        with pytest.raises(ValueError, match=r"^W_star must have the shape of"):
            invariant_report(params, bad)
        with pytest.raises(ValueError, match=r"^W_star must have the shape of"):
            relative_error(W_star, bad)
    with pytest.raises(ValueError, match=r"^reward_scale must be"):
        invariant_report(params, W_star, reward_scale=-1.0)
    pi = jnp.zeros((4, 10, 3))
    with pytest.raises(ValueError, match=r"^reference_NxTxD must have the shape of"):
        distance_report(pi, pi[0])
    with pytest.raises(ValueError, match=r"^policies_b_TxD must have the shape of"):
        policy_distance(pi[0], pi[0, :5])
