"""Batched rollouts of a policy model with the exploration mechanisms of THEORY §4.

Everything here acts on one task or one trajectory; :func:`rollout` adds the trajectory and task
axes with ``vmap``. In full-information online learning the model's input is the reward history
alone, which is the same for the L trajectories of a task, so the model runs **once per task**
and only the exploration noise differs across the L trajectories:

* ``per-step``:        ``π_t = Proj(g_t + s ξ_t)``, ``ξ_t ~ N(0, I)`` i.i.d. in t;
* ``per-trajectory``:  ``π_t = Proj(g_t + s ξ)``, one ``ξ ~ N(0, I)`` per trajectory;
* ``actions``:         ``a_t ~ softmax(g_t / τ)``, and the policy is the one-hot ``e_{a_t}``
  (simplex only; the analogue of sampling from a language model);
* ``none``:            ``π_t = Proj(g_t)`` (every trajectory is the noise-free model).

``Proj`` is the Euclidean projection onto the policy space (ball ``B(0, ρ)`` or simplex).
Memory is linear in T: the model is O(T) per task, and the exploration is elementwise in t.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rmft_theory.regret import best_fixed_value, static_regret
from rmft_theory.spaces import project
from rmft_theory.validation import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
)

EXPLORATIONS = ("per-step", "per-trajectory", "actions", "none")
ROLLOUT_SPACES = ("ball", "simplex")

ApplyFn = Callable[..., jax.Array]  # apply_fn(params, rewards_TxD) -> g_TxD


@dataclasses.dataclass(frozen=True)
class Exploration:
    """How one trajectory turns the model's raw outputs ``g_t`` into policies (THEORY §4).

    Attributes:
      kind: ``"per-step"``, ``"per-trajectory"``, ``"actions"`` or ``"none"``.
      scale: Gaussian noise scale s (``per-step`` and ``per-trajectory``).
      temperature: softmax temperature τ (``actions``; also the noise-free policy
        ``softmax(g/τ)`` of that mechanism).
      space: policy space, ``"ball"`` or ``"simplex"`` (static regret needs a bounded space).
      radius: ball radius ρ.
    """

    kind: str = "per-trajectory"
    scale: float = 1.0
    temperature: float = 1.0
    space: str = "ball"
    radius: float = 1.0

    def __post_init__(self):
        check_choice("noise", self.kind, EXPLORATIONS)
        check_nonnegative("noise_scale", self.scale)
        check_positive("temperature", self.temperature)
        check_choice("space", self.space, ROLLOUT_SPACES)
        check_positive("radius", self.radius)
        if self.kind == "actions" and self.space != "simplex":
            raise ValueError(
                f"space must be 'simplex' for noise='actions' (one-hot actions), got {self.space!r}"
            )


def noise_free_policies(g_TxD: jax.Array, exploration: Exploration) -> jax.Array:
    """The model's policy without exploration: ``Proj(g_t)``, or ``softmax(g_t/τ)`` for actions."""
    if exploration.kind == "actions":
        return jax.nn.softmax(g_TxD / exploration.temperature, axis=-1)
    return jax.vmap(project, in_axes=(0, None, None))(g_TxD, exploration.space, exploration.radius)


def explore(key: jax.Array, g_TxD: jax.Array, exploration: Exploration) -> jax.Array:
    """One exploring trajectory's (T, d) policies from the model outputs ``g_t`` (THEORY §4).

    Per-trajectory noise draws one ``ξ`` of shape (d,) and adds ``s ξ`` at every round;
    per-step noise draws ``ξ_t`` of shape (T, d). Both are projected onto the policy space.
    Action sampling returns one-hot policies ``e_{a_t}`` with ``a_t ~ softmax(g_t/τ)``.
    """
    T, d = g_TxD.shape
    kind = exploration.kind
    if kind == "actions":
        a_T = jax.random.categorical(key, g_TxD / exploration.temperature, axis=-1)
        return jax.nn.one_hot(a_T, d, dtype=g_TxD.dtype)
    if kind == "per-trajectory":
        x_TxD = g_TxD + exploration.scale * jax.random.normal(key, (d,), g_TxD.dtype)[None, :]
    elif kind == "per-step":
        x_TxD = g_TxD + exploration.scale * jax.random.normal(key, (T, d), g_TxD.dtype)
    else:
        x_TxD = g_TxD
    return jax.vmap(project, in_axes=(0, None, None))(x_TxD, exploration.space, exploration.radius)


def model_outputs(apply_fn: ApplyFn, params, rewards_TxD: jax.Array) -> jax.Array:
    """``g = apply_fn(params, R)`` for one task, checking that it has the rewards' (T, d) shape."""
    if rewards_TxD.ndim != 2:
        raise ValueError(f"rewards must have shape (T, d) per task, got {tuple(rewards_TxD.shape)}")
    g_TxD = apply_fn(params, rewards_TxD)
    if g_TxD.shape != rewards_TxD.shape:
        raise ValueError(
            f"model outputs must have the rewards' shape {tuple(rewards_TxD.shape)}, "
            f"got {tuple(g_TxD.shape)}"
        )
    return g_TxD


class TaskRollout(NamedTuple):
    """L trajectories of one task. The L trajectories share the task's reward sequence."""

    policies: jax.Array  # (L, T, d) policies π_t (one-hot e_{a_t} for noise="actions")
    actions: jax.Array  # (L, T) int32 sampled arms for noise="actions"; -1 otherwise
    rewards: jax.Array  # (T, d) the task's reward sequence, shared by its L trajectories
    regret: jax.Array  # (L,) static regret max_π Σ<π,R_t> − Σ<π_t,R_t>
    earned: jax.Array  # (L,) total reward Σ_t <π_t, R_t>


def rollout_task(
    apply_fn: ApplyFn,
    params,
    rewards_TxD: jax.Array,
    key: jax.Array,
    exploration: Exploration,
    n_rollouts: int,
) -> TaskRollout:
    """Roll out ``n_rollouts`` exploring trajectories on one task; the model runs once.

    Returns the policies, sampled actions, the (shared) rewards, and each trajectory's static
    regret ``max_{π∈Π} <π, S_T> − Σ_t <π_t, R_t>`` (THEORY §1).
    """
    check_positive_int("rollouts", n_rollouts)
    g_TxD = model_outputs(apply_fn, params, rewards_TxD)
    keys_L = jax.random.split(key, n_rollouts)
    pi_LxTxD = jax.vmap(explore, in_axes=(0, None, None))(keys_L, g_TxD, exploration)
    earned_L = jnp.einsum("ltd,td->l", pi_LxTxD, rewards_TxD)
    best = best_fixed_value(jnp.sum(rewards_TxD, axis=0), exploration.space, exploration.radius)
    if exploration.kind == "actions":
        actions_LxT = jnp.argmax(pi_LxTxD, axis=-1).astype(jnp.int32)
    else:
        actions_LxT = jnp.full(pi_LxTxD.shape[:2], -1, jnp.int32)
    return TaskRollout(pi_LxTxD, actions_LxT, rewards_TxD, best - earned_L, earned_L)


def rollout(
    apply_fn: ApplyFn,
    params,
    rewards_MxTxD: jax.Array,
    key: jax.Array,
    exploration: Exploration,
    n_rollouts: int,
) -> TaskRollout:
    """:func:`rollout_task` vmapped over M tasks (one key each): fields gain a leading M axis."""
    if rewards_MxTxD.ndim != 3:
        raise ValueError(f"rewards must have shape (M, T, d), got {tuple(rewards_MxTxD.shape)}")
    if rewards_MxTxD.shape[1] < 1:
        raise ValueError(f"horizon must be >= 1, got T={rewards_MxTxD.shape[1]}")
    keys_M = jax.random.split(key, rewards_MxTxD.shape[0])
    return jax.vmap(rollout_task, in_axes=(None, None, 0, 0, None, None))(
        apply_fn, params, rewards_MxTxD, keys_M, exploration, n_rollouts
    )


def make_rollout(apply_fn: ApplyFn, exploration: Exploration, n_rollouts: int) -> Callable:
    """A jitted ``(params, rewards_MxTxD, key) -> TaskRollout`` for fixed settings."""

    def run(params, rewards_MxTxD, key):
        return rollout(apply_fn, params, rewards_MxTxD, key, exploration, n_rollouts)

    return jax.jit(run)


def trajectory_regrets(
    rewards_TxD: jax.Array, policies_LxTxD: jax.Array, space: str, radius: float = 1.0
) -> jax.Array:
    """``regret.static_regret`` of each of L trajectories sharing one reward sequence."""
    return jax.vmap(static_regret, in_axes=(None, 0, None, None))(
        rewards_TxD, policies_LxTxD, space, radius
    )
