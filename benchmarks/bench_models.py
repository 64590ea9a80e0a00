"""Time the deeper models: a batched forward pass and one optax fine-tuning step.

For linear attention and the softmax Transformer at depths 1, 2 and 4 (width 64, 4 heads), plus
linear attention with the O(T) prefix-sum algorithm at depth 2 (the default algorithm is the
masked O(T²) form; this row shows why):

* ``forward``: raw outputs ``g`` of B reward sequences, ``jax.vmap`` over the batch;
* ``step``: one Adam step on the imitation loss (MSE to the best action in hindsight, the
  regret filter's fine-tuning loss) of the same batch.

Each function is compiled ahead of time (``jax.jit(f).lower(...).compile()``, compile time
reported separately) and its run time is the median of ``--repeats`` calls after a warm-up.
FLOPs come from XLA's ``compiled.cost_analysis()``; the achieved GFLOP/s are compared with this
machine's fp32 matmul peak, measured in the same run with a large ``jnp`` matmul. Writes
``benchmarks/results/models.json`` and prints a Markdown table::

    .venv/bin/python benchmarks/bench_models.py            # B=1024, T=100, d=5
    .venv/bin/python benchmarks/bench_models.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from rmft_theory.io import environment_info, save_json
from rmft_theory.models import make_model
from rmft_theory.objectives import imitation_loss

RESULTS = Path(__file__).resolve().parent / "results" / "models.json"


def timed(fn, args, repeats: int) -> dict:
    """AOT-compile ``jax.jit(fn)`` for ``args``; compile seconds, median run seconds, FLOPs."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # older jax returns one dict per computation
        cost = cost[0] if cost else {}
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    run_s = statistics.median(times)
    return {
        "compile_s": compile_s,
        "run_s": run_s,
        "runs_s": times,
        "flops": flops,
        "gflops_per_s": flops / run_s / 1e9 if flops else None,
    }


def matmul_peak(n: int, repeats: int) -> dict:
    """fp32 GFLOP/s of an n×n by n×n ``jnp`` matmul (2n³ FLOPs), median of ``repeats``."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    r = timed(jnp.matmul, (a, b), repeats)
    flops = 2.0 * n**3
    return {"n": n, "run_s": r["run_s"], "gflops_per_s": flops / r["run_s"] / 1e9}


def bench_model(name: str, options: dict, rewards_BxTxD, repeats: int) -> dict:
    """Forward and one Adam step of ``make_model(name, d, **options)`` on ``rewards_BxTxD``."""
    d = rewards_BxTxD.shape[-1]
    model = make_model(name, d=d, **options)
    params = jax.jit(model.init)(jax.random.key(0), rewards_BxTxD[0])["params"]
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    def forward(params, rewards_BxTxD):
        return jax.vmap(lambda r: model.apply({"params": params}, r))(rewards_BxTxD)

    def loss(params, rewards_BxTxD):
        g_BxTxD = forward(params, rewards_BxTxD)
        return jnp.mean(jax.vmap(imitation_loss)(g_BxTxD, rewards_BxTxD))

    def step(params, opt_state, rewards_BxTxD):
        value, grads = jax.value_and_grad(loss)(params, rewards_BxTxD)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    n_params = sum(p.size for p in jax.tree.leaves(params))
    return {
        "model": name,
        "options": options,
        "parameters": int(n_params),
        "forward": timed(forward, (params, rewards_BxTxD), repeats),
        "step": timed(step, (params, opt_state, rewards_BxTxD), repeats),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--horizon", type=int, default=100)
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--peak-n", type=int, default=2048, help="matmul size for the fp32 peak")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.batch, args.horizon, args.repeats, args.peak_n = 64, 20, 2, 512

    rewards = jax.random.normal(jax.random.key(1), (args.batch, args.horizon, args.d))
    peak = matmul_peak(args.peak_n, args.repeats)
    common = {"width": args.width, "heads": args.heads}
    cases = [("linear-attention", {**common, "depth": k}) for k in args.depths]
    cases.append(("linear-attention", {**common, "depth": 2, "algorithm": "prefix-sum"}))
    cases += [("transformer", {**common, "depth": k}) for k in args.depths]
    rows = [bench_model(name, options, rewards, args.repeats) for name, options in cases]
    for row in rows:
        for part in ("forward", "step"):
            r = row[part]
            r["fraction_of_peak"] = (
                r["gflops_per_s"] / peak["gflops_per_s"] if r["gflops_per_s"] else None
            )

    result = {
        "settings": {
            "batch": args.batch,
            "horizon": args.horizon,
            "d": args.d,
            "width": args.width,
            "heads": args.heads,
            "repeats": args.repeats,
            "quick": args.quick,
            "device": str(jax.devices()[0]),
        },
        "matmul_peak": peak,
        "models": rows,
        "environment": environment_info(),
    }
    save_json(args.out, result)

    print(
        f"B={args.batch} T={args.horizon} d={args.d} width={args.width} heads={args.heads}, "
        f"device {jax.devices()[0]}; fp32 matmul peak ({args.peak_n}²): "
        f"{peak['gflops_per_s']:.1f} GFLOP/s\n"
    )
    print("| model | depth | params | part | compile (s) | run (ms) | GFLOP | GFLOP/s | % peak |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for row in rows:
        label = row["model"]
        if row["options"].get("algorithm"):
            label += f" ({row['options']['algorithm']})"
        for part in ("forward", "step"):
            r = row[part]
            rate = f"{r['gflops_per_s']:.1f}" if r["gflops_per_s"] else "n/a"
            frac = f"{100 * r['fraction_of_peak']:.1f}" if r["fraction_of_peak"] else "n/a"
            print(
                f"| {label} | {row['options']['depth']} | {row['parameters']} | {part} "
                f"| {r['compile_s']:.2f} | {1e3 * r['run_s']:.1f} | {r['flops'] / 1e9:.2f} "
                f"| {rate} | {frac} |"
            )
    print(f"\n-> {args.out}")


if __name__ == "__main__":
    main()
