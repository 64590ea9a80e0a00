"""Batched rollouts (THEORY §4): regret bookkeeping, exploration laws, batching, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmft_theory import rollout as rollout_module
from rmft_theory.baselines import ftrl_policies
from rmft_theory.envs import GaussianFOL
from rmft_theory.models import lsa_apply, params_from_weights
from rmft_theory.regret import static_regret
from rmft_theory.rollout import (
    Exploration,
    earned_from_draws,
    explore,
    horizon_blocks,
    make_rollout,
    noise_free_policies,
    policies_from_draws,
    rollout,
    rollout_scores,
    rollout_task,
    task_chunk_size,
    task_draws,
    task_elements,
    trajectory_regrets,
)

M, L, T, D = 3, 5, 7, 3  # one fixed shape: every test shares the compiled rollouts


def linear_model(params, rewards_TxD):
    """A tiny model with the registry's apply signature: ``g_t = W S_{t−1} + b``."""
    S_prev = jnp.cumsum(rewards_TxD, axis=0) - rewards_TxD
    return S_prev @ params["W"].T + params["b"][None, :]


PARAMS = {"W": 0.3 * jnp.eye(D) + 0.05, "b": jnp.array([0.2, -0.1, 0.0])}
REWARDS = jax.random.normal(jax.random.key(0), (M, T, D)) + jnp.array([[[0.3, 0.0, -0.2]]])
EXPLORATIONS = [
    Exploration("per-step", 0.7, space="ball", radius=1.5),
    Exploration("per-trajectory", 2.0, space="ball", radius=1.0),
    Exploration("per-trajectory", 0.5, space="simplex"),
    Exploration("actions", temperature=0.5, space="simplex"),
    Exploration("none", space="ball", radius=0.8),
]
ROLLOUTS = {e: make_rollout(linear_model, e, L) for e in EXPLORATIONS}


@given(seed=st.integers(0, 2**16), which=st.sampled_from(range(len(EXPLORATIONS))))
def test_rollout_regret_equals_static_regret_on_stored_trajectories(seed, which):
    e = EXPLORATIONS[which]
    out = ROLLOUTS[e](PARAMS, REWARDS, jax.random.key(seed))
    assert out.policies.shape == (M, L, T, D) and out.rewards.shape == (M, T, D)
    np.testing.assert_array_equal(out.rewards, REWARDS)
    recomputed = jax.vmap(
        jax.vmap(lambda r, p: static_regret(r, p, e.space, e.radius), in_axes=(None, 0))
    )(out.rewards, out.policies)
    # float32 sums of T·d = 21 products of O(1) terms, in a different order: 1e-5 relative.
    np.testing.assert_allclose(out.regret, recomputed, rtol=1e-5, atol=1e-5)
    # earned is each trajectory's total reward Σ_t <π_t, R_t>, here summed in float64 NumPy
    # (the float32 sums of 21 O(1) products differ by rounding: 1e-5).
    earned = np.einsum(
        "mltd,mtd->ml", np.asarray(out.policies, np.float64), np.asarray(out.rewards, np.float64)
    )
    np.testing.assert_allclose(out.earned, earned, rtol=1e-5, atol=1e-5)
    # Policies lie in the policy space (float32 projection: 1e-6 relative slack).
    if e.space == "ball":
        assert float(jnp.linalg.norm(out.policies, axis=-1).max()) <= e.radius * (1 + 1e-6)
    else:
        assert float(out.policies.min()) >= 0.0
        np.testing.assert_allclose(out.policies.sum(-1), 1.0, atol=1e-6)


def test_actions_are_one_hot_and_recorded():
    e = EXPLORATIONS[3]
    out = ROLLOUTS[e](PARAMS, REWARDS, jax.random.key(1))
    np.testing.assert_array_equal(out.policies, jax.nn.one_hot(out.actions, D))
    gaussian = ROLLOUTS[EXPLORATIONS[1]](PARAMS, REWARDS, jax.random.key(1))
    assert int(gaussian.actions.max()) == -1  # no discrete actions for Gaussian exploration


def test_noise_free_rollout_of_closed_form_lsa_is_ftrl():
    # THEORY §2–3: the LSA with params_from_weights(W) is FTRL π_t = Proj(W S_{t−1}).
    W = 0.2 * jnp.eye(D) + 0.03
    e = EXPLORATIONS[4]
    out = rollout(lsa_apply, params_from_weights(W), REWARDS, jax.random.key(2), e, 2)
    expected = jax.vmap(ftrl_policies, in_axes=(0, None, None))(REWARDS, W, e.radius)
    # float32 prefix sums of ≤ 7 unit terms times ‖W‖ ≲ 0.4: 1e-6 absolute.
    for l in range(2):
        np.testing.assert_allclose(out.policies[:, l], expected, atol=1e-6)


def test_per_trajectory_noise_is_constant_in_time_and_per_step_is_not():
    # A huge radius switches the projection off, exposing s·ξ (resp. s·ξ_t) directly.
    g = linear_model(PARAMS, REWARDS[0])
    key = jax.random.key(3)
    per_traj = explore(key, g, Exploration("per-trajectory", 2.0, radius=1e6)) - g
    per_step = explore(key, g, Exploration("per-step", 2.0, radius=1e6)) - g
    # g + sξ − g: float32 cancellation on O(2) numbers, 1e-6 absolute.
    np.testing.assert_allclose(per_traj, jnp.broadcast_to(per_traj[0], per_traj.shape), atol=1e-6)
    assert float(jnp.abs(per_step[1:] - per_step[:-1]).min(axis=-1).max()) > 1e-3


@pytest.mark.parametrize("kind", ["per-step", "per-trajectory"])
def test_gaussian_noise_has_the_stated_law(kind):
    # ξ ~ N(0, s²I): over n draws the sample mean is within 5 standard errors of 0 and the
    # sample variance within 5 standard errors (√(2/n)·s²) of s².
    s, n = 1.7, 4000
    g = jnp.zeros((T, D))
    e = Exploration(kind, s, radius=1e6)
    x = jax.vmap(explore, in_axes=(0, None, None))(jax.random.split(jax.random.key(4), n), g, e)
    x = np.asarray(x[:, 0, :])  # one round: independent draws across trajectories
    assert np.all(np.abs(x.mean(0)) < 5 * s / np.sqrt(n))
    assert np.all(np.abs(x.var(0) - s**2) < 5 * s**2 * np.sqrt(2 / n))


def test_action_sampling_follows_softmax():
    # a_t ~ softmax(g_t/τ): empirical frequencies within 5 binomial standard errors.
    n, tau = 6000, 0.5
    g = jnp.array([[0.3, -0.2, 0.1]])
    e = Exploration("actions", temperature=tau, space="simplex")
    onehot = jax.vmap(explore, in_axes=(0, None, None))(
        jax.random.split(jax.random.key(5), n), g, e
    )
    freq = np.asarray(onehot[:, 0].mean(0))
    p = np.asarray(jax.nn.softmax(g[0] / tau))
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n))
    np.testing.assert_allclose(noise_free_policies(g, e)[0], p, rtol=1e-6)


def test_vmap_over_tasks_equals_a_loop_and_jit_equals_eager():
    e = EXPLORATIONS[1]
    key = jax.random.key(6)
    batched = ROLLOUTS[e](PARAMS, REWARDS, key)
    eager = rollout(linear_model, PARAMS, REWARDS, key, e, L)
    keys = jax.random.split(key, M)
    for m in range(M):
        one = rollout_task(linear_model, PARAMS, REWARDS[m], keys[m], e, L)
        # Same per-task computation batched or not: float32 reassociation only, 1e-6.
        np.testing.assert_allclose(batched.policies[m], one.policies, atol=1e-6)
        np.testing.assert_allclose(batched.regret[m], one.regret, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(batched.regret, eager.regret, rtol=1e-6, atol=1e-5)


def test_per_step_rollout_compiled_with_its_options_equals_the_default_compilation():
    # make_rollout compiles per-step noise with runtime.compiler_options (on CPU: reductions
    # left to XLA's loops instead of YNNPACK): the same draws and maths, summed in another
    # order. float32 sums of d = 3 (norms) and T = 7 (regret) O(1) terms: 1e-6 relative.
    e = EXPLORATIONS[0]
    key = jax.random.key(9)
    library = ROLLOUTS[e](PARAMS, REWARDS, key)
    default = jax.jit(lambda p, r, k: rollout(linear_model, p, r, k, e, L))(PARAMS, REWARDS, key)
    np.testing.assert_allclose(library.policies, default.policies, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(library.regret, default.regret, rtol=1e-6, atol=1e-5)


def test_rollouts_are_deterministic_given_keys():
    e = EXPLORATIONS[0]
    a = ROLLOUTS[e](PARAMS, REWARDS, jax.random.key(7))
    b = ROLLOUTS[e](PARAMS, REWARDS, jax.random.key(7))
    c = ROLLOUTS[e](PARAMS, REWARDS, jax.random.key(8))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.policies, c.policies)


def test_trajectory_regrets_helper():
    out = ROLLOUTS[EXPLORATIONS[1]](PARAMS, REWARDS, jax.random.key(9))
    got = trajectory_regrets(out.rewards[0], out.policies[0], "ball", 1.0)
    np.testing.assert_allclose(got, out.regret[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scale": -0.1}, "noise_scale"),
        ({"kind": "gumbel"}, "noise"),
        ({"temperature": 0.0}, "temperature"),
        ({"space": "unconstrained"}, "space"),
        ({"radius": 0.0}, "radius"),
        ({"kind": "actions", "space": "ball"}, "space"),
    ],
)
def test_exploration_errors_name_the_parameter(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field} must"):
        Exploration(**kwargs)


def test_rollout_errors_name_the_parameter():
    e = EXPLORATIONS[1]
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"^rollouts must"):
        rollout(linear_model, PARAMS, REWARDS, key, e, 0)
    with pytest.raises(ValueError, match=r"^rewards must have shape \(M, T, d\)"):
        rollout(linear_model, PARAMS, REWARDS[0], key, e, L)
    with pytest.raises(ValueError, match=r"^horizon must"):
        rollout(linear_model, PARAMS, REWARDS[:, :0], key, e, L)
    with pytest.raises(ValueError, match=r"^model outputs must have the rewards' shape"):
        rollout(lambda p, r: r[:, :2], PARAMS, REWARDS, key, e, L)
    with pytest.raises(ValueError, match=r"^model outputs must be floating point, got dtype int"):
        rollout(lambda p, r: r.astype(jnp.int32), PARAMS, REWARDS, key, e, L)
    with pytest.raises(ValueError, match=r"^horizon must"):
        GaussianFOL(d=D, horizon=0)


# ---------------------------------------------------------------- score-only rollouts


@pytest.mark.parametrize("which", range(len(EXPLORATIONS)))
def test_rollout_scores_equal_rollout_without_policies(which):
    # rollout_scores draws the same numbers as rollout and scores without forming policies
    # (the collapsed (T, L) form on the ball with per-trajectory noise, a fused pass for
    # per-step noise): equal up to float32 reassociation of T·d = 21 O(1) products, 1e-5.
    e = EXPLORATIONS[which]
    key = jax.random.key(10)
    full = ROLLOUTS[e](PARAMS, REWARDS, key)
    scores = jax.jit(lambda k: rollout_scores(linear_model, PARAMS, REWARDS, k, e, L))(key)
    np.testing.assert_allclose(scores.regret, full.regret, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores.earned, full.earned, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["per-trajectory", "per-step"])
def test_collapsed_earned_equals_direct_form_with_active_projection(kind):
    # Noise of scale 1.5 on a ball of radius 2.5: some policies are projected, some are not,
    # so both branches of the projection scale are exercised.
    e = Exploration(kind, 1.5, space="ball", radius=2.5)
    g = linear_model(PARAMS, REWARDS[0])
    draws = task_draws(jax.random.key(11), g, e, 64)
    pi = policies_from_draws(g, draws, e)
    norms = np.linalg.norm(
        np.asarray(g[None] + (draws[:, None] if draws.ndim == 2 else draws)), axis=-1
    )
    assert 0.05 < float(np.mean(norms > e.radius)) < 0.999
    direct = jnp.einsum("ltd,td->l", pi, REWARDS[0])
    # float32 sums of T = 7 terms <π_t, R_t> of size ≤ 2.5·‖R_t‖ ≲ 10 (≤ 70 in all), summed
    # in another order: 5e-5 absolute (≈ 6 ulp of the largest sum).
    np.testing.assert_allclose(earned_from_draws(g, REWARDS[0], draws, e), direct, atol=5e-5)


@given(horizon=st.integers(1, 5000), n_rollouts=st.integers(1, 2**16))
def test_horizon_blocks_cover_the_horizon_with_little_padding(horizon, n_rollouts):
    n_blocks, block = horizon_blocks(horizon, n_rollouts)
    assert block >= 1 and (block - 1) * n_rollouts < rollout_module.BLOCK_ELEMENTS
    # The fewest blocks of BLOCK_ELEMENTS pairs that hold all T·L, or one round per block.
    capacity, pairs = rollout_module.BLOCK_ELEMENTS, horizon * n_rollouts
    assert n_blocks == 1 or (n_blocks - 1) * capacity < pairs  # no more blocks than needed
    assert n_blocks == horizon or pairs <= n_blocks * capacity  # enough, unless one per round
    assert 0 <= n_blocks * block - horizon < n_blocks  # under one padded round per block


def test_an_empty_horizon_is_one_empty_block():
    assert horizon_blocks(0, 64) == (1, 0)
    e = Exploration("per-trajectory", 1.0, space="ball")
    earned = earned_from_draws(jnp.zeros((0, D)), jnp.zeros((0, D)), jnp.ones((L, D)), e)
    np.testing.assert_array_equal(earned, np.zeros(L))  # an empty sum, exactly 0


@pytest.mark.parametrize("block_elements", [2 * 64, 3 * 64, 7 * 64])
def test_collapsed_earned_is_the_same_in_blocks_of_rounds(monkeypatch, block_elements):
    # T = 7 rounds, L = 64, in blocks of 2 rounds (4 blocks, one padded round), 3 (3 blocks, two
    # padded) and 7 (one block, no scan). Zero-padded rounds add exactly 0; only the order of
    # the float32 sums over t changes: the same 5e-5 as the direct-form test above.
    monkeypatch.setattr(rollout_module, "BLOCK_ELEMENTS", block_elements)
    e = Exploration("per-trajectory", 1.5, space="ball", radius=2.5)
    g = linear_model(PARAMS, REWARDS[0])
    draws = task_draws(jax.random.key(11), g, e, 64)
    direct = jnp.einsum("ltd,td->l", policies_from_draws(g, draws, e), REWARDS[0])
    blocked = jax.jit(lambda g, r, n: earned_from_draws(g, r, n, e))(g, REWARDS[0], draws)
    np.testing.assert_allclose(blocked, direct, atol=5e-5)
    assert task_elements(e, 64, T, D) == 64 * (block_elements // 64)


def test_rollout_scores_do_not_depend_on_the_task_chunk():
    e = EXPLORATIONS[0]
    key = jax.random.key(12)
    runs = [
        rollout_scores(linear_model, PARAMS, REWARDS, key, e, L, task_chunk=c) for c in (1, 2, M)
    ]
    # Same draws and maths per task; XLA may vectorise a chunk of 1 and of 3 tasks differently,
    # which moves float32 results by an ulp or so: 1e-6 relative.
    for r in runs[1:]:
        np.testing.assert_allclose(r.regret, runs[0].regret, rtol=1e-6, atol=1e-6)


def test_explore_is_the_first_trajectory_of_a_task():
    g = linear_model(PARAMS, REWARDS[0])
    key = jax.random.key(13)
    for e in EXPLORATIONS:
        one = explore(key, g, e)
        task = rollout_task(lambda p, r: g, PARAMS, REWARDS[0], key, e, 1).policies[0]
        np.testing.assert_array_equal(one, task)


def test_task_draws_shapes():
    g = jnp.zeros((T, D))
    key = jax.random.key(14)
    shapes = {e.kind: task_draws(key, g, e, L).shape for e in EXPLORATIONS}
    assert shapes == {
        "per-step": (L, T, D),
        "per-trajectory": (L, D),
        "actions": (L, T),
        "none": (L, D),
    }
    assert task_chunk_size(10, 2**30) == 2 and task_chunk_size(10, 1) == 10
    assert task_chunk_size(1, 2**30) == 1


def test_task_chunk_size_prefers_a_divisor_of_the_task_count(monkeypatch):
    """No remainder batch when a divisor lies within half the chunk; the chunk itself if not."""
    from rmft_theory import rollout

    # The CPU chunk on every backend, so that the sizes below hold on accelerators too.
    monkeypatch.setattr(rollout, "ACCELERATOR_CHUNK_ELEMENTS", rollout.CHUNK_ELEMENTS)
    per_trajectory = task_elements(Exploration("per-trajectory"), 64, 200, 8)  # 163 per chunk
    assert task_chunk_size(1024, per_trajectory) == 128
    assert task_chunk_size(978, per_trajectory) == 163  # 6 × 163
    assert task_chunk_size(1000, per_trajectory) == 125  # the largest divisor, not 100
    assert task_chunk_size(997, per_trajectory) == 163  # prime: the remainder stays
    assert task_chunk_size(346, per_trajectory) == 163  # 2 × 173: no divisor down to 82
    assert task_chunk_size(64, task_elements(Exploration("per-step"), 64, 200, 8)) == 16  # not 20
    assert task_chunk_size(10, 1, max_tasks=3) == 2 and task_chunk_size(7, 1, max_tasks=3) == 3
    assert task_chunk_size(10, 1, max_tasks=1) == 1  # an explicit bound of one task is kept
    assert task_chunk_size(3, 2**30) == 2  # never one task per chunk


def test_chunk_elements_by_backend():
    from rmft_theory import rollout

    assert rollout.chunk_elements("cpu") == rollout.CHUNK_ELEMENTS == 2**21
    assert rollout.chunk_elements("gpu") == rollout.chunk_elements("tpu") == 2**27
    expected = rollout.CHUNK_ELEMENTS if jax.default_backend() == "cpu" else 2**27
    assert rollout.chunk_elements() == expected
