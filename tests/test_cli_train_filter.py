"""``rmft train-filter``: the result file, resumption after ``kill -9``, and clear errors."""

import json
import os
import signal
import subprocess
import sys

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


KILLED_AT = 7
# The CLI in a child process that SIGKILLs itself when it is about to checkpoint iteration
# KILLED_AT + 1: that iteration's record is on disk, its checkpoint is not. Killing at a chosen
# point, not after a timed wait, keeps the test deterministic on a loaded machine.
KILL_CHILD = f"""
import os, signal, sys
from rmft_theory import rmft
from rmft_theory.cli import main

real_save = rmft.save_checkpoint

def save_or_die(directory, state, step, meta):
    if step == {KILLED_AT + 1}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(directory, state, step, meta)

rmft.save_checkpoint = save_or_die
sys.exit(main(sys.argv[1:]))
"""


def test_kill_minus_nine_then_resume_gives_identical_weights(uninterrupted, tmp_path):
    _, result = uninterrupted
    out = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_CHILD, *ARGS, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    meta = out / "checkpoint" / "checkpoint.json"
    assert json.loads(meta.read_text())["step"] == KILLED_AT
    assert (out / "checkpoint" / "records" / f"step_{KILLED_AT:06d}.npz").exists()
    assert not (out / "result.json").exists()
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


SMALL = [
    "train-filter", "--d", "3", "--horizon", "12", "--tasks", "16", "--rollouts", "8",
    "--iterations", "4", "--finetune-steps", "10", "--heldout-tasks", "16", "--seed", "1",
    "--quiet",
]  # fmt: skip


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``rmft`` in a fresh process on the CPU (this process started JAX with one device, and
    on a GPU machine ``--devices 2`` would ask for two GPUs)."""
    cmd = [sys.executable, "-m", "rmft_theory.cli", *args]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_devices_2_equals_one_device_and_resumes_only_with_2(tmp_path):
    one = tmp_path / "one"
    ref = _cli(*SMALL, "--out", str(one))
    assert ref.returncode == 0, ref.stderr[-2000:]
    two = tmp_path / "two"
    first = _cli(*SMALL, "--devices", "2", "--stop-after", "2", "--out", str(two))
    assert first.returncode == 0, first.stderr[-2000:]
    # Resuming on another device count is refused, naming the setting (the sums over tasks
    # would be taken in another order, so the run would not be bit-identical).
    saved = (two / "checkpoint" / "checkpoint.json").read_text()
    for flags in ([], ["--devices", "1"], ["--devices", "4"]):
        other = _cli(*SMALL, *flags, "--out", str(two))
        assert other.returncode == 2, other.stderr[-2000:]
        assert "resume with --devices 2" in other.stderr, other.stderr[-2000:]
    assert (two / "checkpoint" / "checkpoint.json").read_text() == saved  # nothing written
    rest = _cli(*SMALL, "--devices", "2", "--out", str(two))
    assert rest.returncode == 0, rest.stderr[-2000:]
    a = json.loads((one / "result.json").read_text())
    b = json.loads((two / "result.json").read_text())
    assert (a["devices"], b["devices"], b["iterations_done"]) == (1, 2, 4)
    # Two devices sum the fine-tuning moments and the held-out means in another order: float32
    # rounding, carried through 4 iterations of 10 Adam steps (measured: 5e-7 relative in
    # W_eff, 1e-7 in the held-out regret; 1e-4 leaves room for other CPUs' vector widths).
    np.testing.assert_allclose(b["W_eff"], a["W_eff"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b["heldout_regret"], a["heldout_regret"], rtol=1e-4)


def test_devices_errors_name_the_parameter(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # main sets it
    assert main([*SMALL, "--devices", "0", "--out", str(tmp_path / "a")]) == 2
    assert "devices must be an integer >= 1, got 0" in capsys.readouterr().err
    # This process's JAX has one device already: the error says how to get more.
    assert main([*SMALL, "--devices", "2", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "devices=2 needs 2 JAX devices, 1 available" in err and "XLA_FLAGS" in err
    bad = _cli(*SMALL, "--devices", "2", "--tasks", "15", "--out", str(tmp_path / "c"))
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "devices=2: tasks must be a multiple of 2, got 15" in bad.stderr, bad.stderr[-2000:]
    assert not (tmp_path / "c").exists()  # refused before any file
