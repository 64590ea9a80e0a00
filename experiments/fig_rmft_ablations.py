"""Figure: ablations of the regret filter (THEORY §4), d = 5, T = 50, σ = ρ = 1.

(a) One iteration against many, at the same number of tasks: zero-mean tasks on the ball with
    per-trajectory noise (``W_eff`` error), including the accumulating and from-base variants;
(b) the same on random-mean tasks on the simplex with sampled actions and cross-entropy
    (held-out regret over Hedge at its best η);
(c) regret selection against reward selection, per task and pooled over tasks (zero-mean ball,
    ``W_eff`` error). Within a task the L trajectories share the rewards, so the comparator is
    common and both selections keep the same trajectories; pooled over tasks they differ;
(d) the same selections on random-mean tasks on the ball (held-out regret over FTRL at η*);
(e) the effect of k and L: held-out regret after N iterations on random-mean simplex tasks
    with sampled actions, relative to Hedge at its best η.

    python experiments/fig_rmft_ablations.py [--quick]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from rmft_theory.envs import GaussianFOL
from rmft_theory.io import load_json, load_npz, save_json, save_npz
from rmft_theory.plotting import savefig, script_main, subplots
from rmft_theory.reproduce import unit
from rmft_theory.rmft import FilterConfig, filter_experiment

NAME = "fig_rmft_ablations"
D, T, MEAN_SCALE = 5, 50, 0.3
ENVS = {
    "zero": GaussianFOL(d=D, horizon=T),
    "random": GaussianFOL(d=D, horizon=T, mean_kind="random", mean_scale=MEAN_SCALE),
}
KEYS = (
    "hist_w_eff_rel_error",
    "hist_heldout_regret",
    "base_w_eff_rel_error",
    "base_heldout_regret",
    "ref_ftrl_eta_star_regret",
    "ref_hedge_best_eta_regret",
    "run_s",
)
SELECTIONS = {
    "per task, regret": {"scope": "task", "selection": "regret"},
    "per task, reward": {"scope": "task", "selection": "reward"},
    "pooled, regret": {"scope": "pooled", "selection": "regret"},
    "pooled, reward": {"scope": "pooled", "selection": "reward"},
}

SELECTION_STYLES = {
    "per task, regret": "o-",
    "per task, reward": "x--",
    "pooled, regret": "s-",
    "pooled, reward": "^-",
}


def settings(quick: bool) -> dict:
    """Base configurations of each panel and the sweeps."""
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
            tasks=64,
            rollouts=64,
            keep=1,
            iterations=4,
            noise="actions",
            space="simplex",
            loss="cross-entropy",
            finetune_steps=100,
            heldout_tasks=256,
        )
        return {
            "ball": ball,
            "simplex": simplex,
            "variants": ("many iterations", "many, accumulate"),
            "selections": ("per task, regret", "pooled, regret", "pooled, reward"),
            "selection_envs": ("zero",),
            "grid_rollouts": (16, 64),
            "grid_keep": (1,),
        }
    ball = FilterConfig(
        tasks=512,
        rollouts=256,
        keep=1,
        iterations=8,
        noise_scale=3.0,
        finetune_steps=200,
        heldout_tasks=1024,
    )
    simplex = FilterConfig(
        tasks=256,
        rollouts=256,
        keep=1,
        iterations=12,
        noise="actions",
        space="simplex",
        loss="cross-entropy",
        finetune_steps=200,
        heldout_tasks=1024,
    )
    return {
        "ball": ball,
        "simplex": simplex,
        "variants": ("many iterations", "many, accumulate", "many, accumulate, from base"),
        "selections": tuple(SELECTIONS),
        "selection_envs": ("zero", "random"),
        "grid_rollouts": (16, 64, 256),
        "grid_keep": (1, 4, 16),
    }


def _run(fig_dir, quick: bool, env_name: str, config: FilterConfig, seed: int = 0) -> dict:
    """One filter run as a resumable unit, named by its settings (equal settings share it)."""
    c = config
    tag = (
        f"{env_name}_{c.space}_{c.noise}_M{c.tasks}_L{c.rollouts}_k{c.keep}_N{c.iterations}"
        f"_steps{c.finetune_steps}_{c.scope}-{c.selection}"
        f"{'_acc' if c.accumulate else ''}{'_frombase' if c.from_base else ''}_seed{seed}"
    )

    def go():
        out = filter_experiment(ENVS[env_name], config, seed, desc=tag)
        return {k: out[k] for k in KEYS if k in out}

    settings = {"env": ENVS[env_name], "config": config, "seed": seed, "keys": KEYS}
    return unit(fig_dir, NAME, tag, go, quick=quick, settings=settings)


def _one_shot(config: FilterConfig) -> FilterConfig:
    """One iteration with all N·M tasks and N times the fine-tuning steps."""
    n = config.iterations
    return dataclasses.replace(
        config, tasks=config.tasks * n, iterations=1, finetune_steps=config.finetune_steps * n
    )


def compute(fig_dir: Path, quick: bool) -> None:
    """Every panel's runs as units, then the figure data."""
    s = settings(quick)
    ball, simplex = s["ball"], s["simplex"]
    arrays, summary = {}, {"settings": s, "mean_scale": MEAN_SCALE}

    # (a) one iteration vs many on the ball (W_eff error), with accumulate / from-base variants.
    variants = {
        "many iterations": ball,
        "many, accumulate": dataclasses.replace(ball, accumulate=True),
        "many, accumulate, from base": dataclasses.replace(ball, accumulate=True, from_base=True),
    }
    summary["a"] = {}
    for label in s["variants"]:
        u = _run(fig_dir, quick, "zero", variants[label])
        arrays[f"a__{label}"] = u["hist_w_eff_rel_error"]
        summary["a"][label] = float(u["hist_w_eff_rel_error"][-1])
    u = _run(fig_dir, quick, "zero", _one_shot(ball))
    arrays["a__one iteration"] = u["hist_w_eff_rel_error"]
    arrays["a__base"] = u["base_w_eff_rel_error"]
    summary["a"]["one iteration"] = float(u["hist_w_eff_rel_error"][-1])

    # (b) one vs many on the simplex with sampled actions (held-out regret / Hedge).
    summary["b"] = {}
    for label, cfg in (("many iterations", simplex), ("one iteration", _one_shot(simplex))):
        u = _run(fig_dir, quick, "random", cfg)
        ratio = u["hist_heldout_regret"] / u["ref_hedge_best_eta_regret"]
        arrays[f"b__{label}"] = ratio
        arrays["b__base"] = u["base_heldout_regret"] / u["ref_hedge_best_eta_regret"]
        summary["b"][label] = float(ratio[-1])

    # (c, d) regret vs reward selection, per task and pooled.
    for panel, env_name in zip("cd", ("zero", "random")):
        if env_name not in s["selection_envs"]:
            continue
        summary[panel] = {}
        for label in s["selections"]:
            u = _run(fig_dir, quick, env_name, dataclasses.replace(ball, **SELECTIONS[label]))
            if env_name == "zero":
                y = u["hist_w_eff_rel_error"]
            else:
                y = u["hist_heldout_regret"] / u["ref_ftrl_eta_star_regret"]
            arrays[f"{panel}__{label}"] = y
            summary[panel][label] = float(y[-1])

    # (e) k × L on the simplex with sampled actions.
    Ls, ks = s["grid_rollouts"], s["grid_keep"]
    grid = np.full((len(ks), len(Ls)), np.nan)
    for i, k in enumerate(ks):
        for j, L in enumerate(Ls):
            if k > L:
                continue
            u = _run(fig_dir, quick, "random", dataclasses.replace(simplex, keep=k, rollouts=L))
            grid[i, j] = u["hist_heldout_regret"][-1] / u["ref_hedge_best_eta_regret"]
    arrays["e__grid"] = grid
    arrays["e__rollouts"] = np.asarray(Ls)
    arrays["e__keep"] = np.asarray(ks)
    summary["e"] = {"rollouts": Ls, "keep": ks, "heldout_over_hedge": grid}
    save_npz(fig_dir / f"{NAME}.npz", **arrays)
    save_json(fig_dir / f"{NAME}.json", summary)


def plot(fig_dir: Path) -> list[Path]:
    """Five panels: (a)-(d) against iteration, (e) a k × L heat map."""
    data = load_npz(fig_dir / f"{NAME}.npz")
    summary = load_json(fig_dir / f"{NAME}.json")
    s = summary["settings"]
    fig, axes = subplots(1, 5, figsize=(22, 4.3))
    M_ball, M_simplex = s["ball"]["tasks"], s["simplex"]["tasks"]

    ax = axes[0]
    for label in s["variants"]:
        y = data[f"a__{label}"]
        ax.plot(M_ball * np.arange(1, len(y) + 1), y, "o-", ms=3, label=label)
    y = data["a__one iteration"]
    ax.plot([M_ball * s["ball"]["iterations"]], y, "k*", ms=12, label="one iteration, N·M tasks")
    ax.axhline(float(data["a__base"]), color="0.6", ls=":", label="base model")
    ax.axhline(0.1, color="k", lw=0.8, ls="--")
    ax.set(
        yscale="log",
        xlabel="tasks used",
        ylabel="‖W_eff − W*‖/‖W*‖",
        title="(a) one vs many, zero-mean ball",
    )

    ax = axes[1]
    y = data["b__many iterations"]
    ax.plot(M_simplex * np.arange(1, len(y) + 1), y, "o-", ms=3, label="many iterations")
    y = data["b__one iteration"]
    ax.plot(
        [M_simplex * s["simplex"]["iterations"]], y, "k*", ms=12, label="one iteration, N·M tasks"
    )
    ax.axhline(float(data["b__base"]), color="0.6", ls=":", label="base model")
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="Hedge at best η")
    ax.set(
        xlabel="tasks used",
        ylabel="held-out regret / Hedge",
        title="(b) one vs many, random-mean simplex, actions",
    )

    for ax, panel, ylabel, title in (
        (axes[2], "c", "‖W_eff − W*‖/‖W*‖", "(c) selection, zero-mean ball"),
        (axes[3], "d", "held-out regret / FTRL(η*)", "(d) selection, random-mean ball"),
    ):
        if panel not in summary:
            ax.text(0.5, 0.5, "full mode only", ha="center", transform=ax.transAxes)
            ax.set(title=title)
            continue
        for label in summary[panel]:
            y = data[f"{panel}__{label}"]
            ax.plot(np.arange(1, len(y) + 1), y, SELECTION_STYLES[label], ms=4, label=label)
        ax.set(xlabel="iteration", ylabel=ylabel, title=title)
        if panel == "c":
            ax.set_yscale("log")

    ax = axes[4]
    grid = data["e__grid"]
    im = ax.imshow(grid, cmap="YlOrRd", origin="lower")
    ax.set(
        xticks=range(len(data["e__rollouts"])),
        xticklabels=data["e__rollouts"],
        yticks=range(len(data["e__keep"])),
        yticklabels=data["e__keep"],
        xlabel="rollouts L",
        ylabel="kept k",
        title="(e) held-out regret / Hedge, simplex, actions",
    )
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in axes[:4]:
        ax.title.set_fontsize(9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    axes[4].title.set_fontsize(9)
    return savefig(fig, fig_dir, NAME)


if __name__ == "__main__":
    script_main(compute, plot, NAME)
