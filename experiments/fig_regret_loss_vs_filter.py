"""Figure (issue #4): the squared regret-loss against the regret filter at equal budgets.

Zero-mean Gaussian full-information tasks on the ball (d = 5, T = 50, σ = ρ = 1), where the
closed form is FTRL at ``W* = η* I`` (THEORY §3). Two models: the single-layer LSA (error of its
invariant ``W_eff`` against ``W*``) and a softmax Transformer of depth 2, width 32 (held-out
distance of its policies to FTRL, relative to the mean ``‖π_FTRL‖``).

**Budget.** Every run uses Adam with the same learning rate and initialisation; cost is counted
in four currencies, and the runs are matched in the first:

* *sequence gradients* (compute): forward+backward passes of the model over one (T, d) sequence.
  The filter spends ``F·M`` per iteration (F full-batch fine-tuning steps on its M kept tasks),
  the direct regret-loss ``B`` per step; with ``B = M``, the filter after n iterations and the
  direct run of ``n·F`` steps have spent exactly the same;
* *fresh reward sequences* (data): the filter draws M tasks per iteration and reuses them for F
  steps; the direct run draws B new ones every step;
* *trajectories rolled out*: ``M·L`` per filter iteration (the model runs once per task; the L
  trajectories differ only by exploration noise, see ``rollout.py``); none for the direct run;
* *wall time* (seconds, compilation excluded; the filter's includes its per-iteration held-out
  evaluation, about 3% of an iteration).

Each filter iteration ends with its own cosine schedule, so the model after n iterations is the
final model of an n-iteration run; each direct point is its own run of that many steps (its
cosine schedule annealed), so both curves show *the final model of a run with that budget*.

    python experiments/fig_regret_loss_vs_filter.py [--quick]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.ticker import NullFormatter

from rmft_theory.analysis import (
    ball_policies,
    distance_report,
    invariant_report,
)
from rmft_theory.baselines import ftrl_policies
from rmft_theory.envs import GaussianFOL
from rmft_theory.io import load_json, load_npz, save_json, save_npz
from rmft_theory.keys import Seeds
from rmft_theory.metrics import seed_summary
from rmft_theory.models import make_model
from rmft_theory.plotting import savefig, script_main, subplots
from rmft_theory.reproduce import unit
from rmft_theory.rmft import FilterConfig, apply_function, heldout_rewards, run_filter
from rmft_theory.theory import ftrl_weights, posterior_comparator_policies
from rmft_theory.train import DirectTrainConfig, train_direct

NAME = "fig_regret_loss_vs_filter"
ENV = GaussianFOL(d=5, horizon=50)
EVAL_SEED = 1000  # held-out evaluation sequences, shared by every run
# name -> (registry name, options, Adam learning rate per method, the metric plotted for it);
# the learning rates are those of fig_depth_vs_ftrl (each method's best in pilot runs).
MODELS = {
    "LSA": ("lsa", {}, {"filter": 1e-2, "regret-loss": 1e-2}, "w_eff_rel_error"),
    "transformer d2": (
        "transformer",
        {"depth": 2, "width": 32},
        {"filter": 3e-3, "regret-loss": 1e-2},
        "ftrl_relative",
    ),
}
METRIC_LABELS = {
    "w_eff_rel_error": r"$\|W_{\rm eff}-W^*\|_F/\|W^*\|_F$",
    "ftrl_relative": "distance to FTRL at η* / mean ‖π_FTRL‖",
}
BUDGETS = {
    "sequence_gradients": "sequence gradients (compute)",
    "fresh_sequences": "fresh reward sequences (data)",
    "wall_s": "wall time, s (compile excluded)",
}
METHOD_LABELS = {"filter": "regret filter", "regret-loss": "squared regret-loss"}


def settings(quick: bool) -> dict:
    """Filter settings, the direct runs' step counts (batch = M), seeds, evaluation size."""
    if quick:
        filt = FilterConfig(
            tasks=64,
            rollouts=64,
            keep=1,
            iterations=3,
            noise_scale=3.0,
            finetune_steps=10,
            heldout_tasks=64,
        )
        return {"filter": filt, "direct_steps": (10, 30), "chunk": 10, "seeds": (0,), "n": 128}
    filt = FilterConfig(
        tasks=256,
        rollouts=256,
        keep=1,
        iterations=8,
        noise_scale=3.0,
        finetune_steps=50,
        heldout_tasks=64,
    )
    return {
        "filter": filt,
        "direct_steps": (25, 50, 100, 200, 400),
        "chunk": 25,
        "seeds": (0, 1),
        "n": 1024,
    }


def _metrics_fn(model_name: str, apply_fn, eval_set):
    """Held-out distances to FTRL and to the posterior comparator, and the LSA's W_eff error.

    The reference policies are precomputed arrays, so that XLA has nothing to constant-fold.
    """
    rewards, ftrl, posterior = eval_set
    W_star = jnp.asarray(ftrl_weights(ENV.cov_matrix, ENV.horizon), rewards.dtype)

    def metrics(params):
        pi = ball_policies(apply_fn, params, rewards)
        out = {
            "ftrl_relative": distance_report(pi, ftrl)["relative"],
            "posterior_relative": distance_report(pi, posterior)["relative"],
        }
        if MODELS[model_name][0] == "lsa":
            out["w_eff_rel_error"] = invariant_report(params, W_star)["rel_error"]
        return out

    return metrics


def _filter_run(model_name: str, seed: int, s: dict, eval_set) -> dict:
    """The filter, with the metrics and the four budgets after every iteration."""
    registry_name, options, lrs, _ = MODELS[model_name]
    model = make_model(registry_name, ENV.d, **options)
    c = dataclasses.replace(s["filter"], learning_rate=lrs["filter"])
    metrics = _metrics_fn(model_name, apply_function(model), eval_set)
    res = run_filter(model, ENV, c, Seeds.from_seed(seed), metrics_fn=metrics, quiet=True)
    n = np.arange(1, c.iterations + 1)
    out = {k: res.history[k] for k in ("ftrl_relative", "posterior_relative", "seconds")}
    if "w_eff_rel_error" in res.history:
        out["w_eff_rel_error"] = res.history["w_eff_rel_error"]
    out["sequence_gradients"] = n * c.finetune_steps * c.tasks
    out["forward_sequences"] = n * c.tasks * (c.finetune_steps + 1)  # + one rollout pass per task
    out["fresh_sequences"] = n * c.tasks
    out["trajectories"] = n * c.tasks * c.rollouts
    out["wall_s"] = np.cumsum(res.history["seconds"])
    out["compile_s"] = res.timings.compile_s
    return out


def _direct_run(model_name: str, steps: int, seed: int, s: dict, eval_set) -> dict:
    """One direct regret-loss run of ``steps`` steps with batch M, evaluated at its end."""
    registry_name, options, lrs, _ = MODELS[model_name]
    model = make_model(registry_name, ENV.d, **options)
    config = DirectTrainConfig(
        "regret-loss",
        steps=steps,
        batch_size=s["filter"].tasks,
        learning_rate=lrs["regret-loss"],
        chunk=min(steps, s["chunk"]),
    )
    res = train_direct(model, ENV, config, Seeds.from_seed(seed), quiet=True)
    metrics = jax.jit(_metrics_fn(model_name, apply_function(model), eval_set))
    out = {k: np.asarray(v) for k, v in metrics(res.params).items()}
    B = config.batch_size
    out.update(
        sequence_gradients=steps * B,
        forward_sequences=steps * B,
        fresh_sequences=steps * B,
        trajectories=0,
        wall_s=res.timings.run_s,
        compile_s=res.timings.compile_s,
        finite=all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(res.params)),
    )
    return out


def compute(fig_dir: Path, quick: bool) -> None:
    """Filter runs and direct runs at every budget as resumable units; save curves and table."""
    s = settings(quick)
    rewards = heldout_rewards(ENV, s["n"], Seeds.from_seed(EVAL_SEED).key("heldout"))
    posterior = jnp.asarray(posterior_comparator_policies(rewards), rewards.dtype)
    ftrl = _ftrl_policies(rewards)
    eval_set = (rewards, ftrl, posterior)
    gap = distance_report(posterior, ftrl)
    c = s["filter"]
    settings_tag = f"M{c.tasks}_L{c.rollouts}_k{c.keep}_F{c.finetune_steps}_n{s['n']}"
    arrays, table = {}, {}
    keys = ("ftrl_relative", "posterior_relative", "w_eff_rel_error", *BUDGETS)
    for model_name in MODELS:
        lrs = MODELS[model_name][2]
        slug = {m: f"{model_name.replace(' ', '_')}__lr{lrs[m]:g}__{settings_tag}" for m in lrs}
        table[model_name] = {"learning_rate": lrs, "filter": [], "regret-loss": []}
        per_method = {"filter": [], "regret-loss": []}
        common = {"env": ENV, "model": MODELS[model_name], "eval_seed": EVAL_SEED, "n": s["n"]}
        for seed in s["seeds"]:
            u = unit(
                fig_dir,
                NAME,
                f"{slug['filter']}__filter_N{c.iterations}__s{seed}",
                lambda m=model_name, sd=seed: _filter_run(m, sd, s, eval_set),
                quick=quick,
                settings={**common, "filter": c},
            )
            per_method["filter"].append(u)
            points = []
            for steps in s["direct_steps"]:
                points.append(
                    unit(
                        fig_dir,
                        NAME,
                        f"{slug['regret-loss']}__regret-loss_steps{steps}__s{seed}",
                        lambda m=model_name, st=steps, sd=seed: _direct_run(m, st, sd, s, eval_set),
                        quick=quick,
                        settings={**common, "batch": c.tasks, "chunk": s["chunk"]},
                    )
                )
            per_method["regret-loss"].append(
                {k: np.asarray([p[k] for p in points]) for k in points[0]}
            )
        for method, runs in per_method.items():
            for seed, u in zip(s["seeds"], runs):
                for k in keys:
                    if k in u:
                        arrays[f"{model_name}__{method}__s{seed}__{k}"] = u[k]
            for i in range(len(runs[0]["sequence_gradients"])):
                row = {
                    k: seed_summary([u[k][i] for u in runs])
                    for k in ("ftrl_relative", "posterior_relative", "w_eff_rel_error")
                    if k in runs[0]
                }
                row.update(
                    {
                        k: int(runs[0][k][i])
                        for k in (
                            "sequence_gradients",
                            "forward_sequences",
                            "fresh_sequences",
                            "trajectories",
                        )
                    }
                )
                row["wall_s"] = seed_summary([u["wall_s"][i] for u in runs])
                table[model_name][method].append(row)
            if method == "regret-loss":
                diverged = [sd for sd, u in zip(s["seeds"], runs) if not np.all(u["finite"])]
                table[model_name]["regret_loss_diverged_seeds"] = diverged
    summary = {
        "env": ENV,
        "settings": s,
        "budget_definitions": {
            "sequence_gradients": "forward+backward passes of the model over one (T, d) "
            "sequence; filter: iterations*F*M, direct: steps*B (matched, B = M)",
            "forward_sequences": "all model passes over a sequence, including the filter's "
            "one rollout pass per task and iteration",
            "fresh_sequences": "reward sequences drawn from the environment",
            "trajectories": "exploring trajectories rolled out by the filter (M*L per iteration)",
            "wall_s": "seconds of running, compile excluded; the filter's includes its "
            "per-iteration held-out evaluation",
        },
        "posterior_comparator_to_ftrl_relative": float(gap["relative"]),
        "table": table,
    }
    arrays["posterior_to_ftrl_relative"] = np.asarray(gap["relative"])
    save_npz(fig_dir / f"{NAME}.npz", **arrays)
    save_json(fig_dir / f"{NAME}.json", summary)


def _ftrl_policies(rewards_NxTxD):
    """FTRL at η* on the held-out sequences, (N, T, d)."""
    W = jnp.asarray(ftrl_weights(ENV.cov_matrix, ENV.horizon), rewards_NxTxD.dtype)
    return jax.vmap(ftrl_policies, in_axes=(0, None, None))(rewards_NxTxD, W, 1.0)


def plot(fig_dir: Path) -> list[Path]:
    """One row per model (its metric), one column per budget currency; both methods."""
    data = load_npz(fig_dir / f"{NAME}.npz")
    summary = load_json(fig_dir / f"{NAME}.json")
    seeds = summary["settings"]["seeds"]
    fig, axes = subplots(len(MODELS), len(BUDGETS), figsize=(16, 4.2 * len(MODELS)))
    styles = {"filter": ("C0", "o-"), "regret-loss": ("C3", "s--")}
    for row, (model_name, spec) in enumerate(MODELS.items()):
        metric = spec[3]
        for col, (budget, xlabel) in enumerate(BUDGETS.items()):
            ax = axes[row, col]
            for method, (color, style) in styles.items():
                xs = np.stack([data[f"{model_name}__{method}__s{sd}__{budget}"] for sd in seeds])
                ys = np.stack([data[f"{model_name}__{method}__s{sd}__{metric}"] for sd in seeds])
                ax.plot(
                    xs.mean(0), ys.mean(0), style, color=color, ms=4, label=METHOD_LABELS[method]
                )
                if len(seeds) > 1:
                    ax.plot(xs.ravel(), ys.ravel(), ".", color=color, ms=3, alpha=0.5)
            if metric == "ftrl_relative":
                ax.axhline(
                    float(data["posterior_to_ftrl_relative"]),
                    color="k",
                    ls=":",
                    label="posterior comparator (expressive limit)",
                )
            ax.set(
                xscale="log",
                yscale="log",
                xlabel=xlabel,
                ylabel=METRIC_LABELS[metric],
                title=f"{model_name}, lr: filter {spec[2]['filter']:g}, "
                f"regret-loss {spec[2]['regret-loss']:g}",
            )
            ax.xaxis.set_minor_formatter(NullFormatter())  # wall-time decades are short
            ax.legend(fontsize=7)
    fig.suptitle(
        "Regret filter vs squared regret-loss at equal budgets "
        f"(mean over seeds {seeds}; dots: seeds). Matched currency: sequence gradients",
        fontsize=10,
    )
    return savefig(fig, fig_dir, NAME)


if __name__ == "__main__":
    script_main(compute, plot, NAME)
