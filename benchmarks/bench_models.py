"""Deeper and nonlinear models: rollouts and fine-tuning steps as a fraction of the matmul peak.

For linear attention and the softmax Transformer at depths 1, 2 and 4 (width 64, 4 heads), plus
linear attention with the O(T) prefix-sum algorithm at depth 2 (the default algorithm is the
masked O(T²) form; this row shows why), and the single-layer LSA for scale:

* ``forward``: raw outputs ``g`` of B reward sequences, ``jax.vmap`` over the batch;
* ``rollout``: the filter rollout of B tasks with L = ``--rollouts`` per-trajectory-noise
  trajectories each (:func:`rmft_theory.rollout.rollout_scores`: model once per task,
  exploration, regret);
* ``step``: one Adam step on the imitation loss (MSE to the best action in hindsight, the
  regret filter's fine-tuning loss) of the same batch.

Each function is compiled ahead of time (compile time reported separately); its run time is
the median of ``--repeats`` interleaved calls after a warm-up. FLOPs come from XLA's
``cost_analysis``; the achieved GFLOP/s are compared with this machine's fp32 matmul peak,
measured in the same run (:func:`rmft_theory.benchmarking.machine_floors`, the better of a
large JAX and NumPy product). Writes ``benchmarks/results/models.{json,md}``::

    .venv/bin/python benchmarks/bench_models.py            # B=1024, T=100, d=5
    .venv/bin/python benchmarks/bench_models.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

from rmft_theory.benchmarking import (
    blocking,
    compile_jax,
    cost_flops,
    floors_markdown,
    load_average,
    machine_floors,
    markdown_table,
    time_interleaved,
    write_results,
)
from rmft_theory.models import make_model
from rmft_theory.objectives import imitation_loss
from rmft_theory.rmft import apply_function
from rmft_theory.rollout import Exploration, rollout_scores

PARTS = ("forward", "rollout", "step")


def model_parts(name: str, options: dict, rewards_BxTxD, n_rollouts: int) -> tuple[dict, int]:
    """Compiled ``forward``/``rollout``/``step`` of one model, their arguments and compile
    times, and the parameter count."""
    d = rewards_BxTxD.shape[-1]
    model = make_model(name, d=d, **options)
    apply_fn = apply_function(model)
    params = jax.jit(model.init)(jax.random.key(0), rewards_BxTxD[0])["params"]
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)
    exploration = Exploration("per-trajectory", 1.0)

    def forward(params, rewards_BxTxD):
        return jax.vmap(apply_fn, in_axes=(None, 0))(params, rewards_BxTxD)

    def rollout(params, rewards_BxTxD, key):
        return rollout_scores(apply_fn, params, rewards_BxTxD, key, exploration, n_rollouts)

    def loss(params, rewards_BxTxD):
        g_BxTxD = forward(params, rewards_BxTxD)
        return jnp.mean(jax.vmap(imitation_loss)(g_BxTxD, rewards_BxTxD))

    def step(params, opt_state, rewards_BxTxD):
        value, grads = jax.value_and_grad(loss)(params, rewards_BxTxD)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    args = {
        "forward": (params, rewards_BxTxD),
        "rollout": (params, rewards_BxTxD, jax.random.key(1)),
        "step": (params, opt_state, rewards_BxTxD),
    }
    out = {}
    for part, fn in zip(PARTS, (forward, rollout, step)):
        compiled, compile_s = compile_jax(fn, *args[part])
        out[part] = (compiled, args[part], compile_s)
    return out, int(sum(p.size for p in jax.tree.leaves(params)))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--horizon", type=int, default=100)
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--rollouts", type=int, default=16, help="trajectories per task (rollout)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.horizon, args.repeats, args.depths = 128, 50, 3, [1, 2]

    load_before = load_average()
    floors = machine_floors(quick=args.quick)
    rewards = jax.random.normal(jax.random.key(1), (args.batch, args.horizon, args.d))
    common = {"width": args.width, "heads": args.heads}
    cases = [("lsa", {})]
    cases += [("linear-attention", {**common, "depth": k}) for k in args.depths]
    cases.append(("linear-attention", {**common, "depth": 2, "algorithm": "prefix-sum"}))
    cases += [("transformer", {**common, "depth": k}) for k in args.depths]
    rows = []
    for name, options in cases:
        parts, n_params = model_parts(name, options, rewards, args.rollouts)
        times = time_interleaved(
            {part: blocking(c, *a) for part, (c, a, _) in parts.items()}, args.repeats
        )
        label = name + (f" ({options['algorithm']})" if options.get("algorithm") else "")
        for part, (compiled, _, compile_s) in parts.items():
            flops = cost_flops(compiled)
            run_s = times[part]["median_s"]
            rate = flops / run_s / 1e9 if flops else None
            rows.append(
                {
                    "model": label,
                    "options": options,
                    "depth": options.get("depth", 1),
                    "parameters": n_params,
                    "part": part,
                    "compile_s": compile_s,
                    "run_ms": 1e3 * run_s,
                    "runs_s": times[part]["runs_s"],
                    "gflop": flops / 1e9,
                    "gflops_per_s": rate,
                    "percent_of_peak": 100 * rate / floors["peak_gflops"] if rate else None,
                }
            )
    settings = {
        "batch": args.batch,
        "horizon": args.horizon,
        "d": args.d,
        "rollouts": args.rollouts,
        "width": args.width,
        "heads": args.heads,
        "repeats": args.repeats,
        "device": str(jax.devices()[0]),
    }
    payload = {
        "benchmark": "models",
        "quick": args.quick,
        "settings": settings,
        "floors": floors,
        "rows": rows,
        "load_average_1min": {"before": load_before, "after": load_average()},
    }
    md = [
        f"B={args.batch} sequences (rollout: B tasks × L={args.rollouts} trajectories), "
        f"T={args.horizon}, d={args.d}, width {args.width}, {args.heads} heads. FLOPs from "
        "XLA's cost analysis; % of the measured fp32 matmul peak.",
        "",
        floors_markdown(floors),
        "",
        markdown_table(
            rows,
            [
                "model",
                "depth",
                "parameters",
                "part",
                "compile_s",
                "run_ms",
                "gflop",
                "gflops_per_s",
                "percent_of_peak",
            ],
        ),
    ]
    write_results("models", payload, "\n".join(md))
    print("\n".join(md))
    return payload


if __name__ == "__main__":
    main()
