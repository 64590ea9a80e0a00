"""Figure: the regret filter against the closed form W* of THEORY §3 (the §4 bridge).

Zero-mean tasks, d = 5, T = 50, σ = ρ = 1, the single-layer LSA, k lowest-regret of L per task,
MSE fine-tuning of the raw outputs. Left: the relative error ``‖W_eff − W*‖_F/‖W*‖_F`` against
the iteration for per-trajectory and per-step Gaussian exploration (several seeds), plus
per-step exploration started at ``W_eff = W*``. Middle: the coefficient of ``W_eff`` along
``W*``, ``<W_eff, W*>/‖W*‖²`` (1 at FTRL; 0 = no drift towards it). Right: the final error as L,
the noise scale and k vary around the default (per-trajectory noise).

    python experiments/fig_rmft_to_theory.py [--quick]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from rmft_theory.envs import GaussianFOL
from rmft_theory.io import load_json, load_npz, save_json, save_npz
from rmft_theory.models import params_from_weights
from rmft_theory.plotting import savefig, script_main, subplots
from rmft_theory.reproduce import unit
from rmft_theory.rmft import FilterConfig, filter_experiment
from rmft_theory.theory import ftrl_weights

NAME = "fig_rmft_to_theory"
ENV = GaussianFOL(d=5, horizon=50)
KEYS = (
    "hist_w_eff_rel_error",
    "hist_w_eff_projection",
    "hist_w_eff_norm_ratio",
    "hist_w_eff_diag_ratio",
    "hist_heldout_regret",
    "base_w_eff_rel_error",
    "base_w_eff_projection",
    "hist_w_eff",
    "W_star",
    "run_s",
)


def settings(quick: bool) -> dict:
    """The headline configuration, seeds, and the one-at-a-time sweeps."""
    if quick:
        base = FilterConfig(
            tasks=256,
            rollouts=64,
            keep=1,
            iterations=4,
            noise_scale=3.0,
            finetune_steps=100,
            heldout_tasks=128,
        )
        return {
            "base": base,
            "seeds": (0,),
            "sweep_config": base,
            "sweeps": {"rollouts": (16, 64), "noise_scale": (1.0, 3.0), "keep": (1, 8)},
        }
    base = FilterConfig(
        tasks=1024,
        rollouts=256,
        keep=1,
        iterations=8,
        noise_scale=3.0,
        finetune_steps=200,
        heldout_tasks=512,
    )
    return {
        "base": base,
        "seeds": (0, 1, 2),
        "sweep_config": dataclasses.replace(base, iterations=6),
        "sweeps": {
            "rollouts": (16, 64, 256, 1024),
            "noise_scale": (0.3, 1.0, 3.0, 10.0),
            "keep": (1, 4, 16, 64),
        },
    }


def _run(fig_dir, quick: bool, config, seed, start="base"):
    """One filter run as a resumable unit, named by its settings (equal settings share it)."""
    c = config
    tag = (
        f"{c.noise}_M{c.tasks}_L{c.rollouts}_k{c.keep}_s{c.noise_scale:g}_N{c.iterations}"
        f"_steps{c.finetune_steps}_{start}_seed{seed}"
    )
    params = None
    if start == "W_star":
        W_star = ftrl_weights(ENV.cov_matrix, ENV.horizon, c.radius)
        params = params_from_weights(np.asarray(W_star, np.float32))

    def go():
        out = filter_experiment(ENV, config, seed, params=params, desc=tag)
        return {k: out[k] for k in KEYS}

    settings = {"env": ENV, "config": config, "seed": seed, "start": start, "keys": KEYS}
    return unit(fig_dir, NAME, tag, go, quick=quick, settings=settings)


def compute(fig_dir: Path, quick: bool) -> None:
    """Trajectories over iterations (per noise, per seed) and the final-error sweeps."""
    s = settings(quick)
    base = s["base"]
    arrays, summary = {}, {"settings": s, "env": ENV, "curves": {}, "sweeps": {}}
    runs = {
        "per-trajectory": dataclasses.replace(base, noise="per-trajectory"),
        "per-step": dataclasses.replace(base, noise="per-step", noise_scale=1.0),
    }
    for noise, cfg in runs.items():
        finals = {k: [] for k in ("rel_error", "projection", "norm_ratio", "diag_ratio")}
        for seed in s["seeds"]:
            u = _run(fig_dir, quick, cfg, seed)
            for k in ("w_eff_rel_error", "w_eff_projection"):
                arrays[f"{noise}__s{seed}__{k}"] = np.concatenate(
                    [u[f"base_{k}"][None], u[f"hist_{k}"]]
                )
            for k in finals:
                finals[k].append(float(u[f"hist_w_eff_{k}"][-1]))
            arrays[f"{noise}__s{seed}__W_eff"] = u["hist_w_eff"][-1]
        summary["curves"][noise] = {
            "config": cfg,
            "final_per_seed": finals,
            "final_mean": {k: float(np.mean(v)) for k, v in finals.items()},
            "final_max_rel_error": float(np.max(finals["rel_error"])),
        }
    # Per-step exploration started exactly at FTRL: does it stay there?
    u = _run(fig_dir, quick, runs["per-step"], 0, start="W_star")
    arrays["W_star"] = u["W_star"]
    for k in ("w_eff_rel_error", "w_eff_projection"):
        arrays[f"per-step-from-W_star__s0__{k}"] = np.concatenate(
            [u[f"base_{k}"][None], u[f"hist_{k}"]]
        )
    summary["curves"]["per-step-from-W_star"] = {
        "final_projection": float(u["hist_w_eff_projection"][-1]),
        "final_rel_error": float(u["hist_w_eff_rel_error"][-1]),
    }
    for param, values in s["sweeps"].items():
        errs = []
        for v in values:
            cfg = dataclasses.replace(s["sweep_config"], **{param: v})
            if cfg.keep > cfg.rollouts:
                errs.append(float("nan"))
                continue
            u = _run(fig_dir, quick, cfg, 0)
            errs.append(float(u["hist_w_eff_rel_error"][-1]))
        arrays[f"sweep__{param}__values"] = np.asarray(values, dtype=float)
        arrays[f"sweep__{param}__rel_error"] = np.asarray(errs)
        summary["sweeps"][param] = {"values": values, "final_rel_error": errs}
    save_npz(fig_dir / f"{NAME}.npz", **arrays)
    save_json(fig_dir / f"{NAME}.json", summary)


def plot(fig_dir: Path) -> list[Path]:
    """Error and projection against iteration; final error against L, noise scale and k."""
    data = load_npz(fig_dir / f"{NAME}.npz")
    summary = load_json(fig_dir / f"{NAME}.json")
    seeds = summary["settings"]["seeds"]
    fig, axes = subplots(1, 3, figsize=(16, 4.5))
    styles = {"per-trajectory": "C0", "per-step": "C3"}
    for noise, color in styles.items():
        for j, seed in enumerate(seeds):
            for ax, k in zip(axes[:2], ("w_eff_rel_error", "w_eff_projection")):
                y = data[f"{noise}__s{seed}__{k}"]
                ax.plot(
                    np.arange(len(y)),
                    y,
                    "o-",
                    ms=3,
                    color=color,
                    alpha=0.8,
                    label=f"{noise} noise" if j == 0 else None,
                )
    for ax, k in zip(axes[:2], ("w_eff_rel_error", "w_eff_projection")):
        y = data[f"per-step-from-W_star__s0__{k}"]
        if k == "w_eff_rel_error":
            y = np.maximum(y, 1e-3)  # it starts at exactly 0; shown at the axis floor
        ax.plot(np.arange(len(y)), y, "s--", ms=3, color="C1", label="per-step, started at W*")
    axes[0].axhline(0.1, color="k", lw=0.8, ls=":", label="10%")
    axes[0].set(
        yscale="log",
        xlabel="iteration (0 = base model)",
        ylabel=r"$\|W_{\rm eff}-W^*\|_F/\|W^*\|_F$",
        title="distance to FTRL",
    )
    axes[1].axhline(1.0, color="k", lw=0.8, ls=":")
    axes[1].axhline(0.0, color="k", lw=0.8)
    axes[1].set(
        xlabel="iteration (0 = base model)",
        ylabel=r"$\langle W_{\rm eff}, W^*\rangle / \|W^*\|_F^2$",
        title="component along W*",
    )
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    ax = axes[2]
    for param, marker in zip(summary["sweeps"], "o^s"):
        vals = data[f"sweep__{param}__values"]
        errs = data[f"sweep__{param}__rel_error"]
        ax.plot(vals, errs, marker + "-", label=f"vary {param}")
        for v, e in zip(vals, errs):
            ax.annotate(f"{v:g}", (v, e), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.axhline(0.1, color="k", lw=0.8, ls=":")
    cfg = summary["settings"]["sweep_config"]
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="value of the varied parameter",
        ylabel="final relative error",
        title=f"per-trajectory, around L={cfg['rollouts']}, s={cfg['noise_scale']:g}, "
        f"k={cfg['keep']}, M={cfg['tasks']}",
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return savefig(fig, fig_dir, NAME)


if __name__ == "__main__":
    script_main(compute, plot, NAME)
