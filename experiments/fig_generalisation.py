"""Figure: how far a model trained on one setting generalises (issue #4, item 6).

Training setting: full-information Gaussian tasks on the simplex, d = 3, T = 50, σ = 1, random
task means ``μ ~ N(0, 0.5² I)``. Two models are trained directly on the expected static regret of
their softmax policy (:func:`rmft_theory.transfer.train_simplex_regret`): the single-layer LSA
(THEORY §2) and the arm-equivariant Transformer (registry ``"equivariant-transformer"``).
Both are then run **unchanged** on:

* longer horizons, 2T and 4T (same process);
* other numbers of actions d' ∈ {2, 5, 8} (the equivariant model only: the LSA's parameters
  are d×(d+1));
* other reward processes: Bernoulli rewards, linear and sine trends, and the alternating
  adversarial sequence on which follow-the-leader has linear regret (:mod:`rmft_theory.envs`);
* bandit feedback: Gaussian (``μ ~ N(0, 0.5²)``, as in fig_bandits) and Bernoulli arms, the
  model fed the importance-weighted estimates ``r̂_s = r_s(a_s) e_{a_s}/p_s(a_s)`` and playing
  ``(1 − γ) softmax(g_t) + γ/d``, γ = 0.05 (:mod:`rmft_theory.bandit_rollout`).

Each setting reports the normalised regret ``(R_0 − R_model)/(R_0 − R_ref)`` (0 = the trivial
anchor, 1 = the reference) with a paired 95% bootstrap interval over evaluation tasks. The
reference is Hedge at its best η for that setting (tuned on separate tasks) under full
information and UCB1 under bandit feedback. The anchor ``R_0`` is the worse of uniform play and
follow-the-leader (FOL; on the alternating sequence the best η is ≈ 0, so Hedge ≈ uniform and
only FTL, with regret ≈ T, gives a usable scale) or uniform play (bandits). Raw regrets go to the
JSON.

    python experiments/fig_generalisation.py [--quick]
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory import metrics
from rmft_theory.checkpoint import load_checkpoint, save_checkpoint
from rmft_theory.envs import make_env
from rmft_theory.io import load_json, load_npz, save_json, save_npz
from rmft_theory.keys import Seeds
from rmft_theory.models import make_model
from rmft_theory.plotting import plt, savefig, script_main
from rmft_theory.reproduce import fingerprint, unit, units_dir
from rmft_theory.transfer import (
    SimplexTrainConfig,
    evaluation_tables,
    model_transfer_runs,
    reference_transfer_runs,
    train_simplex_regret,
)

NAME = "fig_generalisation"
D, T, MEAN_SCALE, MIX = 3, 50, 0.5, 0.05
TRAIN_ENV = make_env("gaussian-fol", d=D, horizon=T, mean_scale=MEAN_SCALE)
# name -> (group, environment); the equivariant model runs everywhere, the LSA where d' = d.
SETTINGS = {
    "train (T)": ("horizon", TRAIN_ENV),
    "2T": ("horizon", make_env("gaussian-fol", d=D, horizon=2 * T, mean_scale=MEAN_SCALE)),
    "4T": ("horizon", make_env("gaussian-fol", d=D, horizon=4 * T, mean_scale=MEAN_SCALE)),
    "d'=2": ("actions", make_env("gaussian-fol", d=2, horizon=T, mean_scale=MEAN_SCALE)),
    "d'=5": ("actions", make_env("gaussian-fol", d=5, horizon=T, mean_scale=MEAN_SCALE)),
    "d'=8": ("actions", make_env("gaussian-fol", d=8, horizon=T, mean_scale=MEAN_SCALE)),
    "Bernoulli": ("process", make_env("bernoulli-fol", d=D, horizon=T)),
    "linear trend": ("process", make_env("linear-trend-fol", d=D, horizon=T)),
    "sine trend": ("process", make_env("sine-fol", d=D, horizon=T)),
    "alternating": ("process", make_env("alternating-fol", d=D, horizon=T, random_sign=True)),
    "Gaussian bandit": (
        "bandit",
        make_env("gaussian-bandit", d=D, horizon=T, mean_scale=MEAN_SCALE, sigma=1.0),
    ),
    "Bernoulli bandit": ("bandit", make_env("bernoulli-bandit", d=D, horizon=T)),
}
GROUPS = {
    "horizon": "longer horizons (Gaussian FOL)",
    "actions": "other action counts (Gaussian FOL)",
    "process": "other reward processes (FOL)",
    "bandit": "bandit feedback (IW inputs)",
}
LABELS = {"lsa": "LSA", "equivariant": "equivariant Transformer"}
COLORS = {"lsa": "C1", "equivariant": "C3"}


def models(quick: bool) -> dict:
    """Model name -> (registry name, options, training config)."""
    if quick:
        eq_opts = {"width": 16, "depth": 1, "heads": 2}
        eq_cfg = SimplexTrainConfig(steps=150, batch_size=64, learning_rate=3e-3, chunk=50)
        lsa_cfg = SimplexTrainConfig(steps=300, batch_size=128, learning_rate=1e-2, chunk=100)
    else:
        eq_opts = {"width": 32, "depth": 2, "heads": 2}
        eq_cfg = SimplexTrainConfig(steps=1500, batch_size=128, learning_rate=1e-3, chunk=100)
        lsa_cfg = SimplexTrainConfig(steps=2000, batch_size=256, learning_rate=1e-2, chunk=200)
    return {
        "lsa": ("lsa", {}, lsa_cfg),
        "equivariant": ("equivariant-transformer", eq_opts, eq_cfg),
    }


def _applies(model_name: str, env) -> bool:
    return model_name == "equivariant" or env.d == D


def _model(spec):
    registry_name, opts, _ = spec
    model = make_model(registry_name, D, **opts)
    return model, (lambda p, r: model.apply({"params": p}, r))


def _train_settings(spec) -> dict:
    """What a trained model depends on (beyond the mode): its spec and the training tasks."""
    return {"spec": spec, "train_env": TRAIN_ENV, "seed": 0}


def _model_dir(fig_dir: Path, name: str, spec, quick: bool) -> Path:
    """The trained parameters' folder, named by the training unit's fingerprint (so that a model
    trained in the other mode or with other settings is never loaded in its place)."""
    return (
        units_dir(fig_dir, NAME) / f"model_{name}_{fingerprint(quick, _train_settings(spec))[:12]}"
    )


def _train(fig_dir: Path, name: str, spec, quick: bool) -> dict:
    """Train one model directly and checkpoint its parameters beside the unit."""
    model, apply_fn = _model(spec)
    seeds = Seeds.from_seed(0)
    params = model.init(seeds.key("init"), jnp.zeros((T, D)))["params"]
    result = train_simplex_regret(apply_fn, params, TRAIN_ENV, spec[2], seeds, quiet=quick)
    save_checkpoint(_model_dir(fig_dir, name, spec, quick), result.params, 0, {})
    return {
        "losses": result.losses,
        "compile_s": result.timings.compile_s,
        "run_s": result.timings.run_s,
    }


def _evaluate(setting: str, trained: dict, quick: bool) -> dict:
    """Reference, uniform and every applicable model on one setting's evaluation tasks."""
    _, env = SETTINGS[setting]
    n = (128 if quick else 1000) if env.feedback == "bandit" else (256 if quick else 2000)
    seeds = Seeds.from_seed(1000 + list(SETTINGS).index(setting))
    tables = evaluation_tables(env, n, seeds)
    runs, info = reference_transfer_runs(env, tables, seeds.key("heldout"))
    out = {f"{k}__final": v.final for k, v in runs.items()}
    out.update({f"{k}__curve": v.curves.mean(0) for k, v in runs.items()})
    out["hedge_eta"] = np.asarray(info.get("hedge_eta", np.nan))
    for name, (apply_fn, params) in trained.items():
        if _applies(name, env):
            r = model_transfer_runs(apply_fn, params, env, tables, mix=MIX)
            out[f"{name}__final"] = r.final
            out[f"{name}__curve"] = r.curves.mean(0)
    return out


def _normalised(model, uniform, ref, n_boot: int) -> dict:
    stacked = np.stack([model, uniform, ref], axis=1)
    ci = metrics.bootstrap_ci(
        stacked,
        n_boot=n_boot,
        statistic=lambda m: metrics.normalised_regret(m[..., 0], m[..., 1], m[..., 2]),
    )
    return {"value": ci.estimate, "ci_low": ci.low, "ci_high": ci.high}


def compute(fig_dir: Path, quick: bool) -> None:
    """Train both models (one unit each), evaluate every setting (one unit each), summarise."""
    specs = models(quick)
    n_boot = 500 if quick else 2000
    trained, summary = {}, {"models": {}, "settings": {}, "mix": MIX, "train_env": TRAIN_ENV}
    arrays = {}
    for name, spec in specs.items():
        u = unit(
            fig_dir,
            NAME,
            f"train_{name}",
            lambda n=name, s=spec: _train(fig_dir, n, s, quick),
            quick=quick,
            settings=_train_settings(spec),
        )
        model, apply_fn = _model(spec)
        template = model.init(jax.random.key(0), jnp.zeros((T, D)))["params"]
        params, _ = load_checkpoint(_model_dir(fig_dir, name, spec, quick), template)
        trained[name] = (apply_fn, params)
        arrays[f"train_{name}__losses"] = u["losses"]
        summary["models"][name] = {
            "registry": spec[0],
            "options": spec[1],
            "train_config": spec[2],
            "final_train_loss": float(np.mean(u["losses"][-50:])),
            "compile_s": float(u["compile_s"]),
            "run_s": float(u["run_s"]),
        }
    for setting, (group, env) in SETTINGS.items():
        u = unit(
            fig_dir,
            NAME,
            f"eval_{setting}",
            lambda s=setting: _evaluate(s, trained, quick),
            quick=quick,
            settings={
                "env": env,
                "seed_index": list(SETTINGS).index(setting),
                "mix": MIX,
                "models": {n: _train_settings(spec) for n, spec in specs.items()},
            },
        )
        anchors = [a for a in ("uniform", "ftl") if f"{a}__final" in u]
        anchor = max(anchors, key=lambda a: float(np.mean(u[f"{a}__final"])))
        entry = {
            "group": group,
            "env": env,
            "reference": "ucb1" if env.feedback == "bandit" else "hedge_best_eta",
            "zero_anchor": anchor,
            "eval_tasks": int(u["uniform__final"].shape[0]),
            "mean_regret": {},
            "normalised": {},
        }
        if np.isfinite(u["hedge_eta"]):
            entry["hedge_eta"] = float(u["hedge_eta"])
        for who in ("reference", *anchors, *specs):
            if f"{who}__final" not in u:
                continue
            ci = metrics.bootstrap_ci(u[f"{who}__final"], n_boot=n_boot)
            entry["mean_regret"][who] = {"mean": ci.estimate, "ci_low": ci.low, "ci_high": ci.high}
            arrays[f"{setting}__{who}__curve"] = u[f"{who}__curve"]
            if who in specs:
                entry["normalised"][who] = _normalised(
                    u[f"{who}__final"], u[f"{anchor}__final"], u["reference__final"], n_boot
                )
        summary["settings"][setting] = entry
    save_npz(fig_dir / f"{NAME}.npz", **arrays)
    save_json(fig_dir / f"{NAME}.json", summary)


def plot(fig_dir: Path) -> list[Path]:
    """Normalised regret per setting (bars with CIs), grouped; regret curves of four settings."""
    data = load_npz(fig_dir / f"{NAME}.npz")
    summary = load_json(fig_dir / f"{NAME}.json")
    settings = summary["settings"]
    names = list(summary["models"])
    fig, axd = plt.subplot_mosaic(
        [["top"] * 4, ["c0", "c1", "c2", "c3"]],
        figsize=(18, 8.5),
        height_ratios=(1.3, 1),
        layout="constrained",
    )
    top = axd["top"]
    x = np.arange(len(settings))
    width = 0.38
    for j, name in enumerate(names):
        vals, lows, highs, xs = [], [], [], []
        for i, entry in enumerate(settings.values()):
            if name in entry["normalised"]:
                v = entry["normalised"][name]
                xs.append(i + (j - 0.5) * width)
                vals.append(v["value"])
                lows.append(v["value"] - v["ci_low"])
                highs.append(v["ci_high"] - v["value"])
        top.bar(xs, vals, width, color=COLORS[name], label=LABELS[name], alpha=0.85)
        top.errorbar(xs, vals, yerr=[lows, highs], fmt="none", ecolor="k", capsize=2, lw=1)
    top.axhline(1.0, color="k", ls="--", lw=1, label="reference (Hedge at best η / UCB1)")
    top.axhline(0.0, color="0.4", ls=":", lw=1, label="worse of uniform play and FTL")
    labels = [f"{s}\n[{e['group']}]" for s, e in settings.items()]
    top.set_xticks(x, labels, fontsize=8)
    lo = min(
        min((v["ci_low"] for v in e["normalised"].values()), default=0) for e in settings.values()
    )
    hi = max(
        max((v["ci_high"] for v in e["normalised"].values()), default=1) for e in settings.values()
    )
    top.set_ylim(max(min(lo, 0.0) - 0.1, -3), max(hi, 1.0) + 0.3)
    top.set_ylabel("normalised regret (0 = trivial anchor, 1 = reference)")
    top.set_title(
        "trained on Gaussian full-information tasks (d=3, T=50): normalised regret with 95% "
        "paired bootstrap CIs (bars below −3 are clipped)"
    )
    top.legend(fontsize=8, loc="upper center", ncol=4)
    bottom = [axd[f"c{i}"] for i in range(4)]
    for ax, setting in zip(bottom, ("4T", "d'=8", "alternating", "Bernoulli bandit")):
        entry = settings[setting]
        ref_label = "UCB1" if entry["reference"] == "ucb1" else "Hedge at best η"
        for who, color, ls, label in (
            ("reference", "k", "--", ref_label),
            ("uniform", "0.5", ":", "uniform"),
            ("ftl", "0.3", "-.", "follow-the-leader"),
            *((n, COLORS[n], "-", LABELS[n]) for n in names),
        ):
            key = f"{setting}__{who}__curve"
            if key in data:
                t = np.arange(1, data[key].shape[0] + 1)
                ax.plot(t, data[key], ls, color=color, lw=1.4, label=label)
        kind = "pseudo-regret" if entry["reference"] == "ucb1" else "static regret"
        ax.set(xlabel="round t", ylabel=f"mean {kind}", title=setting)
        ax.legend(fontsize=7)
    return savefig(fig, fig_dir, NAME)


if __name__ == "__main__":
    script_main(compute, plot, NAME)
