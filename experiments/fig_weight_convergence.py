"""Figure: the single-layer LSA converges to closed-form FTRL weights W* (THEORY §3).

Relative Frobenius error of W_eff against the training step for both objectives (imitation and
the squared regret-loss), on (d, T) ∈ {(2,25), (5,50), (10,100)} with σ = ρ = 1 and one full,
non-diagonal covariance, plus the learned W_eff beside W* for the full-covariance case.

    python experiments/fig_weight_convergence.py [--quick]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rmft_theory.envs import GaussianFOL
from rmft_theory.io import load_json, load_npz, save_json, save_npz
from rmft_theory.keys import Seeds
from rmft_theory.plotting import savefig, script_main, subplots
from rmft_theory.reproduce import unit
from rmft_theory.theory_path import train_theory
from rmft_theory.train import DirectTrainConfig

NAME = "fig_weight_convergence"
FULL_COV = (
    (1.0, 0.6, 0.2, 0.0),
    (0.6, 1.5, -0.4, 0.3),
    (0.2, -0.4, 0.8, 0.1),
    (0.0, 0.3, 0.1, 0.6),
)
CASES = {
    "d2_T25": GaussianFOL(d=2, horizon=25),
    "d5_T50": GaussianFOL(d=5, horizon=50),
    "d10_T100": GaussianFOL(d=10, horizon=100),
    "full_d4_T50": GaussianFOL(d=4, horizon=50, cov_kind="full", cov=FULL_COV),
}
OBJECTIVES = ("imitation", "regret-loss")


def configs(quick: bool) -> dict[str, DirectTrainConfig]:
    """Per-objective training budgets (the regret-loss uses its leave-one-out baseline)."""
    steps, batch = (600, 256) if quick else (4000, 512)
    return {o: DirectTrainConfig(o, steps=steps, batch_size=batch, chunk=200) for o in OBJECTIVES}


def compute(fig_dir: Path, quick: bool) -> None:
    """Train every (case, objective, seed) as one resumable unit; save curves and a summary."""
    seeds = (0,) if quick else (0, 1, 2)
    cfgs = configs(quick)
    arrays, summary = {}, {"seeds": list(seeds), "configs": cfgs, "cases": {}}
    for case, env in CASES.items():
        summary["cases"][case] = {"env": env}
        for objective in OBJECTIVES:
            finals = []
            for seed in seeds:
                tag = f"{case}__{objective}__s{seed}"

                def run(env=env, objective=objective, seed=seed):
                    s, curves = train_theory(env, cfgs[objective], Seeds.from_seed(seed))
                    keep = (
                        "rel_error",
                        "quad_rel",
                        "drift_rel",
                        "W_eff",
                        "W_star",
                        "heldout_policy_distance_rel",
                        "compile_s",
                        "run_s",
                    )
                    return {
                        **{f"curve_{k}": v for k, v in curves.items()},
                        **{k: s[k] for k in keep},
                    }

                u = unit(
                    fig_dir,
                    NAME,
                    tag,
                    run,
                    quick=quick,
                    settings={"env": env, "config": cfgs[objective], "seed": seed},
                )
                arrays[f"{tag}__rel_error_curve"] = u["curve_rel_error"]
                arrays[f"{tag}__W_eff"] = u["W_eff"]
                arrays[f"{case}__W_star"] = u["W_star"]
                finals.append(
                    {
                        k: float(u[k])
                        for k in (
                            "rel_error",
                            "quad_rel",
                            "drift_rel",
                            "heldout_policy_distance_rel",
                            "compile_s",
                            "run_s",
                        )
                    }
                )
            stats = {}
            for k in finals[0]:
                vals = np.array([f[k] for f in finals])
                stats[k] = {
                    "mean": vals.mean(),
                    "std": vals.std(ddof=1) if vals.size > 1 else 0.0,
                    "max": vals.max(),
                    "per_seed": vals,
                }
            summary["cases"][case][objective] = stats
    save_npz(fig_dir / f"{NAME}.npz", **arrays)
    save_json(fig_dir / f"{NAME}.json", summary)


def plot(fig_dir: Path) -> list[Path]:
    """Error curves for every case and objective, and W_eff beside W* for the full covariance."""
    data = load_npz(fig_dir / f"{NAME}.npz")
    summary = load_json(fig_dir / f"{NAME}.json")
    seeds = summary["seeds"]
    fig, axes = subplots(1, 4, figsize=(17, 4), width_ratios=(2.2, 1, 1, 1))
    ax = axes[0]
    colors = dict(zip(CASES, ("C0", "C1", "C2", "C3")))
    for case in CASES:
        for objective, ls in zip(OBJECTIVES, ("-", "--")):
            curves = np.stack([data[f"{case}__{objective}__s{s}__rel_error_curve"] for s in seeds])
            steps = np.arange(1, curves.shape[1] + 1)
            med = np.median(curves, axis=0)
            ax.plot(steps, med, ls, color=colors[case], lw=1.2, label=f"{case}, {objective}")
            if len(seeds) > 1:
                ax.fill_between(steps, curves.min(0), curves.max(0), color=colors[case], alpha=0.15)
    ax.axhline(0.02, color="k", lw=0.8, ls=":", label="2% target")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training step",
        ylabel=r"$\|W_{\rm eff}-W^*\|_F/\|W^*\|_F$",
        title="LSA → FTRL (band: min–max over seeds)",
    )
    ax.legend(fontsize=6, ncol=2)
    W_star = data["full_d4_T50__W_star"]
    lim = np.abs(W_star).max()
    panels = [("W* (closed form)", W_star)] + [
        (f"learned, {o}", data[f"full_d4_T50__{o}__s{seeds[0]}__W_eff"]) for o in OBJECTIVES
    ]
    for ax, (title, W) in zip(axes[1:], panels):
        im = ax.imshow(W, cmap="RdBu_r", vmin=-lim, vmax=lim)
        for (i, j), v in np.ndenumerate(W):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=6)
        ax.set(title=title, xticks=[], yticks=[])
    fig.colorbar(im, ax=axes[1:], shrink=0.8)
    return savefig(fig, fig_dir, NAME)


if __name__ == "__main__":
    script_main(compute, plot, NAME)
