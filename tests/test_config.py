"""Config files: typed, frozen, validated; malformed input gives one line naming the field."""

import dataclasses
from pathlib import Path

import flax.linen as nn
import pytest

from rmft_theory.cli import main
from rmft_theory.config import apply_overrides, from_dict, load, load_file, parse_override
from rmft_theory.envs import GaussianFOL
from rmft_theory.runs import EnvSpec, ModelSpec, TrainRunConfig
from rmft_theory.train import DirectTrainConfig


@dataclasses.dataclass(frozen=True)
class Run:
    env: GaussianFOL = dataclasses.field(default_factory=lambda: GaussianFOL(d=2, horizon=10))
    train: DirectTrainConfig = dataclasses.field(default_factory=DirectTrainConfig)
    seed: int = 0
    note: str | None = None


def test_toml_yaml_json_give_the_same_config(tmp_path):
    (tmp_path / "c.toml").write_text(
        'seed = 3\n[env]\nd = 4\nhorizon = 20\n[train]\nobjective = "regret-loss"\nsteps = 400\n'
    )
    (tmp_path / "c.yaml").write_text(
        "seed: 3\nenv: {d: 4, horizon: 20}\ntrain: {objective: regret-loss, steps: 400}\n"
    )
    (tmp_path / "c.json").write_text(
        '{"seed": 3, "env": {"d": 4, "horizon": 20},'
        ' "train": {"objective": "regret-loss", "steps": 400}}'
    )
    configs = [load(Run, tmp_path / f"c.{ext}") for ext in ("toml", "yaml", "json")]
    assert configs[0] == configs[1] == configs[2]
    assert configs[0].env.d == 4 and configs[0].train.steps == 400
    with pytest.raises(dataclasses.FrozenInstanceError):
        configs[0].seed = 1


def test_overrides_win_over_the_file(tmp_path):
    (tmp_path / "c.toml").write_text("[env]\nd = 4\nhorizon = 20\n")
    cfg = load(Run, tmp_path / "c.toml", ["env.d=6", "train.learning_rate=0.5", "note=hi"])
    assert cfg.env.d == 6 and cfg.train.learning_rate == 0.5 and cfg.note == "hi"


def test_yaml_is_parsed_safely(tmp_path):
    # A YAML tag that would construct a Python object is rejected by safe_load.
    (tmp_path / "evil.yaml").write_text("seed: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ValueError, match="not valid"):
        load_file(tmp_path / "evil.yaml")


MALFORMED = [
    ({"sed": 1}, "unknown key 'sed'"),
    ({"env": {"d": 2, "horizon": 10, "colour": 1}}, "unknown key env.'colour'"),
    ({"env": {"d": 0, "horizon": 10}}, "env: d must be an integer >= 1"),
    ({"env": {"d": 2, "horizon": -5}}, "env: horizon must be"),
    ({"env": {"d": 2, "horizon": 10, "sigma": -1.0}}, "env: sigma must be"),
    ({"env": {"d": "two", "horizon": 10}}, "env.d must be an integer"),
    ({"train": {"objective": "mse"}}, "objective must be one of"),
    ({"train": {"steps": 1.5}}, "train.steps must be an integer"),
    ({"train": {"learning_rate": "fast"}}, "train.learning_rate must be a number"),
    ({"train": {"antithetic": "yes"}}, "train.antithetic must be true or false"),
    ({"seed": True}, "seed must be an integer"),
    ({"env": [1, 2]}, "env must be a table"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED)
def test_malformed_configs_give_one_line_naming_the_problem(data, message):
    with pytest.raises(ValueError) as info:
        from_dict(Run, data)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text


def test_file_level_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_file(tmp_path / "missing.toml")
    (tmp_path / "c.ini").write_text("x=1")
    with pytest.raises(ValueError, match="must end in"):
        load_file(tmp_path / "c.ini")
    (tmp_path / "bad.toml").write_text("seed = = 3")
    with pytest.raises(ValueError, match="not valid"):
        load_file(tmp_path / "bad.toml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="mapping at the top level"):
        load_file(tmp_path / "list.json")


def test_a_default_resolved_from_other_fields_follows_the_overrides():
    # FilterConfig.loss (default None) resolves from the noise when the config is built; a
    # [filter] section created by overrides must not pin it to the defaults' resolution (mse).
    run = ['method="filter"', "filter.noise=actions", "filter.space=simplex"]
    assert load(TrainRunConfig, None, run).filter.loss == "cross-entropy"
    assert load(TrainRunConfig, None, ['method="filter"']).filter.loss == "mse"


def test_override_syntax():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=x y") == (["a"], "x y")
    with pytest.raises(ValueError, match=r"key\.path=value"):
        parse_override("novalue")
    with pytest.raises(ValueError, match="empty key"):
        parse_override("a..b=1")
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}


MODEL_OVERRIDES = [
    # The default model (LSA) takes only init_scale; unknown names are listed.
    (["model.options.depth=0"], "model.options: unknown option(s) ['depth'] for model 'lsa'"),
    (["model.options.init_scale=NaN"], "model.options: init_scale must be a finite number >= 0"),
    (["model.options.init_scale=-1"], "model.options: init_scale must be a finite number >= 0"),
    (["model.options.d=3"], "model.options cannot set 'd'"),
    # The model's own checks run when the config is built.
    (
        ["model.name=linear-attention", "model.options.depth=0"],
        "model.options: depth must be an integer >= 1, got 0",
    ),
    (
        ["model.name=transformer", "model.options.heads=-2"],
        "model.options: heads must be an integer >= 1, got -2",
    ),
    (
        ["model.name=linear-attention", "model.options.algorithm=fft"],
        "model.options: algorithm must be one of",
    ),
    (["model.name=no-such-model"], "model.name must be one of"),
]


@pytest.mark.parametrize(("overrides", "message"), MODEL_OVERRIDES)
def test_model_options_are_validated_when_the_run_config_is_built(overrides, message):
    with pytest.raises(ValueError) as info:
        load(TrainRunConfig, None, overrides)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text


def test_valid_model_options_are_accepted():
    cfg = load(TrainRunConfig, None, ["model.name=linear-attention", "model.options.depth=3"])
    assert cfg.model.options == {"depth": 3}
    assert cfg.model.build(cfg.env.build().d).depth == 3
    assert ModelSpec("lsa", {"init_scale": 0.0}).build(4).init_scale == 0.0


def test_model_spec_validates_on_construction():
    # Names when the spec is made; values when a run config builds the model for its env's d.
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['dpeth'\]"):
        ModelSpec("linear-attention", {"dpeth": 2})
    with pytest.raises(ValueError, match=r"model\.options: width must be an integer >= 1"):
        TrainRunConfig(model=ModelSpec("transformer", {"width": 0}))
    with pytest.raises(ValueError, match=r"model\.name must be one of .*rmft --import MODULE"):
        ModelSpec("my-model")


def test_model_options_may_depend_on_d(monkeypatch):
    # A plugin model that checks an option against d (heads dividing d) is built only with the
    # environment's d, never a stand-in.
    from rmft_theory.models.registry import MODELS

    class Headed(nn.Module):
        d: int
        heads: int = 1

        def __post_init__(self):
            if self.d % self.heads:
                raise ValueError(f"heads ({self.heads}) must divide d ({self.d})")
            super().__post_init__()

        @nn.compact
        def __call__(self, rewards_TxD):
            return rewards_TxD

    monkeypatch.setitem(MODELS, "headed", Headed)
    spec = ModelSpec("headed", {"heads": 3})
    env = EnvSpec("gaussian-fol", {"d": 6, "horizon": 5})
    assert TrainRunConfig(model=spec, env=env).model.build(6).heads == 3
    with pytest.raises(ValueError, match=r"model\.options: heads \(3\) must divide d \(4\)"):
        TrainRunConfig(model=spec, env=EnvSpec("gaussian-fol", {"d": 4, "horizon": 5}))


def test_the_shipped_configs_still_load():
    for path in sorted((Path(__file__).parent.parent / "configs").glob("*.*")):
        load(TrainRunConfig, path)


def test_cli_reports_bad_model_options_in_one_line(capsys):
    code = main(["train", "--print-config", "--set", "model.options.init_scale=NaN"])
    err = capsys.readouterr().err
    assert code == 2
    assert (
        err
        == "rmft train: error: model.options: init_scale must be a finite number >= 0, got nan\n"
    )
