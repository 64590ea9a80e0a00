"""``rmft evaluate`` and the evaluation library: outputs, determinism, hooks, one-line errors."""

import json
import math

import jax
import numpy as np
import pytest

from rmft_theory import evaluate as ev
from rmft_theory.cli import main
from rmft_theory.cli.evaluate import parse_options, parse_value
from rmft_theory.envs import make_env
from rmft_theory.io import load_npz
from rmft_theory.keys import Seeds
from rmft_theory.theory import eta_star

UCB1_ARGS = [
    "evaluate",
    "--policy",
    "ucb1",
    "--env",
    "bernoulli-bandit",
    "--means",
    "0.5,0.6,0.7",
    "--horizon",
    "200",
    "--runs",
    "20",
    "--seed",
    "3",
]


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_writes_result_and_is_batch_invariant(tmp_path, capsys):
    code, out, _ = run_cli([*UCB1_ARGS, "--out", str(tmp_path / "a")], capsys)
    assert code == 0 and "pseudo regret" in out
    res = json.loads((tmp_path / "a" / "result.json").read_text())
    for key in ("mean_regret", "ci_low", "ci_high", "regret_curve", "policy", "env", "seeds"):
        assert key in res
    assert (res["policy"], res["env"], res["regret_kind"]) == ("ucb1", "bernoulli-bandit", "pseudo")
    assert len(res["regret_curve"]) == 200
    assert res["ci_low"] <= res["mean_regret"] <= res["ci_high"]
    assert res["env_config"]["means"] == [0.5, 0.6, 0.7] and res["env_config"]["d"] == 3
    assert res["policy_options"] == {"scale": 1.0}
    assert res["config"]["runs"] == 20 and res["seeds"]["actions"] == 3
    assert res["timings"]["compile_s"] > 0 and res["timings"]["run_s"] > 0
    assert 0 <= res["metrics"]["min_pull_fraction"] <= 1 / 3
    curves = load_npz(tmp_path / "a" / "curves.npz")
    per_run = curves["per_run_regret"]
    assert per_run.shape == (20,) and np.all(per_run >= -1e-4)  # pseudo-regret ≥ 0
    assert res["mean_regret"] == pytest.approx(per_run.astype(np.float64).mean(), rel=1e-12)
    # The curve's last point is the mean final regret (float32 sums of 20 runs).
    assert res["regret_curve"][-1] == pytest.approx(res["mean_regret"], rel=1e-5)
    # Run i uses fold_in(key, i): the batching does not change any run.
    code, _, _ = run_cli([*UCB1_ARGS, "--batch-size", "7", "--out", str(tmp_path / "b")], capsys)
    assert code == 0
    other = load_npz(tmp_path / "b" / "curves.npz")
    for k in curves:
        if k.startswith("per_run_"):
            np.testing.assert_array_equal(other[k], curves[k], err_msg=k)
    np.testing.assert_allclose(other["regret_curve"], curves["regret_curve"], rtol=1e-5)


def hedge_alternating_regret(T: int, d: int, eta: float) -> float:
    """Hedge's static regret on the alternating sequence ``R_t = (x_t, −x_t, 0, …)``,
    ``x = (1/2, −1, +1, −1, …)``, step by step in float64."""
    x = np.where(np.arange(1, T + 1) % 2 == 1, 1.0, -1.0)
    x[0] = 0.5
    rewards = np.zeros((T, d))
    rewards[:, 0], rewards[:, 1] = x, -x
    S, earned = np.zeros(d), 0.0
    for r in rewards:
        w = np.exp(eta * (S - S.max()))
        earned += float(w @ r) / w.sum()
        S += r
    return float(S.max() - earned)


def test_full_information_policies(tmp_path, capsys):
    T = 40
    argv = ["evaluate", "--policy", "ftl", "--env", "alternating-fol", "--horizon", str(T)]
    argv += ["--runs", "3", "--reference", "hedge", "--out", str(tmp_path / "ftl")]
    assert run_cli(argv, capsys)[0] == 0
    res = json.loads((tmp_path / "ftl" / "result.json").read_text())
    # FTL on the alternating sequence: regret T − 1/2 in every run (deterministic).
    assert res["regret_kind"] == "static-simplex"
    assert res["mean_regret"] == pytest.approx(T - 0.5, rel=1e-6)
    assert res["ci_low"] == pytest.approx(T - 0.5, rel=1e-6)
    norm = res["normalised_regret"]
    # Uniform play earns 0 and the best coordinate 1/2, so R_uniform = 1/2. The reference is
    # Hedge at its default η = √(8 ln d/T)/w (w = 2, the reward range width), recomputed here
    # in float64 on the same deterministic sequence (d = 2, σ = 0): 4.1198. The value must be
    # (R_uniform − R_FTL)/(R_uniform − R_Hedge). Tolerances: float32 sums of 40 terms ≤ 1 are
    # within ~1e-5 absolute of float64 (measured 5e-7 for Hedge); rel=1e-5 covers that.
    r_hedge = hedge_alternating_regret(T, d=2, eta=math.sqrt(8 * math.log(2) / T) / 2)
    assert r_hedge == pytest.approx(4.1198, abs=1e-4)  # independent of the CLI
    assert norm["reference_mean_regret"] == pytest.approx(r_hedge, rel=1e-5)
    assert norm["reference_beats_uniform"] is False  # 4.12 > 1/2: Hedge pays for T = 40
    assert norm["uniform_mean_regret"] == pytest.approx(0.5, abs=1e-6)
    expected = (0.5 - (T - 0.5)) / (0.5 - r_hedge)
    assert norm["value"] == pytest.approx(expected, rel=1e-5)

    argv = ["evaluate", "--policy", "ftrl", "--env", "gaussian-fol", "--d", "3", "--sigma", "2"]
    argv += ["--horizon", "25", "--runs", "8", "--out", str(tmp_path / "ftrl")]
    assert run_cli(argv, capsys)[0] == 0
    res = json.loads((tmp_path / "ftrl" / "result.json").read_text())
    assert res["policy_options"]["eta"] == pytest.approx(eta_star(3, 25, 2.0, 1.0), rel=1e-12)
    assert res["regret_kind"] == "static-ball"
    assert res["env_config"]["sigma"] == 2.0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--means", "0.5,abc"], "--means must be comma-separated numbers"),
        (["--means", "0.5,1.5"], "means must lie in [0, 1]"),
        (["--env", "nope"], "env must be one of"),
        (["--policy", "hedge"], "needs full-information feedback"),
        (["--policy", "model:ckpt/run1"], "model path 'ckpt/run1' holds no saved model"),
        (["--policy-opt", "window"], "--policy-opt must be KEY=VALUE"),
        (["--policy-opt", "foo=1"], "policy 'ucb1' has no option 'foo'"),
        (["--policy-opt", "scale=abc"], "scale must be a finite number, got 'abc'"),
        (["--d", "3", "--env-opt", "d=4"], "--d 3 and --env-opt d=4 disagree"),
        (
            ["--policy", "ftl", "--env", "bernoulli-fol", "--policy-opt", "radius=abc"],
            "radius must",
        ),
        (["--env-opt", "sigma=1"], "env 'bernoulli-bandit' has no option 'sigma'"),
        (["--runs", "0"], "--runs must be an integer >= 1"),
        (["--level", "1.5"], "--level must lie in (0, 1)"),
        (["--reference", "exp3x"], "policy must be one of"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, capsys, extra, message):
    argv = [*UCB1_ARGS, "--out", str(tmp_path)]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("rmft evaluate: error:")
    assert message in err
    assert not (tmp_path / "result.json").exists()


def test_unit_reward_policies_refuse_gaussian_rewards():
    env = make_env("gaussian-bandit", d=3, horizon=10)
    for name in ("exp3", "thompson-bernoulli", "discounted-ts"):
        with pytest.raises(ValueError, match=f"policy '{name}' needs rewards in"):
            ev.make_policy(name, env)
    ev.make_policy("ucb1", env)  # index policies run on any rewards
    # An environment class not registered (a plugin's GaussianFOL subclass) is named by its
    # class in these errors, not refused as "not registered".
    from rmft_theory.envs import GaussianFOLEnv

    class Louder(GaussianFOLEnv):
        pass

    with pytest.raises(ValueError, match=r"needs rewards in \[0, 1\], but env '.*Louder' has"):
        ev.make_policy("thompson-bernoulli", Louder(d=3, horizon=10))


def test_saved_model_evaluates_like_the_baseline_it_implements(tmp_path):
    # An LSA saved with the closed-form FTRL parameters (THEORY §2) is, through model:PATH,
    # exactly the ftrl baseline at the same η: same tasks, same rewards, same regret.
    from rmft_theory.models import params_from_weights
    from rmft_theory.runs import EnvSpec, ModelSpec, save_model
    from rmft_theory.theory import eta_star

    spec = EnvSpec("gaussian-fol", {"d": 3, "horizon": 12})
    eta = eta_star(3, 12)
    save_model(
        tmp_path,
        params_from_weights(eta * np.eye(3, dtype=np.float32)),
        ModelSpec("lsa"),
        spec,
        "ball",
        1.0,
    )
    env = spec.build()
    seeds = Seeds.from_seed(4)
    model, _ = ev.make_policy(f"model:{tmp_path}", env)
    ftrl, _ = ev.make_policy("ftrl", env, eta=eta)
    a = ev.evaluate(model, env, runs=16, seeds=seeds)
    b = ev.evaluate(ftrl, env, runs=16, seeds=seeds)
    # float32 prefix sums in two association orders: a few ulps of regrets of size ~5.
    np.testing.assert_allclose(a.per_run["regret"], b.per_run["regret"], rtol=0, atol=2e-5)


def test_a_saved_simplex_model_plays_the_policy_map_it_was_trained_with(tmp_path):
    # A filter with Gaussian or no noise on the simplex rolls out and scores Proj_Δ(g_t)
    # (THEORY §4), so its saved model must play that, not softmax(g_t/τ); sampled actions
    # (and models saved before the map was recorded) play softmax(g_t/τ).
    from rmft_theory.models import lsa_apply, params_from_weights
    from rmft_theory.rmft import FilterConfig
    from rmft_theory.runs import (
        EnvSpec,
        ModelSpec,
        TrainRunConfig,
        load_model_policy,
        save_model,
        simplex_policy,
    )
    from rmft_theory.spaces import project_simplex

    spec = EnvSpec("gaussian-fol", {"d": 3, "horizon": 12})
    env = spec.build()
    params = params_from_weights(0.5 * np.eye(3, dtype=np.float32))
    rewards = jax.random.normal(jax.random.key(0), (12, 3))
    g = lsa_apply(params, rewards)
    expected = {
        "projection": jax.vmap(project_simplex)(g),
        "softmax": jax.nn.softmax(g / 0.7, axis=-1),
    }
    assert not np.allclose(expected["projection"], expected["softmax"], atol=0.05)
    for name, policies in expected.items():
        out = tmp_path / name
        save_model(out, params, ModelSpec("lsa"), spec, "simplex", 1.0, 0.7, simplex_policy=name)
        played = load_model_policy(out, env).policies(rewards)
        # The same float32 operations as the expectation: equal to rounding.
        np.testing.assert_allclose(played, policies, atol=1e-6)

    def run(**kw):
        return TrainRunConfig(method="filter", env=spec, filter=FilterConfig(**kw))

    assert simplex_policy(run(space="simplex", noise="per-trajectory")) == "projection"
    assert simplex_policy(run(space="simplex", noise="none")) == "projection"
    assert simplex_policy(run(space="simplex", noise="actions")) == "softmax"
    assert simplex_policy(run()) == "softmax"  # a ball run evaluated on the simplex, as before
    with pytest.raises(ValueError, match="simplex_policy"):
        save_model(
            tmp_path / "x", params, ModelSpec("lsa"), spec, "simplex", 1.0, 1.0, 0.0, "hedge"
        )


# ----------------------------------------------------------------------------- every policy

SMOKE_ENVS = {
    "bandit": make_env("switching-bandit", d=3, horizon=16, n_switches=1),
    "full": make_env("bernoulli-fol", d=3, horizon=16),
}


@pytest.mark.parametrize("name", sorted(ev.POLICIES))
def test_every_policy_runs_and_reports(name):
    spec = ev.POLICIES[name]
    env = SMOKE_ENVS["full" if spec.feedback == "full" else "bandit"]
    policy, options = ev.make_policy(name, env)
    assert set(options) == set(spec.options)
    result = ev.evaluate(policy, env, 4, Seeds.from_seed(0), batch_size=3)
    assert result.mean_curve.shape == (16,)
    assert result.per_run["regret"].shape == (4,)
    if spec.feedback == "full":
        assert result.regret_kind.startswith("static-")
    else:
        assert result.regret_kind == "dynamic"  # the switching bandit is non-stationary
        # Dynamic regret ≥ 0, and the variation budget is the same for every policy.
        assert np.all(result.per_run["dynamic_regret"] >= -1e-5)
        assert np.all(result.per_run["variation_budget"] > 0)
    summary = ev.summarise(result, 16, n_boot=200)
    json.dumps({k: v for k, v in summary.items() if k != "regret_curve"})
    assert math.isfinite(summary["mean_regret"])


def test_parse_value_and_options():
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("0.25") == 0.25
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("0.5,1") == (0.5, 1.0)
    assert parse_value("0.1,0.9;0.9,0.1") == ((0.1, 0.9), (0.9, 0.1))
    assert parse_value("simplex") == "simplex"
    assert parse_options("--env-opt", ["n-switches=4", "noise=gaussian"]) == {
        "n_switches": 4,
        "noise": "gaussian",
    }
    with pytest.raises(ValueError, match="vector option values must be numbers"):
        parse_value("0.5,x")
    with pytest.raises(ValueError, match="given twice"):
        parse_options("--env-opt", ["a=1", "a=2"])


def test_evaluation_draws_only_from_the_evaluation_streams(monkeypatch):
    # evaluate asks Seeds for its keys by stream name; it must ask for the evaluation streams
    # (off every training key path, tests/test_keys.py) and for no training stream.
    from rmft_theory.keys import EVALUATION_STREAMS

    asked = []
    real = Seeds.key
    monkeypatch.setattr(
        Seeds, "key", lambda self, stream: asked.append(stream) or real(self, stream)
    )
    policy, _ = ev.make_policy("ftl", SMOKE_ENVS["full"])
    ev.evaluate(policy, SMOKE_ENVS["full"], 2, Seeds.from_seed(0))
    assert set(asked) == set(EVALUATION_STREAMS)
