"""Figure: the regret filter under bandit feedback against classical bandit algorithms.

A small causal Transformer (registry ``"transformer"``, width 32, depth 2) is trained from its
initialisation (uniform play) by the regret filter on bandit feedback (THEORY §4 with action
sampling; :mod:`rmft_theory.bandit_filter`): per iteration M fresh tasks, L trajectories each
drawn from ``p_t = (1 − γ) softmax(g_t) + γ/d``, the model fed the importance-weighted estimates
``r̂_s = r_s(a_s) e_{a_s}/p_s(a_s)``, the lowest realised regret per task kept, cross-entropy on
the kept arms. The single-layer LSA trained the same way (whose W_eff = ηI is EXP3) is shown for
comparison. Two task families, d = 3 arms, T = 50 rounds: Bernoulli arms with means
``μ_a ~ U[0, 1]`` and Gaussian arms ``N(μ_a, 1)`` with ``μ_a ~ N(0, 0.5²)``.

Panels per family: pseudo-regret curves (mean and 95% percentile-bootstrap interval over
evaluation tasks) of the trained models, UCB1, Thompson sampling, ε-greedy (ε = 0.1), EXP3
(Bernoulli) and uniform play; the fraction of runs that never pull the best arm after round t;
and the held-out pseudo-regret against the filter iteration. Numbers go to the JSON beside it.

    python experiments/fig_bandits.py [--quick]
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory import bandit_filter, metrics
from rmft_theory.bandit_rollout import sample_tables
from rmft_theory.envs import make_env
from rmft_theory.io import load_json, load_npz, save_json, save_npz
from rmft_theory.keys import Seeds
from rmft_theory.models import make_model, params_from_weights
from rmft_theory.plotting import savefig, script_main, subplots
from rmft_theory.reproduce import fingerprint, unit, units_dir
from rmft_theory.rmft import FilterConfig, apply_function, run_filter

NAME = "fig_bandits"
D, T = 3, 50
ENVS = {
    "bernoulli": make_env("bernoulli-bandit", d=D, horizon=T),
    "gaussian": make_env("gaussian-bandit", d=D, horizon=T, mean_scale=0.5, sigma=1.0),
}
TITLES = {
    "bernoulli": f"Bernoulli arms, μ ~ U[0,1], d={D}, T={T}",
    "gaussian": f"Gaussian arms N(μ, 1), μ ~ N(0, 0.5²), d={D}, T={T}",
}
MODELS = {
    "transformer": {"width": 32, "depth": 2},
    "lsa": {},
}
LABELS = {
    "transformer": "Transformer, filter-trained",
    "lsa": "LSA, filter-trained",
    "ucb1": "UCB1",
    "thompson": "Thompson sampling",
    "epsilon_greedy": "ε-greedy (ε=0.1)",
    "exp3": "EXP3 (standard γ)",
    "uniform": "uniform",
}
STYLES = {
    "transformer": ("C3", "-"),
    "lsa": ("C1", "-"),
    "ucb1": ("C0", "--"),
    "thompson": ("C2", "--"),
    "epsilon_greedy": ("C4", "--"),
    "exp3": ("C5", "-."),
    "uniform": ("0.5", ":"),
}
UNIFORM_MIX = 0.05
EVAL_SEED = 1000  # evaluation tasks: disjoint from the training and held-out streams


def configs(quick: bool) -> dict[str, FilterConfig]:
    """Filter settings per model (the LSA is cheap, so it gets more tasks and iterations)."""
    common = {
        "noise": "actions",
        "space": "simplex",
        "loss": "cross-entropy",
        "keep": 1,
        "finetune_steps": 50,
        "uniform_mix": UNIFORM_MIX,
    }
    if quick:
        return {
            "transformer": FilterConfig(
                tasks=32,
                rollouts=16,
                iterations=3,
                learning_rate=3e-3,
                heldout_tasks=128,
                task_chunk=32,
                **common,
            ),
            "lsa": FilterConfig(
                tasks=64,
                rollouts=32,
                iterations=6,
                learning_rate=3e-2,
                heldout_tasks=128,
                **common,
            ),
        }
    return {
        "transformer": FilterConfig(
            tasks=64,
            rollouts=32,
            iterations=16,
            learning_rate=3e-3,
            heldout_tasks=256,
            **common,
        ),
        "lsa": FilterConfig(
            tasks=256,
            rollouts=64,
            iterations=20,
            learning_rate=3e-2,
            heldout_tasks=256,
            **common,
        ),
    }


def _unit_settings(env_name: str, model_name: str | None, cfg: FilterConfig | None) -> dict:
    """What a unit's result depends on beyond the mode (the evaluation size follows the mode)."""
    return {
        "env": ENVS[env_name],
        "model": MODELS[model_name] if model_name else None,
        "config": cfg,
        "eval_seed": EVAL_SEED,
    }


def _train_and_evaluate(env_name: str, model_name: str, cfg: FilterConfig, fig_dir: Path, quick):
    """Run the filter (checkpointed, so an interrupted run resumes) and evaluate the result.

    The checkpoint's folder is named by the unit's fingerprint, so that a run with other settings
    (or in the other mode) starts its own instead of meeting one it may not resume."""
    env = ENVS[env_name]
    model = make_model(model_name, D, **MODELS[model_name])
    seeds = Seeds.from_seed(0)
    settings = _unit_settings(env_name, model_name, cfg)
    params = (
        params_from_weights(jnp.zeros((D, D)))  # W_eff = 0: uniform play, like the Transformer
        if model_name == "lsa"
        else None
    )
    result = run_filter(
        model,
        env,
        cfg,
        seeds,
        params=params,
        checkpoint_dir=units_dir(fig_dir, NAME)
        / f"checkpoint_{env_name}_{model_name}_{fingerprint(quick, settings)[:12]}",
        quiet=quick,
        desc=f"{env_name}/{model_name}",
    )
    means, rewards, key = _eval_tasks(env, quick)
    run = jax.jit(bandit_filter.model_runs, static_argnums=(0, 4, 5))
    sampling = bandit_filter.sampling_for(cfg)
    actions = run(apply_function(model), result.params, rewards, key, sampling, 256).actions
    out = {k: np.asarray(v) for k, v in bandit_filter.run_metrics(means, rewards, actions).items()}
    out["hist_heldout_regret"] = result.history["heldout_regret"]
    out["hist_heldout_regret_se"] = result.history["heldout_regret_se"]
    out["base_heldout_regret"] = np.asarray(result.base["heldout_regret"])
    out["compile_s"] = np.asarray(result.timings.compile_s)
    out["run_s"] = np.asarray(result.timings.run_s)
    for k, v in result.reference.items():
        if k.endswith("_heldout_regret"):
            out[f"ref_{k}"] = np.asarray(v)
    return out


def _eval_tasks(env, quick: bool):
    n = 256 if quick else 2000
    seeds = Seeds.from_seed(EVAL_SEED)
    means, rewards = jax.jit(sample_tables, static_argnums=(0, 3))(
        env, seeds.key("tasks"), seeds.key("rewards"), n
    )
    return means, rewards, seeds.key("actions")


def _baselines(env_name: str, quick: bool) -> dict[str, np.ndarray]:
    env = ENVS[env_name]
    means, rewards, key = _eval_tasks(env, quick)
    out = {}
    for name, algo in bandit_filter.baselines(env).items():
        fn = jax.jit(
            lambda m, r, k, algo=algo: bandit_filter.run_metrics(
                m, r, bandit_filter.algorithm_runs(algo, r, k)
            )
        )
        for k, v in fn(means, rewards, key).items():
            out[f"{name}__{k}"] = np.asarray(v)
    return out


def _summary(per_run: dict, n_boot: int) -> tuple[dict, dict]:
    """Scalars (with bootstrap CIs) for the JSON, and curve bands for the figure."""
    curve = per_run["pseudo_curve"]
    cis = [metrics.bootstrap_ci(curve[:, t], n_boot=n_boot, seed=t) for t in range(T)]
    f_t = metrics.never_pulled_after(per_run["last_pull_best"], T)
    ts = [0, 5, 10, 25, 40, T - 1]
    final = metrics.bootstrap_ci(per_run["pseudo_regret"], n_boot=n_boot)
    realised = metrics.bootstrap_ci(per_run["realised_regret"], n_boot=n_boot)
    scalars = {
        "pseudo_regret": {"mean": final.estimate, "ci_low": final.low, "ci_high": final.high},
        "realised_regret": {
            "mean": realised.estimate,
            "ci_low": realised.low,
            "ci_high": realised.high,
        },
        "min_pull_fraction_mean": float(np.mean(per_run["min_pull_fraction"])),
        "fraction_runs_with_an_unpulled_arm": float(np.mean(per_run["min_pull_fraction"] == 0)),
        "never_pulls_best_after_t": {str(t): float(f_t[t]) for t in ts},
    }
    bands = {
        "mean": np.array([c.estimate for c in cis]),
        "low": np.array([c.low for c in cis]),
        "high": np.array([c.high for c in cis]),
        "never_pulled_after": f_t,
    }
    return scalars, bands


def compute(fig_dir: Path, quick: bool) -> None:
    """One resumable unit per (family, model) and per family's baselines; then the summary."""
    cfgs = configs(quick)
    n_boot = 500 if quick else 2000
    arrays, summary = {}, {"configs": cfgs, "models": MODELS, "families": {}}
    for env_name, env in ENVS.items():
        fam = {"env": env, "policies": {}, "training": {}}
        per_policy = {}
        for model_name, cfg in cfgs.items():
            u = unit(
                fig_dir,
                NAME,
                f"{env_name}__{model_name}",
                lambda e=env_name, m=model_name, c=cfg: _train_and_evaluate(
                    e, m, c, fig_dir, quick
                ),
                quick=quick,
                settings=_unit_settings(env_name, model_name, cfg),
            )
            per_policy[model_name] = u
            arrays[f"{env_name}__{model_name}__hist"] = u["hist_heldout_regret"]
            arrays[f"{env_name}__{model_name}__hist_se"] = u["hist_heldout_regret_se"]
            fam["training"][model_name] = {
                "heldout_regret_per_iteration": u["hist_heldout_regret"],
                "base_heldout_regret": float(u["base_heldout_regret"]),
                "reference_heldout_regret": {
                    k.removeprefix("ref_").removesuffix("_heldout_regret"): float(v)
                    for k, v in u.items()
                    if k.startswith("ref_")
                },
                "compile_s": float(u["compile_s"]),
                "run_s": float(u["run_s"]),
            }
        b = unit(
            fig_dir,
            NAME,
            f"{env_name}__baselines",
            lambda e=env_name: _baselines(e, quick),
            quick=quick,
            settings=_unit_settings(env_name, None, None),
        )
        for name in bandit_filter.baselines(env):
            per_policy[name] = {
                k.split("__", 1)[1]: v for k, v in b.items() if k.startswith(f"{name}__")
            }
        for name, per_run in per_policy.items():
            scalars, bands = _summary(per_run, n_boot)
            fam["policies"][name] = scalars
            for k, v in bands.items():
                arrays[f"{env_name}__{name}__{k}"] = v
        fam["eval_tasks"] = int(per_policy["uniform"]["pseudo_regret"].shape[0])
        summary["families"][env_name] = fam
    save_npz(fig_dir / f"{NAME}.npz", **arrays)
    save_json(fig_dir / f"{NAME}.json", summary)


def plot(fig_dir: Path) -> list[Path]:
    """Per family: regret curves with CIs, never-pulls-the-best-arm-after-t, training curves."""
    data = load_npz(fig_dir / f"{NAME}.npz")
    summary = load_json(fig_dir / f"{NAME}.json")
    fams = summary["families"]
    fig, axes = subplots(len(fams), 3, figsize=(16, 4.3 * len(fams)), squeeze=False)
    t = np.arange(1, T + 1)
    for row, (env_name, fam) in zip(axes, fams.items()):
        ax_curve, ax_explore, ax_train = row
        for name, scalars in fam["policies"].items():
            color, ls = STYLES.get(name, ("k", "-"))
            mean = data[f"{env_name}__{name}__mean"]
            label = f"{LABELS.get(name, name)}: {scalars['pseudo_regret']['mean']:.2f}"
            ax_curve.plot(t, mean, ls, color=color, lw=1.4, label=label)
            ax_curve.fill_between(
                t,
                data[f"{env_name}__{name}__low"],
                data[f"{env_name}__{name}__high"],
                color=color,
                alpha=0.2,
            )
            f_t = data[f"{env_name}__{name}__never_pulled_after"]
            ax_explore.plot(np.arange(T + 1), f_t, ls, color=color, lw=1.4, label=LABELS[name])
        ax_curve.set(
            xlabel="round t",
            ylabel="mean pseudo-regret (95% bootstrap CI)",
            title=f"{TITLES[env_name]} ({fam['eval_tasks']} tasks)",
        )
        ax_curve.title.set_fontsize(9)
        ax_curve.legend(fontsize=7, title="regret at T", title_fontsize=7)
        ax_explore.set(
            xlabel="round t",
            ylabel="fraction of runs",
            title="runs that never pull the best arm after round t",
            ylim=(0, 1),
        )
        ax_explore.title.set_fontsize(9)
        for model_name, info in fam["training"].items():
            color, _ = STYLES[model_name]
            hist = np.concatenate(
                [[info["base_heldout_regret"]], info["heldout_regret_per_iteration"]]
            )
            ax_train.plot(
                np.arange(len(hist)), hist, "o-", color=color, ms=3, label=LABELS[model_name]
            )
        refs = next(iter(fam["training"].values()))["reference_heldout_regret"]
        for name, value in refs.items():
            color, ls = STYLES.get(name, ("k", "--"))
            ax_train.axhline(value, color=color, ls=ls, lw=1, label=f"{LABELS.get(name, name)}")
        ax_train.set(
            xlabel="filter iteration",
            ylabel="held-out pseudo-regret at T",
            title="training: held-out pseudo-regret (0 = base model)",
        )
        ax_train.title.set_fontsize(9)
        ax_train.legend(fontsize=6)
    return savefig(fig, fig_dir, NAME)


if __name__ == "__main__":
    script_main(compute, plot, NAME)
