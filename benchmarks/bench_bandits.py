"""Batched JAX bandit baselines against a per-step pure-Python/NumPy loop doing the same work.

The work per run: T rounds on a Bernoulli bandit with fixed arm means; each round picks an arm
(UCB1 index or Beta–Bernoulli Thompson draw), observes the reward of that arm and updates its
counts; the run's pseudo-regret is accumulated. Two definitions of the work are timed:

* ``algorithm``: the (runs, T, d) reward tables are drawn before timing and every
  implementation plays on them (the cost of the bandit algorithm alone);
* ``end-to-end``: each implementation also draws its Bernoulli table, a full row of d rewards
  per round (JAX with threefry inside the jitted call, NumPy with PCG64 per round).

JAX does all runs in one ``jit(vmap(scan))`` (the library's ``run_bandit``); the reference loops
over runs and rounds in Python, with NumPy for the per-arm arithmetic. A third column, NumPy
vectorised over runs (a Python loop over rounds only), shows what a careful NumPy version gets.

Reports steps/s (runs × rounds per second of wall time, compile excluded; the median of
``--repeats``), the compile time separately, and the JAX/NumPy ratio. Writes
``benchmarks/results/bandits.{json,md}`` (:func:`rmft_theory.benchmarking.write_results`) and
prints the Markdown table::

    .venv/bin/python benchmarks/bench_bandits.py            # runs=1000, T=2000, d=3
    .venv/bin/python benchmarks/bench_bandits.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory import metrics
from rmft_theory.baselines import bandits as bb
from rmft_theory.benchmarking import (
    compile_jax,
    load_average,
    markdown_table,
    time_interleaved,
    write_results,
)

# ----------------------------------------------------------------------------- JAX


def make_jax_runner(algo: bb.BanditAlgorithm, horizon: int, sample: bool):
    """``f(keys (N,), means (d,), tables (N, T, d) | None) -> pseudo-regret (N,)``."""

    def one(key, means_D, r_TxD):
        key_rewards, key_actions = jax.random.split(key)
        mu_TxD = jnp.broadcast_to(means_D[None, :], (horizon, means_D.shape[0]))
        if sample:
            u_TxD = jax.random.uniform(key_rewards, mu_TxD.shape)
            r_TxD = (u_TxD < mu_TxD).astype(mu_TxD.dtype)
        actions_T = bb.run_bandit(algo, key_actions, r_TxD).actions
        return metrics.pseudo_regret(mu_TxD, actions_T)

    in_axes = (0, None, None if sample else 0)
    return jax.jit(jax.vmap(one, in_axes=in_axes))


def jax_call(algo, means, tables, runs, horizon, regrets: dict):
    """``(call, compile_s)``: one timed call of the batched runs (``tables=None`` samples
    inside); each call records its mean pseudo-regret in ``regrets["jax"]``."""
    fn = make_jax_runner(algo, horizon, sample=tables is None)
    means_D = jnp.asarray(means, jnp.float32)
    tables = None if tables is None else jnp.asarray(tables, jnp.float32)
    keys = jax.random.split(jax.random.key(0), runs)
    compiled, compile_s = compile_jax(fn, keys, means_D, tables)

    def call():
        regret = jax.block_until_ready(compiled(keys, means_D, tables))
        regrets["jax"] = float(np.mean(np.asarray(regret)))

    return call, compile_s


# ----------------------------------------------------------------------------- NumPy references


def ucb1_numpy_run(rng, means, horizon, table=None):
    """One UCB1 run, one round at a time, on ``table`` (T, d) or drawing each round's row."""
    d = means.size
    n, s = np.zeros(d), np.zeros(d)
    regret, best = 0.0, means.max()
    for t in range(horizon):
        row = table[t] if table is not None else (rng.random(d) < means)
        if t < d:
            a = t
        else:
            a = int(np.argmax(s / n + np.sqrt(2.0 * np.log(t) / n)))
        n[a] += 1
        s[a] += row[a]
        regret += best - means[a]
    return regret


def thompson_numpy_run(rng, means, horizon, table=None):
    """One Beta–Bernoulli Thompson run, one round at a time (``table`` as for UCB1)."""
    d = means.size
    S, F = np.zeros(d), np.zeros(d)
    regret, best = 0.0, means.max()
    for t in range(horizon):
        row = table[t] if table is not None else (rng.random(d) < means)
        a = int(np.argmax(rng.beta(1.0 + S, 1.0 + F)))
        S[a] += row[a]
        F[a] += 1.0 - row[a]
        regret += best - means[a]
    return regret


def ucb1_numpy_vectorised(rng, means, runs, horizon, tables=None):
    """UCB1 for all runs at once: a Python loop over rounds, NumPy over (runs, d)."""
    d = means.size
    n, s = np.zeros((runs, d)), np.zeros((runs, d))
    rows = np.arange(runs)
    regret = np.zeros(runs)
    for t in range(horizon):
        r = tables[:, t] if tables is not None else (rng.random((runs, d)) < means)
        if t < d:
            a = np.full(runs, t)
        else:
            a = np.argmax(s / n + np.sqrt(2.0 * np.log(t) / n), axis=1)
        n[rows, a] += 1
        s[rows, a] += r[rows, a]
        regret += means.max() - means[a]
    return regret


def thompson_numpy_vectorised(rng, means, runs, horizon, tables=None):
    """Thompson sampling for all runs at once: a Python loop over rounds only."""
    d = means.size
    S, F = np.zeros((runs, d)), np.zeros((runs, d))
    rows = np.arange(runs)
    regret = np.zeros(runs)
    for t in range(horizon):
        r = tables[:, t] if tables is not None else (rng.random((runs, d)) < means)
        a = np.argmax(rng.beta(1.0 + S, 1.0 + F), axis=1)
        S[rows, a] += r[rows, a]
        F[rows, a] += 1.0 - r[rows, a]
        regret += means.max() - means[a]
    return regret


def numpy_loop_call(run_fn, means, tables, runs, horizon, regrets: dict):
    """One timed call of ``runs`` per-step Python runs, each drawing from its own generator."""
    seeds = iter(range(10**9))

    def call():
        rng = np.random.default_rng(next(seeds))
        out = [
            run_fn(rng, means, horizon, None if tables is None else tables[j]) for j in range(runs)
        ]
        regrets["loop"] = float(np.mean(out))

    return call


def numpy_vectorised_call(fn, means, tables, runs, horizon, regrets: dict):
    """One timed call of the vectorised NumPy runs (a Python loop over rounds only)."""
    seeds = iter(range(10**9))

    def call():
        regrets["vectorised"] = float(
            fn(np.random.default_rng(next(seeds)), means, runs, horizon, tables).mean()
        )

    return call


# ----------------------------------------------------------------------------- driver


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000, help="runs for JAX and vectorised NumPy")
    p.add_argument("--loop-runs", type=int, default=20, help="runs for the per-step loop")
    p.add_argument("--horizon", type=int, default=2000)
    p.add_argument("--means", default="0.5,0.6,0.7")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (every call, alternated)")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.loop_runs, args.horizon, args.repeats = 64, 2, 200, 2
    means = np.array([float(x) for x in args.means.split(",")])
    T = args.horizon

    load_before = load_average()
    tables = (np.random.default_rng(123).random((args.runs, T, means.size)) < means).astype(
        np.float32
    )
    rows = []
    cases = [
        ("ucb1", bb.ucb1(), ucb1_numpy_run, ucb1_numpy_vectorised),
        (
            "thompson-bernoulli",
            bb.thompson_bernoulli(),
            thompson_numpy_run,
            thompson_numpy_vectorised,
        ),
    ]
    for name, algo, loop_fn, vec_fn in cases:
        for work in ("algorithm", "end-to-end"):
            tab = tables if work == "algorithm" else None
            regrets = {}
            jax_fn, compile_s = jax_call(algo, means, tab, args.runs, T, regrets)
            calls = {
                "jax": jax_fn,
                "loop": numpy_loop_call(loop_fn, means, tab, args.loop_runs, T, regrets),
                "vectorised": numpy_vectorised_call(vec_fn, means, tab, args.runs, T, regrets),
            }
            # Alternating rounds, the order reversed every round, one warm-up round untimed.
            timed = time_interleaved(calls, args.repeats)
            jax_times = timed["jax"]["runs_s"]
            loop_times = timed["loop"]["runs_s"]
            vec_times = timed["vectorised"]["runs_s"]
            jax_sps = args.runs * T / statistics.median(jax_times)
            loop_sps = args.loop_runs * T / statistics.median(loop_times)
            vec_sps = args.runs * T / statistics.median(vec_times)
            rows.append(
                {
                    "algorithm": name,
                    "work": work,
                    "jax_steps_per_s": jax_sps,
                    "jax_compile_s": compile_s,
                    "jax_run_s_median": statistics.median(jax_times),
                    "jax_run_s_all": jax_times,
                    "numpy_loop_steps_per_s": loop_sps,
                    "numpy_loop_run_s_all": loop_times,
                    "numpy_vectorised_steps_per_s": vec_sps,
                    "numpy_vectorised_run_s_all": vec_times,
                    "ratio_vs_loop": jax_sps / loop_sps,
                    "ratio_vs_vectorised": jax_sps / vec_sps,
                    # Sanity: the implementations estimate the same expected pseudo-regret.
                    "mean_pseudo_regret": regrets,
                }
            )

    ucb = [r for r in rows if r["algorithm"] == "ucb1"]
    result = {
        "benchmark": "bandits",
        "quick": args.quick,
        "config": {
            "runs": args.runs,
            "loop_runs": args.loop_runs,
            "horizon": T,
            "means": means.tolist(),
            "repeats": args.repeats,
        },
        "rows": rows,
        "done_when": {
            f"ucb1_{r['work']}_vs_per_step_python>=300": r["ratio_vs_loop"] >= 300 for r in ucb
        },
        # Other processes share these cores; the 1-minute load average gives the context.
        "load_average_1min": {"before": load_before, "after": load_average()},
    }
    for r in rows:
        r["pseudo_regret_jax_loop_vectorised"] = "/".join(
            f"{r['mean_pseudo_regret'][k]:.1f}" for k in ("jax", "loop", "vectorised")
        )
    md = [
        f"Bernoulli bandit {means.tolist()}, T = {T}; JAX and vectorised NumPy: {args.runs} "
        f"runs, per-step loop: {args.loop_runs} runs; backend {jax.default_backend()}; medians of "
        f"{args.repeats} rounds in which the three implementations alternate (order reversed "
        "every round, one untimed warm-up round). Ratios: JAX steps/s over the reference's.",
        "",
        markdown_table(
            rows,
            [
                "algorithm",
                "work",
                "jax_steps_per_s",
                "jax_compile_s",
                "numpy_loop_steps_per_s",
                "ratio_vs_loop",
                "numpy_vectorised_steps_per_s",
                "ratio_vs_vectorised",
                "pseudo_regret_jax_loop_vectorised",
            ],
        ),
        "",
        "work = algorithm: reward tables drawn before timing (the bandit algorithm alone); "
        "end-to-end: each implementation also draws the full (T, d) Bernoulli table. The last "
        "column is the mean pseudo-regret of each implementation (the same expectation).",
    ]
    write_results("bandits", result, "\n".join(md))
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
