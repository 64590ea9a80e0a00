"""``rmft train-filter``: the result file, resumption after ``kill -9``, and clear errors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rmft_theory.cli import main

ITERATIONS = 25
ARGS = [
    "train-filter", "--d", "3", "--horizon", "20", "--tasks", "64", "--rollouts", "64",
    "--keep", "2", "--iterations", str(ITERATIONS), "--finetune-steps", "40",
    "--heldout-tasks", "32", "--seed", "3", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    assert main([*ARGS, "--out", str(out)]) == 0
    return out, json.loads((out / "result.json").read_text())


def test_result_file_has_per_iteration_lists_and_weights(uninterrupted):
    _, result = uninterrupted
    assert result["iterations_done"] == ITERATIONS
    for key in ("w_eff_rel_error", "heldout_regret", "w_eff_projection", "threshold"):
        assert len(result[key]) == ITERATIONS
    assert np.asarray(result["W_eff"]).shape == (3, 3)
    assert np.asarray(result["W_star"]).shape == (3, 3)
    assert result["reference"] == "ftrl_eta_star"
    assert result["heldout_regret_reference"] > 0
    # Per-trajectory noise moves W_eff from the random base towards W*.
    assert result["w_eff_rel_error"][-1] < result["base"]["w_eff_rel_error"]


def test_rerun_with_the_same_out_resumes_without_recomputing(uninterrupted):
    out, result = uninterrupted
    assert main([*ARGS, "--out", str(out)]) == 0
    again = json.loads((out / "result.json").read_text())
    # Nothing left to run: the timings still describe the whole run.
    assert again["run_s"] == pytest.approx(result["run_s"], rel=1e-9)
    assert again["compile_s"] == result["compile_s"]
    assert again["W_eff"] == result["W_eff"]
    assert again["w_eff_rel_error"] == result["w_eff_rel_error"]


def test_kill_minus_nine_then_resume_gives_identical_weights(uninterrupted, tmp_path):
    _, result = uninterrupted
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rmft_theory.cli", *ARGS, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    meta = out / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while not meta.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(meta.read_text())["step"]
    assert 1 <= killed_at < ITERATIONS, "the run should have been killed part-way"
    assert main([*ARGS, "--out", str(out)]) == 0
    resumed = json.loads((out / "result.json").read_text())
    assert resumed["iterations_done"] == ITERATIONS
    assert resumed["W_eff"] == result["W_eff"]  # bit-identical float32 values through JSON
    assert resumed["heldout_regret"] == result["heldout_regret"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--keep", "0"], "keep must"),
        (["--keep", "65"], "keep must be <= rollouts"),
        (["--rollouts", "0"], "rollouts must"),
        (["--noise-scale", "-1"], "noise_scale must"),
        (["--horizon", "0"], "horizon must"),
    ],
)
def test_configuration_errors_exit_2_naming_the_parameter(flags, message, tmp_path, capsys):
    assert main([*ARGS, *flags, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
