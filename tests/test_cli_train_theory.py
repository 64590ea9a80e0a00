"""``rmft train-theory``: writes its result and fails with one line on bad input."""

import json

import numpy as np
import pytest

from rmft_theory.cli import main


def test_train_theory_writes_result(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train-theory",
            "--objective",
            "regret-loss",
            "--d",
            "2",
            "--horizon",
            "8",
            "--steps",
            "40",
            "--batch-size",
            "16",
            "--chunk",
            "20",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    for key in (
        "W_eff",
        "W_star",
        "rel_error",
        "quad_rel",
        "drift_rel",
        "config",
        "seeds",
        "environment",
        "compile_s",
        "run_s",
    ):
        assert key in result
    assert np.asarray(result["W_eff"]).shape == (2, 2)
    assert result["config"]["objective"] == "regret-loss"
    assert (out / "curves.npz").exists()
    assert "rel_error=" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--d", "0"], "d must be an integer >= 1"),
        (["--horizon", "-3"], "horizon must be"),
        (["--sigma", "-1"], "sigma must be"),
        (["--steps", "0"], "steps must be"),
        (["--lr", "0"], "learning_rate must be"),
    ],
)
def test_bad_input_is_one_line_naming_the_parameter(tmp_path, capsys, flags, message):
    code = main(["train-theory", "--out", str(tmp_path), "--quiet", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


def test_same_command_same_seed_gives_bit_identical_arrays(tmp_path):
    from rmft_theory.io import load_npz

    flags = [
        "train-theory",
        "--d",
        "3",
        "--horizon",
        "6",
        "--steps",
        "30",
        "--batch-size",
        "8",
        "--chunk",
        "10",
        "--quiet",
        "--seed",
        "7",
    ]
    assert main([*flags, "--out", str(tmp_path / "a")]) == 0
    assert main([*flags, "--out", str(tmp_path / "b")]) == 0
    a, b = load_npz(tmp_path / "a" / "curves.npz"), load_npz(tmp_path / "b" / "curves.npz")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    ra = json.loads((tmp_path / "a" / "result.json").read_text())
    rb = json.loads((tmp_path / "b" / "result.json").read_text())
    assert ra["W_eff"] == rb["W_eff"]
    # The same --out again resumes from its checkpoint: nothing is left to train, the arrays
    # and the recorded run time are those of the first run.
    assert (tmp_path / "a" / "checkpoint" / "checkpoint.json").exists()
    assert main([*flags, "--out", str(tmp_path / "a")]) == 0
    again = json.loads((tmp_path / "a" / "result.json").read_text())
    assert again["W_eff"] == ra["W_eff"]
    assert again["run_s"] == pytest.approx(ra["run_s"], rel=1e-9)
    for key, value in load_npz(tmp_path / "a" / "curves.npz").items():
        np.testing.assert_array_equal(value, a[key])


@pytest.mark.parametrize("command", ["train-theory", "train-filter", "evaluate"])
@pytest.mark.parametrize("seed", ["-1", "abc"])
def test_every_command_names_a_bad_seed(command, seed, tmp_path, capsys):
    # Not the internal stream (seeds.init) that the bad value would first reach.
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--seed", seed, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"argument --seed: must be an integer >= 0, got '{seed}'" in capsys.readouterr().err
