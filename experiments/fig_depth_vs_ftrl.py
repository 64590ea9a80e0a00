"""Figure (issue #4): do deeper and nonlinear models trained by the regret filter become FTRL?

Zero-mean Gaussian full-information tasks on the ball, d = 5, T = 50, σ = ρ = 1: within the
linear class both objectives of THEORY §3 select FTRL at ``W* = η* I``. Models: the single-layer
LSA of THEORY §2, multi-layer causal linear attention (depth 1, 2, 4; no softmax) and the
softmax Transformer (width 32, depth 1, 2, 4). Each is trained

(a) by the regret filter (THEORY §4: per-trajectory noise, k lowest-regret of L per task, MSE
    fine-tuning), and
(b) directly on the squared regret-loss (leave-one-out control variate, antithetic batches),

with the **same compute**: the direct run's ``steps × batch`` equals the filter's
``iterations × fine-tuning steps × M`` per-sequence gradient evaluations (batch = M), the same
optimiser, learning rate and initialisation. On held-out sequences shared by every run:

* regret curves (log–log) with FTRL at η* as reference, and β̂ ± SE (bootstrap over sequences);
* the distance to FTRL at η*: the mean over rounds and sequences of ``‖π_model,t − π_FTRL,t‖``
  (both on the ball), absolute and relative to the mean ``‖π_FTRL,t‖``;
* the distance to the *posterior comparator* ``ρ E[S_T/‖S_T‖ | S_{t−1}]``, the minimiser of both
  objectives over all causal policies (:func:`rmft_theory.theory.posterior_comparator_policies`).
  It is not FTRL: its own distance to FTRL is the floor that an expressive, fully trained model
  would sit at.

The table of distances (mean, std and per-seed values) is saved as ``fig_depth_vs_ftrl.json``.

    python experiments/fig_depth_vs_ftrl.py [--quick]
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.analysis import (
    ball_policies,
    distance_report,
    ftrl_distance,
    invariant_report,
)
from rmft_theory.baselines import ftrl_policies
from rmft_theory.envs import GaussianFOL
from rmft_theory.io import load_json, load_npz, save_json, save_npz
from rmft_theory.keys import Seeds
from rmft_theory.metrics import growth_summary, seed_summary
from rmft_theory.models import make_model
from rmft_theory.plotting import savefig, script_main, subplots
from rmft_theory.regret import cumulative_regret
from rmft_theory.reproduce import unit
from rmft_theory.rmft import FilterConfig, apply_function, heldout_rewards, run_filter
from rmft_theory.theory import eta_star, ftrl_weights, posterior_comparator_policies
from rmft_theory.train import DirectTrainConfig, train_direct

NAME = "fig_depth_vs_ftrl"
ENV = GaussianFOL(d=5, horizon=50)
EVAL_SEED = 1000  # the held-out evaluation sequences, shared by every model, method and seed
METHODS = ("filter", "regret-loss")
METHOD_LABELS = {"filter": "regret filter", "regret-loss": "squared regret-loss"}
# name -> (registry name, options, Adam learning rate per method). Each method gets its best
# learning rate among pilot runs at this budget (seed 0, {1e-3, 3e-3, 1e-2}; relative distance to
# FTRL): the filter's fine-tuning of Transformers prefers 3e-3 (depth 2: 0.37 against 0.50 at
# 1e-2), the regret-loss 1e-2 (depth 2: 0.18 against 0.24 at 3e-3). Un-normalised linear
# attention diverged at depth 4 with 3e-3 (relative distance 1.8, worse than the zero policy)
# and at depth 2 with 1e-2, so those use 1e-3 and 3e-3 with both methods.
MODELS = {
    "LSA": ("lsa", {}, {"filter": 1e-2, "regret-loss": 1e-2}),
    "lin-attn d1": ("linear-attention", {"depth": 1}, {"filter": 1e-2, "regret-loss": 1e-2}),
    "lin-attn d2": ("linear-attention", {"depth": 2}, {"filter": 3e-3, "regret-loss": 3e-3}),
    "lin-attn d4": ("linear-attention", {"depth": 4}, {"filter": 1e-3, "regret-loss": 1e-3}),
    "transformer d1": (
        "transformer",
        {"depth": 1, "width": 32},
        {"filter": 3e-3, "regret-loss": 1e-2},
    ),
    "transformer d2": (
        "transformer",
        {"depth": 2, "width": 32},
        {"filter": 3e-3, "regret-loss": 1e-2},
    ),
    "transformer d4": (
        "transformer",
        {"depth": 4, "width": 32},
        {"filter": 1e-3, "regret-loss": 3e-3},
    ),
}
FAMILIES = {
    "linear attention (LSA, depth 1, 2, 4)": ("LSA", "lin-attn d1", "lin-attn d2", "lin-attn d4"),
    "softmax Transformer, width 32 (depth 1, 2, 4)": (
        "transformer d1",
        "transformer d2",
        "transformer d4",
    ),
}


def settings(quick: bool) -> dict:
    """Filter settings, the matched direct budget, seeds, models and evaluation size."""
    if quick:
        filt = FilterConfig(
            tasks=64,
            rollouts=64,
            keep=1,
            iterations=2,
            noise_scale=3.0,
            finetune_steps=10,
            heldout_tasks=64,
        )
        models = ("LSA", "lin-attn d2", "transformer d1")
        seeds, n_eval = (0,), 256
    else:
        filt = FilterConfig(
            tasks=256,
            rollouts=256,
            keep=1,
            iterations=6,
            noise_scale=3.0,
            finetune_steps=50,
            heldout_tasks=64,
        )
        models = tuple(MODELS)
        seeds, n_eval = (0, 1), 2048
    steps = filt.iterations * filt.finetune_steps
    direct = DirectTrainConfig(
        "regret-loss", steps=steps, batch_size=filt.tasks, chunk=filt.finetune_steps
    )
    budget = {
        "sequence_gradients": steps * filt.tasks,
        "filter_fresh_sequences": filt.iterations * filt.tasks,
        "filter_trajectories": filt.iterations * filt.tasks * filt.rollouts,
        "regret_loss_fresh_sequences": steps * filt.tasks,
    }
    return {
        "filter": filt,
        "direct": direct,
        "budget": budget,
        "models": models,
        "seeds": seeds,
        "eval_sequences": n_eval,
    }


@functools.partial(jax.jit, static_argnums=0)
def _evaluate(apply_fn, params, rewards_NxTxD, W_star, posterior_NxTxD):
    """Distances to FTRL and to the posterior comparator, and the regret curves (N, T)."""
    pi_NxTxD = ball_policies(apply_fn, params, rewards_NxTxD)
    curves = jax.vmap(cumulative_regret, in_axes=(0, 0, None))(rewards_NxTxD, pi_NxTxD, "ball")
    return (
        ftrl_distance(apply_fn, params, rewards_NxTxD, W_star),
        distance_report(pi_NxTxD, posterior_NxTxD),
        curves,
    )


def _train(model_name: str, method: str, seed: int, s: dict, eval_set) -> dict:
    """Train one model with one method; evaluate it on the shared held-out sequences."""
    registry_name, options, lrs = MODELS[model_name]
    lr = lrs[method]
    model = make_model(registry_name, ENV.d, **options)
    apply_fn = apply_function(model)
    seeds = Seeds.from_seed(seed)
    W_star = ftrl_weights(ENV.cov_matrix, ENV.horizon)
    rewards, posterior = eval_set
    out = {}
    if method == "filter":
        config = dataclasses.replace(s["filter"], learning_rate=lr)
        res = run_filter(model, ENV, config, seeds, quiet=True, desc=f"{model_name} filter")
        out["hist_heldout_regret"] = res.history["heldout_regret"]
        timings = res.timings
    else:
        config = dataclasses.replace(s["direct"], learning_rate=lr)
        res = train_direct(model, ENV, config, seeds, quiet=True)
        out["loss_curve"] = res.metrics["loss"]
        timings = res.timings
    params = res.params
    finite = all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))
    to_ftrl, to_post, curves = _evaluate(apply_fn, params, rewards, jnp.asarray(W_star), posterior)
    out.update({f"ftrl_{k}": v for k, v in to_ftrl.items() if k != "distance_per_sequence"})
    out.update({f"posterior_{k}": v for k, v in to_post.items() if k != "distance_per_sequence"})
    out.update(growth_summary(curves))
    out["regret_curve"] = np.asarray(curves).mean(axis=0)
    out["finite"] = finite
    out["learning_rate"] = lr
    out["compile_s"], out["run_s"] = timings
    if registry_name == "lsa":
        out["w_eff_rel_error"] = invariant_report(params, W_star)["rel_error"]
    return out


def _eval_set(n: int):
    """The held-out sequences and the posterior comparator's policies on them."""
    rewards = heldout_rewards(ENV, n, Seeds.from_seed(EVAL_SEED).key("heldout"))
    posterior = jnp.asarray(posterior_comparator_policies(rewards), rewards.dtype)
    return rewards, posterior


def _references(eval_set) -> dict:
    """FTRL at η* and the posterior comparator on the held-out sequences."""
    rewards, posterior = eval_set
    W_star = jnp.asarray(ftrl_weights(ENV.cov_matrix, ENV.horizon), rewards.dtype)
    ftrl = jax.vmap(ftrl_policies, in_axes=(0, None, None))(rewards, W_star, 1.0)
    regret = jax.vmap(cumulative_regret, in_axes=(0, 0, None))
    out = {}
    for name, pi in (("ftrl", ftrl), ("posterior", posterior)):
        curves = regret(rewards, pi, "ball")
        out.update({f"{name}_{k}": v for k, v in growth_summary(curves).items()})
        out[f"{name}_regret_curve"] = np.asarray(curves).mean(axis=0)
    gap = distance_report(posterior, ftrl)  # the posterior comparator measured against FTRL
    out["posterior_to_ftrl_distance"] = gap["distance"]
    out["posterior_to_ftrl_relative"] = gap["relative"]
    out["posterior_to_ftrl_per_round"] = gap["distance_per_round"]
    out["ftrl_norm"] = jnp.mean(jnp.linalg.norm(ftrl, axis=-1))
    return out


CURVE_KEYS = ("regret_curve", "ftrl_distance_per_round", "posterior_distance_per_round")
TABLE_KEYS = {
    "distance_to_ftrl": "ftrl_distance",
    "distance_to_ftrl_relative": "ftrl_relative",
    "distance_to_posterior": "posterior_distance",
    "distance_to_posterior_relative": "posterior_relative",
    "beta": "beta",
    "beta_se": "beta_se",
    "final_regret": "final_regret",
    "run_s": "run_s",
    "compile_s": "compile_s",
}


def compute(fig_dir: Path, quick: bool) -> None:
    """One resumable unit per (model, method, seed) and one for the references; then the table."""
    s = settings(quick)
    eval_set = _eval_set(s["eval_sequences"])
    ref = unit(
        fig_dir,
        NAME,
        f"references_n{s['eval_sequences']}",
        lambda: _references(eval_set),
        quick=quick,
        settings={"env": ENV, "eval_seed": EVAL_SEED, "n": s["eval_sequences"]},
    )
    arrays = {f"ref__{k}": v for k, v in ref.items()}
    table = {}
    for model_name in s["models"]:
        table[model_name] = {"learning_rate": MODELS[model_name][2]}
        for method in METHODS:
            units = []
            for seed in s["seeds"]:
                c = s["filter"]
                tag = (
                    f"{model_name.replace(' ', '_')}__{method}__lr{MODELS[model_name][2][method]:g}"
                    f"__M{c.tasks}_L{c.rollouts}_k{c.keep}_N{c.iterations}_F{c.finetune_steps}"
                    f"__n{s['eval_sequences']}__s{seed}"
                )
                u = unit(
                    fig_dir,
                    NAME,
                    tag,
                    lambda m=model_name, me=method, sd=seed: _train(m, me, sd, s, eval_set),
                    quick=quick,
                    settings={
                        "env": ENV,
                        "model": MODELS[model_name],
                        "config": s["filter" if method == "filter" else "direct"],
                        "eval_seed": EVAL_SEED,
                        "n": s["eval_sequences"],
                    },
                )
                if not bool(u["finite"]):
                    warnings.warn(f"{tag}: non-finite parameters (diverged)", stacklevel=1)
                units.append(u)
                for k in (
                    "regret_curve",
                    "ftrl_distance_per_round",
                    "posterior_distance_per_round",
                ):
                    arrays[f"{model_name}__{method}__s{seed}__{k}"] = u[k]
            row = {name: seed_summary([u[k] for u in units]) for name, k in TABLE_KEYS.items()}
            row["diverged_seeds"] = [sd for sd, u in zip(s["seeds"], units) if not u["finite"]]
            if "w_eff_rel_error" in units[0]:
                row["w_eff_rel_error"] = seed_summary([u["w_eff_rel_error"] for u in units])
            table[model_name][method] = row
    summary = {
        "question": "Do deeper and nonlinear models trained by the regret filter become "
        "no-regret learners, and how close to FTRL at eta* do they come? (issue #4)",
        "distance_definition": "mean over rounds t and held-out sequences of "
        "||pi_model,t - pi_ref,t||, both policies projected on the ball; 'relative' divides "
        "by the mean ||pi_ref,t||. The zero policy has relative distance 1.",
        "regret_caveat": "on zero-mean i.i.d. tasks every causal policy has expected regret "
        "rho E||S_T||, so regret curves and beta-hat cannot separate the models (THEORY §3); "
        "the distances can",
        "env": ENV,
        "eta_star": eta_star(ENV.d, ENV.horizon),
        "settings": s,
        "references": {
            "ftrl_mean_policy_norm": float(ref["ftrl_norm"]),
            "posterior_comparator_to_ftrl": {
                "distance": float(ref["posterior_to_ftrl_distance"]),
                "relative": float(ref["posterior_to_ftrl_relative"]),
                "note": "the minimiser of both objectives over all causal policies; an "
                "expressive, fully trained model sits this far from FTRL",
            },
            "ftrl": {k: float(ref[f"ftrl_{k}"]) for k in ("beta", "beta_se", "final_regret")},
            "posterior": {
                k: float(ref[f"posterior_{k}"]) for k in ("beta", "beta_se", "final_regret")
            },
        },
        "table": table,
    }
    save_npz(fig_dir / f"{NAME}.npz", **arrays)
    save_json(fig_dir / f"{NAME}.json", summary)


def _seed_mean(data, model_name, method, key, seeds):
    return np.mean([data[f"{model_name}__{method}__s{sd}__{key}"] for sd in seeds], axis=0)


def plot(fig_dir: Path) -> list[Path]:
    """Regret curves and per-round distances per family; distance and β̂ per model and method."""
    data = load_npz(fig_dir / f"{NAME}.npz")
    summary = load_json(fig_dir / f"{NAME}.json")
    seeds, models = summary["settings"]["seeds"], summary["settings"]["models"]
    table, refs = summary["table"], summary["references"]
    fig, axes = subplots(2, 4, figsize=(22, 9))
    styles = {"filter": "-", "regret-loss": "--"}
    t = np.arange(1, len(data["ref__ftrl_regret_curve"]) + 1)
    for col, (family, members) in enumerate(FAMILIES.items()):
        members = [m for m in members if m in models]
        ax_r, ax_d = axes[0, col], axes[1, col]
        for i, m in enumerate(members):
            for method in METHODS:
                label = f"{m}, {METHOD_LABELS[method]}"
                curve = _seed_mean(data, m, method, "regret_curve", seeds)
                ax_r.plot(t, curve, styles[method], color=f"C{i}", lw=1.2, label=label)
                dist = _seed_mean(data, m, method, "ftrl_distance_per_round", seeds)
                ax_d.plot(t, dist, styles[method], color=f"C{i}", lw=1.2, label=label)
        ftrl_b = refs["ftrl"]
        ax_r.plot(
            t,
            data["ref__ftrl_regret_curve"],
            "k:",
            lw=2,
            label=f"FTRL at η* (β̂ = {ftrl_b['beta']:.3f} ± {ftrl_b['beta_se']:.3f})",
        )
        ax_r.set(
            xscale="log",
            yscale="log",
            xlabel="round t",
            ylabel="mean cumulative regret (held out)",
            title=f"{family}: regret\n(zero-mean tasks: every causal policy has the same "
            "expected regret, THEORY §3)",
        )
        ax_d.plot(
            t,
            data["ref__posterior_to_ftrl_per_round"],
            "k:",
            lw=2,
            label="posterior comparator (expressive limit)",
        )
        ax_d.set(
            xlabel="round t",
            ylabel=r"mean $\|\pi_{\rm model,t}-\pi_{\rm FTRL,t}\|$",
            title=f"{family}: distance to FTRL at η* per round",
        )
        for ax in (ax_r, ax_d):
            ax.title.set_fontsize(9)
            ax.legend(fontsize=6)
    x = np.arange(len(models))
    width = 0.38
    for row, (key, title) in enumerate(
        (
            ("distance_to_ftrl_relative", "distance to FTRL at η* / mean ‖π_FTRL‖"),
            ("distance_to_posterior_relative", "distance to posterior comparator / its norm"),
        )
    ):
        ax = axes[row, 2]
        for j, method in enumerate(METHODS):
            means = [table[m][method][key]["mean"] for m in models]
            ax.bar(x + (j - 0.5) * width, means, width, color=f"C{j}", alpha=0.6, label=method)
            for i, m in enumerate(models):
                per_seed = table[m][method][key]["per_seed"]
                ax.plot([x[i] + (j - 0.5) * width] * len(per_seed), per_seed, "k.", ms=4)
        if row == 0:
            ax.axhline(
                refs["posterior_comparator_to_ftrl"]["relative"],
                color="k",
                ls=":",
                label="posterior comparator",
            )
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--", label="zero policy")
        ax.set_xticks(x, models, rotation=30, ha="right", fontsize=7)
        ax.set(ylabel="relative distance (dots: seeds)", title=title)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    ax = axes[0, 3]
    for j, method in enumerate(METHODS):
        b = [table[m][method]["beta"]["mean"] for m in models]
        se = [table[m][method]["beta_se"]["mean"] for m in models]
        ax.errorbar(x + (j - 0.5) * 0.2, b, yerr=se, fmt="o", color=f"C{j}", label=method)
    ax.axhline(refs["ftrl"]["beta"], color="k", ls=":", label="FTRL at η*")
    ax.axhline(0.5, color="0.5", lw=0.8, ls="--", label="β = 1/2")
    ax.set_xticks(x, models, rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="β̂ ± SE (fit over t > T/2)", title="regret growth exponent (mean over seeds)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    ax = axes[1, 3]
    ax.axis("off")
    lines = []
    for key, title in (
        ("distance_to_ftrl_relative", "relative distance to FTRL at η*"),
        ("distance_to_posterior_relative", "relative distance to the posterior comparator"),
    ):
        lines += [f"{title}, mean ± std over seeds", ""]
        lines.append(f"{'model':<16}{'filter':>16}{'regret-loss':>16}")
        for m in models:
            cells = []
            for method in METHODS:
                st = table[m][method][key]
                flag = " !" if table[m][method]["diverged_seeds"] else ""
                cells.append(f"{st['mean']:.3f} ± {st['std']:.3f}{flag}")
            lines.append(f"{m:<16}{cells[0]:>16}{cells[1]:>16}")
        lines.append("")
    gap = refs["posterior_comparator_to_ftrl"]["relative"]
    lines += [f"posterior comparator vs FTRL: {gap:.3f}", f"seeds: {seeds}"]
    b = summary["settings"]["budget"]
    lines.append(f"budget: {b['sequence_gradients']:,} sequence gradients per run")
    ax.text(0, 1, "\n".join(lines), family="monospace", fontsize=7.5, va="top")
    return savefig(fig, fig_dir, NAME)


if __name__ == "__main__":
    script_main(compute, plot, NAME)
