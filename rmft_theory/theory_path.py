"""The theory path end to end: train the single-layer LSA directly and compare it with FTRL."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.analysis import invariant_report, policy_distance
from rmft_theory.baselines import ftrl_policies
from rmft_theory.envs.gaussian import GaussianFOL
from rmft_theory.envs.registry import is_gaussian_fol
from rmft_theory.keys import Seeds
from rmft_theory.models import invariants, make_model
from rmft_theory.spaces import project_ball
from rmft_theory.theory import ftrl_weights
from rmft_theory.train import DirectTrainConfig, sample_batch, train_direct


def heldout_policy_agreement(params, env: GaussianFOL, W_star, radius: float, key, n: int = 256):
    """Mean ``‖π_model,t − π_FTRL,t‖`` on ``n`` held-out sequences, and its ratio to ``E‖π_FTRL‖``.

    Both policies are projected on ``B(0, radius)``; FTRL uses the closed-form ``W*``.
    """
    key_tasks, key_rewards = jax.random.split(key)
    rewards = sample_batch(key_tasks, key_rewards, env, n)
    model = make_model("lsa", env.d)

    def one(r):
        g = model.apply({"params": params}, r)
        pi_model = jax.vmap(project_ball, in_axes=(0, None))(g, radius)
        pi_ftrl = ftrl_policies(r, jnp.asarray(W_star, g.dtype), radius)
        return policy_distance(pi_model, pi_ftrl), jnp.mean(jnp.linalg.norm(pi_ftrl, axis=-1))

    dist, scale = jax.jit(jax.vmap(one))(rewards)
    return float(jnp.mean(dist)), float(jnp.mean(dist) / jnp.mean(scale))


def train_theory(
    env: GaussianFOL,
    config: DirectTrainConfig,
    seeds: Seeds,
    quiet: bool = False,
    checkpoint_dir=None,
) -> tuple[dict, dict]:
    """Train the LSA on ``config.objective`` and measure it against ``W*`` (THEORY §3).

    Returns a JSON-ready summary and a dict of per-step curves (rel_error, quad_rel,
    drift_rel, loss). With ``checkpoint_dir`` the training checkpoints every chunk of steps and
    resumes from there (:func:`rmft_theory.train.train_direct`).
    """
    if not is_gaussian_fol(env):
        raise ValueError(
            "env must be the built-in GaussianFOL, whose W* closed form the theory path "
            f"measures against, got {type(env).__name__} (train others with train_direct)"
        )
    W_star = ftrl_weights(env.cov_matrix, env.horizon, config.radius)
    W_star_j = jnp.asarray(W_star, dtype=jnp.result_type(float))
    scale = env.reward_scale
    result = train_direct(
        make_model("lsa", env.d),
        env,
        config,
        seeds,
        metrics_fn=lambda p: invariant_report(p, W_star_j, scale),
        quiet=quiet,
        checkpoint_dir=checkpoint_dir,
    )
    final = {k: float(v) for k, v in invariant_report(result.params, W_star_j, scale).items()}
    dist, dist_rel = heldout_policy_agreement(
        result.params, env, W_star, config.radius, seeds.key("heldout")
    )
    inv = invariants(result.params)
    summary = {
        **final,
        "W_eff": np.asarray(inv.W_eff),
        "W_star": W_star,
        "drift": np.asarray(inv.drift),
        "heldout_policy_distance": dist,
        "heldout_policy_distance_rel": dist_rel,
        "compile_s": result.timings.compile_s,
        "run_s": result.timings.run_s,
    }
    return summary, result.metrics
