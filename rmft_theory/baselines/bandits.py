"""Bandit baselines as pure functions (optax-style), run with ``lax.scan`` over rounds.

A :class:`BanditAlgorithm` is a ``NamedTuple`` of three pure functions:

* ``init(d) -> state``;
* ``act(key, state) -> arm`` (an int32 scalar), using only the state and ``key``;
* ``update(state, arm, reward) -> state``, with the one observed reward ``r_t(a_t)``.

:func:`run_bandit` plays one run against one (T, d) reward table (the learner sees only the
chosen entry) and returns the actions. Batch runs with ``jax.vmap`` at the call site. Rounds
are 1-indexed in the formulas; ``state.t`` counts the rounds played so far (``t − 1`` at round
t). Ties in an argmax go to the lowest arm index.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rmft_theory import sampling
from rmft_theory.validation import check_nonnegative, check_positive, check_positive_int


class BanditAlgorithm(NamedTuple):
    """Pure ``init(d)``, ``act(key, state)`` and ``update(state, arm, reward)``."""

    init: Callable[[int], Any]
    act: Callable[[jax.Array, Any], jax.Array]
    update: Callable[[Any, jax.Array, jax.Array], Any]


class BanditTrace(NamedTuple):
    """One run: the chosen arms ``a_t`` (T,) int32 and the observed rewards ``r_t(a_t)`` (T,)."""

    actions: jax.Array
    rewards: jax.Array


def run_bandit(algo: BanditAlgorithm, key: jax.Array, rewards_TxD: jax.Array) -> BanditTrace:
    """Play ``algo`` for T rounds against one reward table.

    Round t (0-indexed) acts with the key ``fold_in(key, t)``, made inside the step, so that a
    deterministic algorithm (UCB1) that ignores it pays nothing for it (XLA drops it).
    """
    T, d = rewards_TxD.shape

    def step(state, inputs):
        t, r_D = inputs
        a_t = algo.act(jax.random.fold_in(key, t), state)
        r_t = r_D[a_t]
        return algo.update(state, a_t, r_t), (a_t, r_t)

    xs = (jnp.arange(T, dtype=jnp.uint32), rewards_TxD)
    _, (actions_T, observed_T) = jax.lax.scan(step, algo.init(d), xs)
    return BanditTrace(actions_T, observed_T)


# ----------------------------------------------------------------------------- shared state


class CountState(NamedTuple):
    """Pull counts ``n_a``, reward sums ``s_a`` (d,) each, and rounds played ``t``."""

    counts: jax.Array
    sums: jax.Array
    t: jax.Array


def _init_counts(d: int) -> CountState:
    z = jnp.zeros((d,), jnp.result_type(float))
    return CountState(z, z, jnp.zeros((), jnp.int32))


def _update_counts(state: CountState, arm, reward) -> CountState:
    one_hot = jax.nn.one_hot(arm, state.counts.shape[0], dtype=state.counts.dtype)
    return CountState(state.counts + one_hot, state.sums + one_hot * reward, state.t + 1)


def _argmax(x_D: jax.Array) -> jax.Array:
    return jnp.argmax(x_D).astype(jnp.int32)


def _ucb_index(sums_D, counts_D, bonus_numerator) -> jax.Array:
    """``s_a/n_a + sqrt(bonus_numerator / n_a)``, and +∞ for unpulled arms."""
    safe_n = jnp.where(counts_D > 0, counts_D, 1.0)
    index = sums_D / safe_n + jnp.sqrt(bonus_numerator / safe_n)
    return jnp.where(counts_D > 0, index, jnp.inf)


# ----------------------------------------------------------------------------- algorithms


def ucb1(scale: float = 1.0) -> BanditAlgorithm:
    """UCB1 (Auer, Cesa-Bianchi & Fischer 2002, Fig. 1).

    Play each arm once; then at round t play ``argmax_a μ̂_a + c·sqrt(2 ln n / n_a)``, where
    ``n = t − 1`` is the number of plays so far, ``n_a`` the pulls of arm a, ``μ̂_a`` its
    empirical mean and ``c = scale`` (1 for rewards in [0, 1]). Theorem 1 bounds the
    pseudo-regret after T plays by ``Σ_{a: Δ_a>0} 8 ln T/Δ_a + (1 + π²/3) Σ_a Δ_a``
    (:func:`ucb1_regret_bound`).
    """
    check_nonnegative("scale", scale)

    def act(key, state: CountState):
        del key
        log_n = jnp.log(jnp.maximum(state.t, 1).astype(state.sums.dtype))
        return _argmax(_ucb_index(state.sums, state.counts, 2.0 * scale**2 * log_n))

    return BanditAlgorithm(_init_counts, act, _update_counts)


def ucb1_regret_bound(means, horizon: int) -> float:
    """Auer et al. (2002) Theorem 1: ``Σ_{Δ_a>0} 8 ln T/Δ_a + (1 + π²/3) Σ_a Δ_a``."""
    check_positive_int("horizon", horizon)
    best = max(means)
    gaps = [best - m for m in means]
    return sum(8 * math.log(horizon) / g for g in gaps if g > 0) + (1 + math.pi**2 / 3) * sum(gaps)


def epsilon_greedy(epsilon: float = 0.1) -> BanditAlgorithm:
    """ε-greedy with a constant ε.

    With probability ε play an arm uniformly at random, else ``argmax_a μ̂_a`` (an unpulled arm
    counts as ``μ̂_a = +∞``, so the greedy choice tries every arm once). Randomness per round:
    ``key_explore, key_arm = split(key)``, explore iff ``U(key_explore) < ε``.
    """
    check_nonnegative("epsilon", epsilon)
    if epsilon > 1:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")

    def act(key, state: CountState):
        key_explore, key_arm = jax.random.split(key)
        d = state.counts.shape[0]
        safe_n = jnp.where(state.counts > 0, state.counts, 1.0)
        greedy = _argmax(jnp.where(state.counts > 0, state.sums / safe_n, jnp.inf))
        explore = jax.random.uniform(key_explore) < epsilon
        random_arm = jax.random.randint(key_arm, (), 0, d, dtype=jnp.int32)
        return jnp.where(explore, random_arm, greedy)

    return BanditAlgorithm(_init_counts, act, _update_counts)


def thompson_gaussian(sigma: float = 1.0) -> BanditAlgorithm:
    """Gaussian Thompson sampling (Agrawal & Goyal 2013).

    With a ``N(0, σ²)`` prior on each mean and ``N(μ_a, σ²)`` rewards, the posterior is
    ``N(s_a/(n_a + 1), σ²/(n_a + 1))``. Each round draws ``θ_a = s_a/(n_a+1) + σ z_a/√(n_a+1)``,
    ``z ~ N(0, I)`` from ``key``, and plays ``argmax_a θ_a``.
    """
    check_positive("sigma", sigma)

    def act(key, state: CountState):
        z_D = jax.random.normal(key, state.counts.shape, state.counts.dtype)
        n1 = state.counts + 1.0
        return _argmax(state.sums / n1 + sigma * z_D / jnp.sqrt(n1))

    return BanditAlgorithm(_init_counts, act, _update_counts)


class BetaState(NamedTuple):
    """Beta posterior pseudo-counts: successes ``S_a`` and failures ``F_a`` (d,) each."""

    successes: jax.Array
    failures: jax.Array


def _init_beta(d: int) -> BetaState:
    z = jnp.zeros((d,), jnp.result_type(float))
    return BetaState(z, z)


def thompson_bernoulli(alpha0: float = 1.0, beta0: float = 1.0) -> BanditAlgorithm:
    """Beta–Bernoulli Thompson sampling (Thompson 1933; Agrawal & Goyal 2012).

    Draw ``θ_a ~ Beta(α₀ + S_a, β₀ + F_a)`` (:func:`rmft_theory.sampling.beta`, exact, one draw
    per arm from ``key``), play
    ``argmax_a θ_a``, then ``S_a += r``, ``F_a += 1 − r`` for the played arm. Rewards in [0, 1].
    """
    return discounted_thompson(1.0, alpha0, beta0)


def discounted_thompson(
    gamma: float = 0.99, alpha0: float = 1.0, beta0: float = 1.0
) -> BanditAlgorithm:
    """Discounted Thompson sampling for non-stationary Bernoulli bandits (Raj & Kalyani 2017).

    Every round, all arms forget: ``S_a ← γ S_a + 1[a = a_t] r_t`` and
    ``F_a ← γ F_a + 1[a = a_t](1 − r_t)``; the draw is ``θ_a ~ Beta(α₀ + S_a, β₀ + F_a)``.
    ``γ = 1`` is plain Beta–Bernoulli Thompson sampling. Rewards in [0, 1].
    """
    check_positive("gamma", gamma)
    if gamma > 1:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    check_positive("alpha0", alpha0)
    check_positive("beta0", beta0)

    def act(key, state: BetaState):
        return _argmax(sampling.beta(key, alpha0 + state.successes, beta0 + state.failures))

    def update(state: BetaState, arm, reward):
        one_hot = jax.nn.one_hot(arm, state.successes.shape[0], dtype=state.successes.dtype)
        return BetaState(
            gamma * state.successes + one_hot * reward,
            gamma * state.failures + one_hot * (1.0 - reward),
        )

    return BanditAlgorithm(_init_beta, act, update)


class Exp3State(NamedTuple):
    """EXP3 log-weights ``log w_a`` (d,), shifted so that their maximum is 0."""

    log_weights: jax.Array


def exp3_gamma(d: int, horizon: int) -> float:
    """Standard EXP3 rate (Auer et al. 2002, Cor. 3.2, g = T): ``min(1, √(K ln K/((e−1)T)))``."""
    check_positive_int("d", d)
    check_positive_int("horizon", horizon)
    return min(1.0, math.sqrt(d * math.log(d) / ((math.e - 1) * horizon)))


def exp3_regret_bound(d: int, horizon: int) -> float:
    """Auer et al. (2002) Cor. 3.2: ``G_max − E[G_EXP3] ≤ 2√(e − 1)·√(T K ln K)`` (g = T)."""
    check_positive_int("d", d)
    check_positive_int("horizon", horizon)
    return 2 * math.sqrt(math.e - 1) * math.sqrt(horizon * d * math.log(d))


def exp3_probabilities(log_weights_D: jax.Array, gamma: float) -> jax.Array:
    """``p_a = (1 − γ) w_a / Σ_b w_b + γ/K``."""
    K = log_weights_D.shape[-1]
    return (1.0 - gamma) * jax.nn.softmax(log_weights_D) + gamma / K


def sample_categorical(u, p_D: jax.Array) -> jax.Array:
    """Inverse-CDF draw: the first arm with ``Σ_{b≤a} p_b > u``, for ``u ∈ [0, 1)``."""
    below = jnp.sum(jnp.cumsum(p_D) <= u)
    return jnp.minimum(below, p_D.shape[-1] - 1).astype(jnp.int32)


def exp3(gamma: float) -> BanditAlgorithm:
    """EXP3 (Auer, Cesa-Bianchi, Freund & Schapire 2002, Fig. 1) for rewards in [0, 1].

    Play ``a_t ~ p_t``, ``p_t(a) = (1 − γ) w_a/Σ_b w_b + γ/K`` (inverse CDF of one
    ``U[0, 1)`` drawn from ``key``); with the importance-weighted estimate
    ``x̂ = r_t/p_t(a_t)`` update ``w_{a_t} ← w_{a_t} exp(γ x̂/K)``. Weights are kept in log
    space and shifted to a maximum of 0 (``p`` is unchanged). Use :func:`exp3_gamma` for the
    standard γ.
    """
    check_positive("gamma", gamma)
    if gamma > 1:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")

    def init(d: int) -> Exp3State:
        return Exp3State(jnp.zeros((d,), jnp.result_type(float)))

    def act(key, state: Exp3State):
        p_D = exp3_probabilities(state.log_weights, gamma)
        return sample_categorical(jax.random.uniform(key, dtype=p_D.dtype), p_D)

    def update(state: Exp3State, arm, reward):
        K = state.log_weights.shape[0]
        p_a = exp3_probabilities(state.log_weights, gamma)[arm]
        log_w = state.log_weights.at[arm].add(gamma * reward / (p_a * K))
        return Exp3State(log_w - jnp.max(log_w))

    return BanditAlgorithm(init, act, update)


class WindowState(NamedTuple):
    """The last τ arms and rewards (ring buffers, arm −1 = empty), window counts and sums."""

    arms: jax.Array
    rewards: jax.Array
    counts: jax.Array
    sums: jax.Array
    t: jax.Array


def sliding_window_ucb(window: int, scale: float = 1.0, xi: float = 0.6) -> BanditAlgorithm:
    """Sliding-window UCB (Garivier & Moulines 2011) for non-stationary bandits.

    With ``N_t(τ, a)`` and ``X̄_t(τ, a)`` the pulls and mean reward of arm a over the last τ
    rounds, play ``argmax_a X̄_t(τ, a) + B·sqrt(ξ ln(min(n, τ)) / N_t(τ, a))`` (+∞ if
    ``N_t(τ, a) = 0``), where ``n = t − 1`` rounds have been played and ``B = scale`` bounds
    the rewards. The paper's analysis takes ``ξ > 1/2``; its experiments use ``ξ = 0.6``.
    """
    check_positive_int("window", window)
    check_nonnegative("scale", scale)
    check_positive("xi", xi)
    dtype = jnp.result_type(float)

    def init(d: int) -> WindowState:
        z = jnp.zeros((d,), dtype)
        return WindowState(
            jnp.full((window,), -1, jnp.int32),
            jnp.zeros((window,), dtype),
            z,
            z,
            jnp.zeros((), jnp.int32),
        )

    def act(key, state: WindowState):
        del key
        n = jnp.maximum(jnp.minimum(state.t, window), 1).astype(dtype)
        return _argmax(_ucb_index(state.sums, state.counts, scale**2 * xi * jnp.log(n)))

    def update(state: WindowState, arm, reward):
        d = state.counts.shape[0]
        slot = state.t % window
        old_arm, old_reward = state.arms[slot], state.rewards[slot]
        # A one-hot of -1 is all zeros, so an empty slot removes nothing.
        out = jax.nn.one_hot(old_arm, d, dtype=dtype)
        new = jax.nn.one_hot(arm, d, dtype=dtype)
        return WindowState(
            state.arms.at[slot].set(arm),
            state.rewards.at[slot].set(reward),
            state.counts - out + new,
            state.sums - out * old_reward + new * reward,
            state.t + 1,
        )

    return BanditAlgorithm(init, act, update)


def uniform_random() -> BanditAlgorithm:
    """Play an arm uniformly at random every round (the 0 of normalised regret)."""

    def init(d: int):
        return jnp.zeros((d,), jnp.result_type(float))

    def act(key, state):
        return jax.random.randint(key, (), 0, state.shape[0], dtype=jnp.int32)

    return BanditAlgorithm(init, act, lambda state, arm, reward: state)
