"""Evaluate any registered policy on any registered environment: one ``jit`` per evaluation.

Policies come from a name → builder registry (:data:`POLICIES`). A builder takes the
environment and the policy's options and returns either

* a :class:`~rmft_theory.baselines.bandits.BanditAlgorithm` (sees only ``r_t(a_t)``), scored by
  pseudo-regret ``max_a Σ_t μ_t(a) − Σ_t μ_t(a_t)`` on stationary environments and by dynamic
  regret ``Σ_t max_a μ_t(a) − Σ_t μ_t(a_t)`` on non-stationary ones; or
* a :class:`FullInfoPolicy` (sees ``R_1..R_{t−1}``), scored by static regret in its policy
  space (THEORY §1, :func:`rmft_theory.regret.cumulative_regret`).

``model:PATH`` names a run directory written by ``rmft train`` (see
:func:`rmft_theory.runs.load_model_policy`).

Runs are independent: run i uses ``fold_in(seeds.key(stream), i)`` for the evaluation task,
reward and action streams (:data:`rmft_theory.keys.EVALUATION_STREAMS`, apart from every
training stream), so results do not depend on the batching, and two policies evaluated with the
same seeds see the same tasks and reward tables.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory import metrics
from rmft_theory.baselines import bandits as bb
from rmft_theory.baselines import online
from rmft_theory.envs.registry import as_environment, env_label
from rmft_theory.keys import Seeds
from rmft_theory.regret import best_fixed_value, cumulative_regret
from rmft_theory.spaces import check_space
from rmft_theory.theory import eta_star
from rmft_theory.validation import check_finite, check_positive_int


class FullInfoPolicy(NamedTuple):
    """A causal full-information learner ``policies(rewards_TxD) -> (T, d)`` on ``space``."""

    policies: Callable[[jax.Array], jax.Array]
    space: str
    radius: float = 1.0


Policy = bb.BanditAlgorithm | FullInfoPolicy


class PolicySpec(NamedTuple):
    """A registered policy: ``build(env, **options)``, what it observes, its options.

    ``feedback`` is ``"bandit"`` (sees ``r_t(a_t)``), ``"full"`` (sees ``R_t``; needs a
    full-information environment) or ``"none"`` (observes nothing). ``options`` maps each
    option to its default (``None``: derived from the environment by ``build``).
    ``unit_rewards`` marks policies that need rewards in [0, 1].
    """

    build: Callable[..., Policy]
    feedback: str
    options: dict
    unit_rewards: bool
    summary: str


POLICIES: dict[str, PolicySpec] = {}
MODEL_PREFIX = "model:"


def register_policy(
    name: str, feedback: str, options: dict | None = None, unit_rewards: bool = False
):
    """Decorator: register ``build(env, **options) -> Policy`` under ``name``."""

    def wrap(build):
        if name in POLICIES or name.startswith(MODEL_PREFIX):
            raise ValueError(f"policy name {name!r} is already registered or reserved")
        summary = (build.__doc__ or "").strip().splitlines()[0] if build.__doc__ else ""
        POLICIES[name] = PolicySpec(build, feedback, dict(options or {}), unit_rewards, summary)
        return build

    return wrap


def make_policy(name: str, env, **options) -> tuple[Policy, dict]:
    """Build policy ``name`` for ``env``; returns it and its resolved options.

    One ValueError names a bad policy name, an unknown option, or a policy that does not fit
    the environment (full-information policies on bandits; [0, 1]-reward policies elsewhere).
    """
    env = as_environment(env)
    if name.startswith(MODEL_PREFIX):
        path = name[len(MODEL_PREFIX) :]
        if not path:
            raise ValueError("policy model:PATH needs a checkpoint path after 'model:'")
        from rmft_theory.runs import load_model_policy  # runs imports this module

        policy = load_model_policy(path, env, **options)
        if isinstance(policy, FullInfoPolicy) and env.feedback != "full":
            raise ValueError(f"policy {name!r} is full-information; env is a bandit")
        return policy, {"path": path, **options}
    if name not in POLICIES:
        raise ValueError(f"policy must be one of {sorted(POLICIES)} or model:PATH, got {name!r}")
    spec = POLICIES[name]
    for key in options:
        if key not in spec.options:
            raise ValueError(
                f"policy {name!r} has no option {key!r}; its options are {tuple(spec.options)}"
            )
    if spec.feedback == "full" and env.feedback != "full":
        bandit_names = sorted(n for n, s in POLICIES.items() if s.feedback == "bandit")
        raise ValueError(
            f"policy {name!r} needs full-information feedback, but env {env_label(env)!r} is a "
            f"bandit; use one of {bandit_names}"
        )
    lo, hi = env.reward_range
    if spec.unit_rewards and not (lo >= 0 and hi <= 1):
        raise ValueError(
            f"policy {name!r} needs rewards in [0, 1], but env {env_label(env)!r} has rewards "
            f"in [{lo}, {hi}]"
        )
    resolved = {**spec.options, **options}
    policy, resolved = spec.build(env, **resolved)
    return policy, resolved


# ----------------------------------------------------------------------------- built-in policies


@register_policy("ucb1", "bandit", {"scale": 1.0})
def _ucb1(env, scale):
    """UCB1 (Auer et al. 2002): μ̂_a + scale·sqrt(2 ln n / n_a)."""
    scale = check_finite("scale", scale)
    return bb.ucb1(scale), {"scale": scale}


@register_policy("epsilon-greedy", "bandit", {"epsilon": 0.1})
def _epsilon_greedy(env, epsilon):
    """ε-greedy with constant ε."""
    epsilon = check_finite("epsilon", epsilon)
    return bb.epsilon_greedy(epsilon), {"epsilon": epsilon}


@register_policy("thompson-gaussian", "bandit", {"sigma": None})
def _ts_gaussian(env, sigma):
    """Gaussian Thompson sampling; σ defaults to the env's reward scale."""
    sigma = check_finite("sigma", env.reward_scale if sigma is None else sigma)
    return bb.thompson_gaussian(sigma), {"sigma": sigma}


@register_policy("thompson-bernoulli", "bandit", {"alpha0": 1.0, "beta0": 1.0}, unit_rewards=True)
def _ts_bernoulli(env, alpha0, beta0):
    """Beta–Bernoulli Thompson sampling."""
    opts = {"alpha0": check_finite("alpha0", alpha0), "beta0": check_finite("beta0", beta0)}
    return bb.thompson_bernoulli(**opts), opts


@register_policy("exp3", "bandit", {"gamma": None}, unit_rewards=True)
def _exp3(env, gamma):
    """EXP3; γ defaults to the standard min(1, √(K ln K/((e−1)T)))."""
    gamma = check_finite("gamma", bb.exp3_gamma(env.d, env.horizon) if gamma is None else gamma)
    return bb.exp3(gamma), {"gamma": gamma}


def _breakpoints(env) -> int:
    """The number of stationary segments Υ_T, when the environment says (else 1)."""
    return int(getattr(env, "n_switches", 0)) + 1


@register_policy("sw-ucb", "bandit", {"window": None, "scale": 1.0, "xi": 0.6})
def _sw_ucb(env, window, scale, xi):
    """Sliding-window UCB; τ defaults to 2·sqrt(T ln T/Υ_T) (Garivier & Moulines 2011)."""
    if window is None:
        T = env.horizon
        window = math.ceil(2 * math.sqrt(T * math.log(max(T, 2)) / _breakpoints(env)))
        window = min(window, T)
    opts = {
        "window": _as_int("window", window),
        "scale": check_finite("scale", scale),
        "xi": check_finite("xi", xi),
    }
    return bb.sliding_window_ucb(**opts), opts


@register_policy(
    "discounted-ts", "bandit", {"gamma": None, "alpha0": 1.0, "beta0": 1.0}, unit_rewards=True
)
def _discounted_ts(env, gamma, alpha0, beta0):
    """Discounted Thompson sampling; γ defaults to 1 − sqrt(Υ_T/T)/4 (G&M's D-UCB rate)."""
    if gamma is None:
        gamma = 1 - math.sqrt(_breakpoints(env) / env.horizon) / 4
    opts = {
        "gamma": check_finite("gamma", gamma),
        "alpha0": check_finite("alpha0", alpha0),
        "beta0": check_finite("beta0", beta0),
    }
    return bb.discounted_thompson(**opts), opts


@register_policy("uniform", "none")
def _uniform(env):
    """Uniform play: a uniformly random arm (bandits) or the uniform simplex point (FOL)."""
    if env.feedback == "bandit":
        return bb.uniform_random(), {}
    return FullInfoPolicy(online.uniform_policies, "simplex"), {}


@register_policy("ftrl", "full", {"eta": None, "radius": 1.0})
def _ftrl(env, eta, radius):
    """FTRL on the ball, π_t = Proj(η S_{t−1}); η defaults to η*(d, T, reward scale, ρ)."""
    radius = check_finite("radius", radius)
    if eta is None:
        eta = eta_star(env.d, env.horizon, env.reward_scale, radius)
    eta = check_finite("eta", eta)
    return FullInfoPolicy(lambda r: online.ftrl_policies(r, eta, radius), "ball", radius), {
        "eta": eta,
        "radius": radius,
    }


@register_policy("hedge", "full", {"eta": None})
def _hedge(env, eta):
    """Hedge, softmax(η S_{t−1}); η defaults to sqrt(8 ln d/T)/w, w the reward range width."""
    if eta is None:
        lo, hi = env.reward_range
        width = hi - lo if math.isfinite(hi - lo) and hi > lo else 4.0 * env.reward_scale
        eta = math.sqrt(8 * math.log(max(env.d, 2)) / env.horizon) / width
    eta = check_finite("eta", eta)
    return FullInfoPolicy(lambda r: online.hedge_policies(r, eta), "simplex"), {"eta": eta}


@register_policy("ftl", "full", {"space": "simplex", "radius": 1.0})
def _ftl(env, space, radius):
    """Follow-the-leader on the simplex (default) or the ball."""
    check_space(space)
    radius = check_finite("radius", radius)
    return FullInfoPolicy(lambda r: online.ftl_policies(r, space, radius), space, radius), {
        "space": space,
        "radius": radius,
    }


def _as_int(name: str, value) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_positive_int(name, value)


# ----------------------------------------------------------------------------- evaluation


def regret_kind(policy: Policy, env) -> str:
    """``"pseudo"``/``"dynamic"`` for bandit learners, ``"static-<space>"`` for FOL ones."""
    if isinstance(policy, FullInfoPolicy):
        return f"static-{policy.space}"
    return "pseudo" if as_environment(env).stationary else "dynamic"


def run_one(policy: Policy, env, key_task, key_rewards, key_actions) -> tuple[jax.Array, dict]:
    """One run: sample a task and its rewards, play ``policy``; the regret curve and scalars.

    Per example (vmap over the three keys). The scalars always include ``regret`` (the final
    value of the curve), ``uniform_regret`` (the 0 anchor of normalised regret: uniform random
    play for bandit learners, the uniform point on the simplex, the centre of the ball) and
    ``variation_budget``; bandit learners add pseudo, dynamic and realised regret,
    ``min_pull_fraction`` and ``last_pull_best``.
    """
    env = as_environment(env)
    # A fixed task is a compile-time constant; the barrier stops XLA from constant-folding the
    # (T, d) cumulative sums of its mean table, which is slow (seconds at T = 2000).
    task = jax.lax.optimization_barrier(env.sample_task(key_task))
    mu_TxD = env.mean_rewards(task)
    r_TxD = env.sample_rewards(key_rewards, task)
    out = {"variation_budget": metrics.variation_budget(mu_TxD)}
    if isinstance(policy, FullInfoPolicy):
        pi_TxD = policy.policies(r_TxD)
        curve_T = cumulative_regret(r_TxD, pi_TxD, policy.space, policy.radius)
        if policy.space == "simplex":
            uniform = jnp.full_like(r_TxD, 1.0 / env.d)
            out["uniform_regret"] = cumulative_regret(r_TxD, uniform, "simplex")[-1]
        else:
            out["uniform_regret"] = best_fixed_value(jnp.sum(r_TxD, 0), "ball", policy.radius)
        out["regret"] = curve_T[-1]
        return curve_T, out
    actions_T = bb.run_bandit(policy, key_actions, r_TxD).actions
    dynamic = not env.stationary
    curve_fn = metrics.dynamic_regret_curve if dynamic else metrics.pseudo_regret_curve
    curve_T = curve_fn(mu_TxD, actions_T)
    out.update(
        regret=curve_T[-1],
        pseudo_regret=metrics.pseudo_regret(mu_TxD, actions_T),
        dynamic_regret=metrics.dynamic_regret(mu_TxD, actions_T),
        realised_regret=metrics.realised_regret(r_TxD, actions_T),
        uniform_regret=metrics.uniform_regret(mu_TxD, dynamic),
        min_pull_fraction=metrics.min_pull_fraction(actions_T, env.d),
        last_pull_best=metrics.last_pull(actions_T, metrics.best_arm(mu_TxD)),
    )
    return curve_T, out


class Evaluation(NamedTuple):
    """Per-run scalars (NumPy, (runs,) each), the mean regret curve (T,), timings in seconds."""

    regret_kind: str
    per_run: dict
    mean_curve: np.ndarray
    timings: dict


def default_batch_size(runs: int, horizon: int, d: int, budget: int = 1 << 24) -> int:
    """Runs per vmapped chunk so that a chunk's (runs, T, d) tables stay within ``budget``."""
    return max(1, min(runs, budget // max(1, horizon * d)))


def make_evaluator(policy: Policy, env, runs: int, batch_size: int | None = None):
    """A jitted ``f(key_tasks, key_rewards, key_actions) -> (mean_curve_T, per_run)``.

    Runs are processed in chunks of ``batch_size`` (vmap inside, ``lax.scan`` over chunks);
    the padding runs of the last chunk are dropped.
    """
    env = as_environment(env)
    check_positive_int("runs", runs)
    if isinstance(policy, FullInfoPolicy) and env.feedback != "full":
        raise ValueError(f"a full-information policy cannot run on the bandit {env_label(env)!r}")
    chunk = batch_size or default_batch_size(runs, env.horizon, env.d)
    check_positive_int("batch_size", chunk)
    chunk = min(chunk, runs)
    n_chunks = -(-runs // chunk)
    one = jax.vmap(lambda kt, kr, ka: run_one(policy, env, kt, kr, ka))

    def evaluate_all(key_tasks, key_rewards, key_actions):
        def body(curve_sum_T, idx_C):
            fold = jax.vmap(jax.random.fold_in, in_axes=(None, 0))
            curves_CxT, scalars = one(
                fold(key_tasks, idx_C), fold(key_rewards, idx_C), fold(key_actions, idx_C)
            )
            valid_C = (idx_C < runs).astype(curves_CxT.dtype)
            return curve_sum_T + valid_C @ curves_CxT, scalars

        idx = jnp.arange(n_chunks * chunk, dtype=jnp.uint32).reshape(n_chunks, chunk)
        zero_T = jnp.zeros((env.horizon,), jnp.result_type(float))
        curve_sum_T, scalars = jax.lax.scan(body, zero_T, idx)
        per_run = jax.tree.map(lambda x: x.reshape(-1)[:runs], scalars)
        return curve_sum_T / runs, per_run

    return jax.jit(evaluate_all)


def evaluate(
    policy: Policy, env, runs: int, seeds: Seeds, batch_size: int | None = None
) -> Evaluation:
    """Evaluate ``policy`` on ``runs`` independent tasks of ``env``; compile timed separately."""
    env = as_environment(env)
    keys = tuple(seeds.key(f"evaluation_{s}") for s in ("tasks", "rewards", "actions"))
    fn = make_evaluator(policy, env, runs, batch_size)
    t0 = time.perf_counter()
    compiled = fn.lower(*keys).compile()
    t1 = time.perf_counter()
    mean_curve, per_run = jax.block_until_ready(compiled(*keys))
    t2 = time.perf_counter()
    per_run = {k: np.asarray(v) for k, v in per_run.items()}
    timings = {"compile_s": t1 - t0, "run_s": t2 - t1}
    return Evaluation(regret_kind(policy, env), per_run, np.asarray(mean_curve), timings)


def summarise(
    evaluation: Evaluation,
    horizon: int,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    reference: Evaluation | None = None,
) -> dict[str, Any]:
    """JSON-ready summary: mean regret with its bootstrap CI, the mean curve, other metrics.

    With ``reference`` (another policy evaluated with the same seeds, so run i sees the same
    task and rewards), adds the normalised regret ``(R_uniform − R_alg)/(R_uniform − R_ref)``
    of the run means, with a paired bootstrap interval.
    """
    per_run = evaluation.per_run
    ci = metrics.bootstrap_ci(per_run["regret"], level, n_boot, seed)
    se = metrics.mean_and_se(per_run["regret"])[1] if per_run["regret"].size > 1 else None
    out: dict[str, Any] = {
        "regret_kind": evaluation.regret_kind,
        "mean_regret": ci.estimate,
        "ci_low": ci.low,
        "ci_high": ci.high,
        "ci_level": level,
        "n_boot": n_boot,
        "se_regret": se,
        "regret_curve": evaluation.mean_curve,
        "metrics": {
            k: float(np.mean(v))
            for k, v in per_run.items()
            if k not in ("regret", "last_pull_best")
        },
    }
    if "last_pull_best" in per_run:
        f_t = metrics.never_pulled_after(per_run["last_pull_best"], horizon)
        ts = sorted({0, horizon // 100, horizon // 10, horizon // 4, horizon // 2, horizon - 1})
        out["never_pulled_best_after"] = {"t": ts, "fraction": [float(f_t[t]) for t in ts]}
        out["metrics"]["min_pull_fraction_min"] = float(np.min(per_run["min_pull_fraction"]))
    if reference is not None:
        if reference.regret_kind != evaluation.regret_kind:
            raise ValueError(
                f"reference regret is {reference.regret_kind!r} but the policy's is "
                f"{evaluation.regret_kind!r}; pick a reference of the same kind"
            )
        stacked = np.stack(
            [per_run["regret"], per_run["uniform_regret"], reference.per_run["regret"]], axis=1
        )
        norm = metrics.bootstrap_ci(
            stacked,
            level,
            n_boot,
            seed,
            statistic=lambda m: metrics.normalised_regret(m[..., 0], m[..., 1], m[..., 2]),
        )
        out["normalised_regret"] = {
            "value": norm.estimate,
            "ci_low": norm.low,
            "ci_high": norm.high,
            "reference_mean_regret": float(np.mean(reference.per_run["regret"])),
            "uniform_mean_regret": float(np.mean(per_run["uniform_regret"])),
            # If False, the reference is no better than uniform and the scale is inverted.
            "reference_beats_uniform": bool(
                np.mean(reference.per_run["regret"]) < np.mean(per_run["uniform_regret"])
            ),
        }
    return out
