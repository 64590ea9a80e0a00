"""Figure: held-out cumulative regret of the regret filter against t (log–log), per iteration.

Three task sets (d = 5, T = 50, σ = ρ = 1): zero-mean tasks on the ball and random-mean tasks
(``μ ~ N(0, 0.3² I)``) on the ball, both with per-trajectory Gaussian exploration and MSE
fine-tuning (THEORY §4); random-mean tasks on the simplex with action sampling from
``softmax(g/τ)`` and cross-entropy fine-tuning (the language-model analogue). Each panel shows
the base model, the model after every iteration, and the baselines: FTRL at W* (= η* I) and
follow-the-leader on the ball; Hedge at its best η and follow-the-leader on the simplex. A table
of growth exponents β̂ (fit of log Regret_t on log t over t > T/2, bootstrap standard errors
over evaluation tasks) is saved beside the figure.

    python experiments/fig_rmft_regret_curves.py [--quick]
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from rmft_theory.envs import GaussianFOL
from rmft_theory.io import load_json, load_npz, save_json, save_npz
from rmft_theory.metrics import growth_summary
from rmft_theory.plotting import savefig, script_main, subplots
from rmft_theory.regret import growth_exponent
from rmft_theory.reproduce import unit
from rmft_theory.rmft import FilterConfig, filter_experiment

NAME = "fig_rmft_regret_curves"
D, T, MEAN_SCALE = 5, 50, 0.3
TASK_SETS = {
    "zero_mean_ball": GaussianFOL(d=D, horizon=T),
    "random_mean_ball": GaussianFOL(d=D, horizon=T, mean_kind="random", mean_scale=MEAN_SCALE),
    "random_mean_simplex": GaussianFOL(d=D, horizon=T, mean_kind="random", mean_scale=MEAN_SCALE),
}
TITLES = {
    "zero_mean_ball": "zero-mean tasks, ball, per-trajectory noise",
    "random_mean_ball": f"random-mean tasks (scale {MEAN_SCALE}), ball, per-trajectory noise",
    "random_mean_simplex": f"random-mean tasks (scale {MEAN_SCALE}), simplex, sampled actions",
}
BASELINE_LABELS = {
    "ftrl_eta_star": "FTRL at η* (W*)",
    "ftl": "follow-the-leader",
    "hedge_best_eta": "Hedge at best η",
}


def configs(quick: bool) -> dict[str, FilterConfig]:
    """Filter settings per task set; the action-sampling filter needs more iterations."""
    if quick:
        ball = FilterConfig(
            tasks=128,
            rollouts=64,
            keep=1,
            iterations=3,
            noise_scale=3.0,
            finetune_steps=100,
            heldout_tasks=256,
        )
        simplex = FilterConfig(
            tasks=128,
            rollouts=64,
            keep=1,
            iterations=5,
            noise="actions",
            space="simplex",
            loss="cross-entropy",
            finetune_steps=100,
            heldout_tasks=256,
        )
    else:
        ball = FilterConfig(
            tasks=1024,
            rollouts=256,
            keep=1,
            iterations=8,
            noise_scale=3.0,
            finetune_steps=200,
            heldout_tasks=1024,
        )
        simplex = FilterConfig(
            tasks=512,
            rollouts=256,
            keep=1,
            iterations=30,
            noise="actions",
            space="simplex",
            loss="cross-entropy",
            finetune_steps=200,
            heldout_tasks=1024,
        )
    return {"zero_mean_ball": ball, "random_mean_ball": ball, "random_mean_simplex": simplex}


def _beta(curves_NxT: np.ndarray) -> dict:
    """:func:`rmft_theory.metrics.growth_summary` with this figure's table keys."""
    summary = growth_summary(curves_NxT)
    return {"se" if k == "beta_se" else k: v for k, v in summary.items()}


def compute(fig_dir: Path, quick: bool) -> None:
    """One resumable unit per task set; then the β̂ table and the figure data."""
    cfgs = configs(quick)
    eval_tasks = 512 if quick else 4096
    arrays, summary = {}, {"configs": cfgs, "eval_tasks": eval_tasks, "task_sets": {}}
    for name, env in TASK_SETS.items():
        u = unit(
            fig_dir,
            NAME,
            name,
            lambda env=env, name=name: filter_experiment(
                env, cfgs[name], seed=0, eval_tasks=eval_tasks, quiet=quick, desc=name
            ),
            quick=quick,
            settings={"env": env, "config": cfgs[name], "seed": 0, "eval_tasks": eval_tasks},
        )
        arrays[f"{name}__base_curve"] = u["base_heldout_curve"]
        arrays[f"{name}__iteration_curves"] = u["hist_heldout_curve"]
        refs = sorted(k[len("eval_") :] for k in u if k.startswith("eval_"))
        refs = [r for r in refs if r not in ("base", "final")]
        for r in refs:
            arrays[f"{name}__ref_{r}_curve"] = u[f"ref_{r}_curve"]
        table = {"base": _beta(u["eval_base"]), "final": _beta(u["eval_final"])}
        table.update({r: _beta(u[f"eval_{r}"]) for r in refs})
        ref = "ftrl_eta_star" if "ftrl_eta_star" in refs else "hedge_best_eta"
        per_iter = [growth_exponent(c).beta for c in u["hist_heldout_curve"]]
        summary["task_sets"][name] = {
            "env": env,
            "beta_table": table,
            "reference": ref,
            "final_over_reference": table["final"]["final_regret"] / table[ref]["final_regret"],
            "beta_mean_curve_per_iteration": per_iter,
            "heldout_regret_per_iteration": u["hist_heldout_regret"],
            "w_eff_rel_error_per_iteration": u["hist_w_eff_rel_error"],
            "w_eff_centered_eta_final": float(u["hist_w_eff_centered_eta"][-1]),
            "hedge_eta": float(u["hedge_eta"]) if "hedge_eta" in u else None,
            "baselines": refs,
            "compile_s": float(u["compile_s"]),
            "run_s": float(u["run_s"]),
        }
    save_npz(fig_dir / f"{NAME}.npz", **arrays)
    save_json(fig_dir / f"{NAME}.json", summary)


def plot(fig_dir: Path) -> list[Path]:
    """Three log–log panels of mean held-out cumulative regret, and the β̂ table beneath."""
    data = load_npz(fig_dir / f"{NAME}.npz")
    summary = load_json(fig_dir / f"{NAME}.json")
    fig, axes = subplots(2, 3, figsize=(16, 7.5), height_ratios=(3, 1.1))
    for ax, tab_ax, (name, info) in zip(axes[0], axes[1], summary["task_sets"].items()):
        iters = data[f"{name}__iteration_curves"]
        t = np.arange(1, iters.shape[1] + 1)
        ax.plot(t, data[f"{name}__base_curve"], color="0.5", lw=1.5, ls=":", label="base model")
        cmap = matplotlib.colormaps["viridis"]
        for i, curve in enumerate(iters):
            label = (
                "after iteration 1"
                if i == 0
                else (f"after iteration {len(iters)}" if i == len(iters) - 1 else None)
            )
            ax.plot(t, curve, color=cmap(i / max(len(iters) - 1, 1)), lw=1.0, label=label)
        for r, style in zip(info["baselines"], ("--", "-.")):
            ax.plot(
                t,
                data[f"{name}__ref_{r}_curve"],
                "k" + style,
                lw=1.3,
                label=BASELINE_LABELS.get(r, r),
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="round t",
            ylabel="mean cumulative regret",
            title=TITLES[name],
        )
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
        rows = list(info["beta_table"].items())
        cell = [
            [
                BASELINE_LABELS.get(k, k + " model"),
                f"{v['beta']:.3f} ± {v['se']:.3f}",
                f"{v['final_regret']:.2f} ± {v['final_regret_se']:.2f}",
            ]
            for k, v in rows
        ]
        tab_ax.axis("off")
        table = tab_ax.table(
            cellText=cell, colLabels=["policy", "β̂ ± se", "Regret_T ± se"], loc="center"
        )
        table.auto_set_font_size(False)
        table.set_fontsize(7)
    return savefig(fig, fig_dir, NAME)


if __name__ == "__main__":
    script_main(compute, plot, NAME)
