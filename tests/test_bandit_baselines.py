"""Bandit baselines: step-by-step NumPy references on fixed tables, and textbook regret bounds.

The references are plain per-step loops in float64. Where an algorithm randomises, the reference
takes its random numbers from the same per-round key with the same ``jax.random`` call (or, for
the Beta draws, the same call with the reference's own posterior parameters), so the action
sequences must agree exactly: any difference in the bookkeeping, the index, the tie-breaking or
the key use shows up as a different arm.
"""

import collections
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmft_theory import metrics, sampling
from rmft_theory.baselines import bandits as bb
from rmft_theory.envs import make_env

T_REF, D_REF, RUNS_REF = 80, 3, 3


def reward_tables(env_name, seed, runs=RUNS_REF, **options):
    """``runs`` reward tables (runs, T, d) of one fixed task, as float32 JAX and float64 NumPy."""
    env = make_env(env_name, horizon=T_REF, **options)
    task = env.sample_task(jax.random.key(seed))
    keys = jax.random.split(jax.random.key(seed + 1), runs)
    tables = jax.vmap(env.sample_rewards, in_axes=(0, None))(keys, task)
    return tables, np.asarray(tables, np.float64)


def run_jax(algo, keys, tables):
    run = jax.jit(jax.vmap(lambda k, r: bb.run_bandit(algo, k, r).actions))
    return np.asarray(run(keys, tables))


# The references draw their random numbers with the same jax.random calls, jitted once (eager
# per-step calls of the Beta sampler cost ~30 ms each).
uniform_draw = jax.jit(jax.random.uniform)
normal_draw = jax.jit(jax.random.normal, static_argnums=1)
beta_draw = jax.jit(sampling.beta)


@functools.partial(jax.jit, static_argnums=1)
def randint_draw(key, d):
    return jax.random.randint(key, (), 0, d, dtype=jnp.int32)


# ----------------------------------------------------------------------------- NumPy references


def ucb1_ref(r, keys, scale=1.0):
    T, d = r.shape
    n, s, out = np.zeros(d), np.zeros(d), []
    for t in range(T):  # t = plays so far
        if np.any(n == 0):
            a = int(np.argmax(n == 0))
        else:
            a = int(np.argmax(s / n + scale * np.sqrt(2 * np.log(max(t, 1)) / n)))
        n[a] += 1
        s[a] += r[t, a]
        out.append(a)
    return out


def epsilon_greedy_ref(r, keys, epsilon=0.2):
    T, d = r.shape
    n, s, out = np.zeros(d), np.zeros(d), []
    for t in range(T):
        k_explore, k_arm = jax.random.split(keys[t])
        u = float(uniform_draw(k_explore))
        arm = int(randint_draw(k_arm, d))
        greedy = int(np.argmax(np.where(n > 0, s / np.maximum(n, 1), np.inf)))
        a = arm if u < epsilon else greedy
        n[a] += 1
        s[a] += r[t, a]
        out.append(a)
    return out


def thompson_gaussian_ref(r, keys, sigma=0.5):
    T, d = r.shape
    n, s, out = np.zeros(d), np.zeros(d), []
    for t in range(T):
        z = np.asarray(normal_draw(keys[t], (d,)), np.float64)
        a = int(np.argmax(s / (n + 1) + sigma * z / np.sqrt(n + 1)))
        n[a] += 1
        s[a] += r[t, a]
        out.append(a)
    return out


def discounted_thompson_ref(r, keys, gamma=1.0, alpha0=1.0, beta0=1.0):
    T, d = r.shape
    S, F, out = np.zeros(d), np.zeros(d), []
    for t in range(T):
        a_par = jnp.asarray(alpha0 + S, jnp.result_type(float))
        b_par = jnp.asarray(beta0 + F, jnp.result_type(float))
        a = int(np.argmax(np.asarray(beta_draw(keys[t], a_par, b_par))))
        S *= gamma
        F *= gamma
        S[a] += r[t, a]
        F[a] += 1 - r[t, a]
        out.append(a)
    return out


def exp3_ref(r, keys, gamma=0.1):
    T, K = r.shape
    log_w, out = np.zeros(K), []
    for t in range(T):
        w = np.exp(log_w - log_w.max())
        p = (1 - gamma) * w / w.sum() + gamma / K
        u = float(uniform_draw(keys[t]))
        a = min(int(np.sum(np.cumsum(p) <= u)), K - 1)
        log_w[a] += gamma * r[t, a] / (p[a] * K)
        log_w -= log_w.max()
        out.append(a)
    return out


def sw_ucb_ref(r, keys, window=10, scale=1.0, xi=0.6):
    T, d = r.shape
    past, out = collections.deque(maxlen=window), []
    for t in range(T):
        n, s = np.zeros(d), np.zeros(d)
        for a_s, r_s in past:
            n[a_s] += 1
            s[a_s] += r_s
        if np.any(n == 0):
            a = int(np.argmax(n == 0))
        else:
            bonus = scale * np.sqrt(xi * np.log(max(min(t, window), 1)) / n)
            a = int(np.argmax(s / n + bonus))
        past.append((a, r[t, a]))
        out.append(a)
    return out


CASES = {
    "ucb1": (bb.ucb1(), ucb1_ref, {}),
    "ucb1-scale": (bb.ucb1(scale=0.3), lambda r, k: ucb1_ref(r, k, 0.3), {}),
    "epsilon-greedy": (bb.epsilon_greedy(0.2), epsilon_greedy_ref, {}),
    "thompson-gaussian": (bb.thompson_gaussian(0.5), thompson_gaussian_ref, {}),
    "thompson-bernoulli": (bb.thompson_bernoulli(), discounted_thompson_ref, {}),
    "discounted-ts": (
        bb.discounted_thompson(0.9, 2.0, 0.5),
        lambda r, k: discounted_thompson_ref(r, k, 0.9, 2.0, 0.5),
        {},
    ),
    "exp3": (bb.exp3(0.1), exp3_ref, {}),
    "sw-ucb": (bb.sliding_window_ucb(10), sw_ucb_ref, {"switching": True}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_reference(name):
    algo, ref, flags = CASES[name]
    if flags.get("switching"):
        tables, tables_np = reward_tables(
            "switching-bandit", 7, d=D_REF, n_switches=3, low=0.1, high=0.9
        )
    else:
        tables, tables_np = reward_tables("bernoulli-bandit", 3, means=(0.45, 0.5, 0.55))
    keys = jax.random.split(jax.random.key(11), RUNS_REF)
    got = run_jax(algo, keys, tables)
    for i in range(RUNS_REF):
        round_keys = [jax.random.fold_in(keys[i], t) for t in range(T_REF)]
        expected = ref(tables_np[i], round_keys)
        np.testing.assert_array_equal(got[i], expected, err_msg=f"{name}, run {i}")


def test_every_arm_first_for_index_policies():
    # UCB1 and SW-UCB play arms 0..d-1 in order first (unpulled arms have index +inf).
    r = jnp.ones((6, 4))
    for algo in (bb.ucb1(), bb.sliding_window_ucb(3)):
        actions = bb.run_bandit(algo, jax.random.key(0), r).actions
        np.testing.assert_array_equal(actions[:4], [0, 1, 2, 3])


def test_exp3_probabilities_and_sampler():
    p = bb.exp3_probabilities(jnp.zeros(4), 0.2)
    np.testing.assert_allclose(p, 0.25, rtol=1e-6)  # uniform weights: p = 1/K
    p = bb.exp3_probabilities(jnp.array([0.0, -50.0, -50.0]), 0.3)
    # softmax ≈ (1, 0, 0): p ≈ (0.7 + 0.1, 0.1, 0.1); exp(-50) is below float32 resolution.
    np.testing.assert_allclose(p, [0.8, 0.1, 0.1], rtol=1e-6)
    probs = jnp.array([0.2, 0.3, 0.5])
    for u, arm in [(0.0, 0), (0.1999, 0), (0.2001, 1), (0.4999, 1), (0.5001, 2), (0.99999, 2)]:
        assert int(bb.sample_categorical(u, probs)) == arm


def test_standard_rates_and_bounds():
    # Auer et al. 2002: γ = min(1, √(K ln K/((e−1)T))), bound 2√(e−1)√(TK ln K).
    # Python floats throughout: equal to rounding (1e-12 relative).
    expected = math.sqrt(3 * math.log(3) / ((math.e - 1) * 2000))
    assert bb.exp3_gamma(3, 2000) == pytest.approx(expected, rel=1e-12)
    assert bb.exp3_gamma(10, 1) == 1.0
    # 2√(e−1) = 2.621665…
    bound = bb.exp3_regret_bound(3, 2000)
    assert bound == pytest.approx(2.621665 * math.sqrt(6000 * math.log(3)), rel=1e-6)
    # UCB1 Thm 1 for (0.5, 0.6, 0.7), T = 2000: 8 ln T (1/0.2 + 1/0.1) + (1 + π²/3)(0.3).
    expected = 8 * math.log(2000) * 15 + (1 + math.pi**2 / 3) * 0.3
    assert bb.ucb1_regret_bound((0.5, 0.6, 0.7), 2000) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: bb.epsilon_greedy(1.5), "epsilon"),
        (lambda: bb.exp3(0.0), "gamma"),
        (lambda: bb.discounted_thompson(1.2), "gamma"),
        (lambda: bb.sliding_window_ucb(0), "window"),
        (lambda: bb.thompson_gaussian(-1.0), "sigma"),
    ],
)
def test_bad_hyperparameters_name_the_field(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


# ----------------------------------------------------------------------------- textbook behaviour

MEANS = (0.5, 0.6, 0.7)  # the fixed instance
UCB1, SW_UCB, D_TS = bb.ucb1(), bb.sliding_window_ucb(200), bb.discounted_thompson(0.99)
T_LONG = 2000
BERNOULLI = make_env("bernoulli-bandit", d=3, horizon=T_LONG)  # the task is passed explicitly


@functools.partial(jax.jit, static_argnums=(0, 1))
def _bandit_runs(algo, env, task, keys):
    def one(key):
        k_rew, k_act = jax.random.split(key)
        mu, r = env.mean_rewards(task), env.sample_rewards(k_rew, task)
        a = bb.run_bandit(algo, k_act, r).actions
        dyn = metrics.dynamic_regret_curve(mu, a)
        return metrics.pseudo_regret_curve(mu, a), dyn[-1], metrics.realised_regret(r, a)

    return jax.vmap(one)(keys)


def bandit_runs(algo, env, task, runs, seed):
    """Per-run pseudo-regret curves (runs, T), dynamic and realised regrets (runs,) each.

    The task is a jit argument, so instances of one shape share a compile.
    """
    keys = jax.random.split(jax.random.key(seed), runs)
    out = _bandit_runs(algo, env, jnp.asarray(task, jnp.result_type(float)), keys)
    return tuple(np.asarray(x, np.float64) for x in out)


def test_ucb1_under_auer_bound():
    runs = 300
    curves, _, _ = bandit_runs(UCB1, BERNOULLI, MEANS, runs, seed=0)
    assert np.all(curves >= -1e-3)  # pseudo-regret ≥ 0 (float32 sums of 2000 terms ≤ 1)
    mean, se = metrics.mean_and_se(curves[:, -1])
    # Thm. 1 bounds the expected pseudo-regret; 5 standard errors of the 300-run mean.
    assert mean + 5 * se < bb.ucb1_regret_bound(MEANS, T_LONG)
    # The bound (913) is above what uniform play pays, T · mean gap = 2000 · 0.1 = 200 exactly
    # (an expectation, no Monte-Carlo error), so it alone does not show learning. UCB1 must be
    # below half of that (measured 71.0 ± 0.8, 5 SEs allowed); uniform play or a policy stuck
    # on one of the worse arms (200 or 400 per 2000 rounds) fails.
    uniform = T_LONG * float(np.mean(max(MEANS) - np.asarray(MEANS)))
    assert mean + 5 * se < 0.5 * uniform


def test_ucb1_regret_grows_logarithmically():
    # Each doubling of t adds about the same regret once t ≫ ln t/Δ², so the ratio of the
    # increments over [T/2, T] and [T/4, T/2] tends to 1 (√t growth gives √2, linear 2).
    # Gaps 0.3 and 0.6 reach that regime by T = 2000; gaps of 0.1, as in MEANS, do not
    # (8 ln T/Δ² > T there; the measured ratio is ≈ 1.39 at T = 2000 and ≈ 1.07 at T = 8000).
    runs = 300
    curves, _, _ = bandit_runs(UCB1, BERNOULLI, (0.2, 0.5, 0.8), runs, seed=1)
    late = curves[:, T_LONG - 1] - curves[:, T_LONG // 2 - 1]
    early = curves[:, T_LONG // 2 - 1] - curves[:, T_LONG // 4 - 1]
    ratio = late.mean() / early.mean()
    se_ratio = np.std(late - ratio * early, ddof=1) / np.sqrt(runs) / early.mean()  # delta method
    assert ratio + 5 * se_ratio < math.sqrt(2)
    # ≈ 1, with a pre-asymptotic excess: measured 1.05-1.11 (se ≈ 0.035) over seeds 1-3; the
    # 0.1 plus 5 se (≈ 0.28 in all) allows that excess (ln t growth gives exactly 1 only as
    # t → ∞) and still fails √t growth (1.41).
    assert abs(ratio - 1) < 5 * se_ratio + 0.1


def test_exp3_within_its_bound():
    runs = 200
    algo = bb.exp3(bb.exp3_gamma(3, T_LONG))
    _, _, realised = bandit_runs(algo, BERNOULLI, MEANS, runs, seed=2)
    mean, se = metrics.mean_and_se(realised)
    # Cor. 3.2 bounds E[G_max − G_EXP3] with G_max on the realised table, by 2√(e−1)√(TK ln K).
    assert mean + 5 * se < bb.exp3_regret_bound(3, T_LONG)
    # And it learns: below uniform play's expected regret T·(0.7 − 0.6) = 200.
    assert mean + 5 * se < 200


def test_non_stationary_baselines_beat_ucb1_after_a_switch():
    # Arm 0 is best (0.9 vs 0.1) for T/2 rounds, then arm 1 is (0.4 vs 0.6). UCB1's empirical
    # mean of arm 0 stays above 0.6 for about 1.5·T/2 more pulls, so it keeps playing it and
    # pays ≈ 0.2 per round; SW-UCB (τ = 200) and discounted TS (γ = 0.99) forget the first
    # phase within a few hundred rounds. Measured (100 runs): UCB1 155 ± 1.3, SW-UCB 58 ± 0.9,
    # dTS 59 ± 0.8 dynamic regret.
    runs = 100
    env = make_env("switching-bandit", d=2, horizon=T_LONG, n_switches=1)
    segments = ((0.9, 0.1), (0.4, 0.6))
    m_ucb, se_ucb = metrics.mean_and_se(bandit_runs(UCB1, env, segments, runs, seed=3)[1])
    for algo in (SW_UCB, D_TS):
        m, se = metrics.mean_and_se(bandit_runs(algo, env, segments, runs, seed=3)[1])
        assert m + 5 * se < m_ucb - 5 * se_ucb
