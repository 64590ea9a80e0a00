"""The reproduction pipeline: discovery, resumable units, kill -9 and resume, plot-only."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rmft_theory.io import load_npz, save_npz
from rmft_theory.reproduce import (
    FINGERPRINT_KEY,
    discover,
    fingerprint,
    remove_stale_temporaries,
    run_all,
    unit,
)

TOY = textwrap.dedent(
    '''
    """A toy experiment: five units, each logged when it is computed.

    With TOY_KILL_AT=i in the environment, unit i SIGKILLs its process group part-way.
    """
    import os
    import signal
    from pathlib import Path

    import numpy as np

    from rmft_theory.io import load_npz, save_npz
    from rmft_theory.reproduce import unit

    NAME = "fig_toy"


    def compute(fig_dir, quick):
        values = []
        for i in range(5):
            def work(i=i):
                with open(Path(fig_dir) / "log.txt", "a") as f:
                    f.write(f"{i}\\n")
                if os.environ.get("TOY_KILL_AT") == str(i):
                    os.killpg(os.getpgid(0), signal.SIGKILL)
                return {"value": np.array(i * i)}
            values.append(int(unit(fig_dir, NAME, f"u{i}", work)["value"]))
        save_npz(Path(fig_dir) / f"{NAME}.npz", values=np.array(values))


    def plot(fig_dir):
        values = load_npz(Path(fig_dir) / f"{NAME}.npz")["values"]
        out = Path(fig_dir) / f"{NAME}.txt"
        out.write_text(" ".join(map(str, values)))
        return [out]
    '''
)


@pytest.fixture
def toy(tmp_path):
    exp = tmp_path / "experiments"
    exp.mkdir()
    (exp / "fig_toy.py").write_text(TOY)
    (exp / "helper.py").write_text("raise RuntimeError('not an experiment')\n")
    return exp, tmp_path / "figures"


def test_discovery_only_takes_fig_scripts(toy):
    exp, _ = toy
    assert list(discover(exp)) == ["fig_toy"]
    with pytest.raises(ValueError, match="--only"):
        run_all(["fig_nope"], True, experiments_dir=exp)


def test_kill_9_then_resume_recomputes_nothing_finished(toy):
    exp, figs = toy
    cmd = [
        sys.executable,
        "-m",
        "rmft_theory.cli",
        "reproduce",
        "--quick",
        "--experiments-dir",
        str(exp),
        "--figures-dir",
        str(figs),
    ]
    units = figs / "units" / "fig_toy"
    # Killed in the middle of unit 2 (its process group, as kill -9 of a terminal's job).
    proc = subprocess.run(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "TOY_KILL_AT": "2"},
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL
    finished = sorted(p.name for p in units.glob("u*.npz"))
    assert finished == ["u0.npz", "u1.npz"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in units.glob("u*.npz")}
    # Every file present is complete and readable.
    for p in units.glob("u*.npz"):
        load_npz(p)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = (figs / "log.txt").read_text().split()
    # The units finished before the kill were computed once and not rewritten; only unit 2,
    # in flight at the kill, ran twice.
    assert [log.count(str(i)) for i in range(5)] == [1, 1, 2, 1, 1]
    for name in finished:
        assert (units / name).stat().st_mtime_ns == mtimes[name]
    assert (figs / "fig_toy.txt").read_text() == "0 1 4 9 16"
    assert json.loads((units / "status.json").read_text())["quick"] is True
    # A third run recomputes nothing at all and only redraws.
    status = run_all(None, True, figs, exp)
    assert status["fig_toy"]["state"] == "cached"
    assert (figs / "log.txt").read_text().split() == log
    assert not list(figs.rglob(".*.tmp*"))


def test_plot_only_reads_saved_data(toy):
    exp, figs = toy
    run_all(None, True, figs, exp)
    (figs / "fig_toy.txt").unlink()
    status = run_all(None, True, figs, exp, plot_only=True)
    assert status["fig_toy"]["state"] == "plotted"
    assert (figs / "fig_toy.txt").read_text() == "0 1 4 9 16"


def test_plot_only_without_saved_data_is_a_named_error(toy):
    exp, figs = toy
    with pytest.raises(ValueError, match=r"^no saved data for fig_toy in .*rmft reproduce"):
        run_all(None, True, figs, exp, plot_only=True)


def test_a_cached_experiment_from_other_library_sources_is_reported_and_recomputed(
    toy, monkeypatch, capsys
):
    from rmft_theory import reproduce

    exp, figs = toy
    run_all(None, True, figs, exp)
    status = json.loads((figs / "units" / "fig_toy" / "status.json").read_text())
    assert status["library_sha256"] == reproduce.library_sha256()
    provenance = json.loads((figs / "fig_toy.provenance.json").read_text())
    assert provenance["library_sha256"] == status["library_sha256"]
    assert provenance["quick"] is True and "git_revision" in provenance["environment"]
    capsys.readouterr()
    monkeypatch.setattr(reproduce, "library_sha256", lambda: "edited")
    assert run_all(None, True, figs, exp)["fig_toy"]["state"] == "cached"
    assert "computed with other rmft_theory sources" in capsys.readouterr().err
    assert run_all(None, True, figs, exp, recompute=True)["fig_toy"]["state"] == "computed"
    log = (figs / "log.txt").read_text().split()
    assert [log.count(str(i)) for i in range(5)] == [2] * 5  # every unit computed again
    with pytest.raises(ValueError, match="recompute and plot_only"):
        run_all(None, True, figs, exp, plot_only=True, recompute=True)


def test_an_experiment_script_writes_provenance_and_names_missing_data(
    toy, tmp_path, monkeypatch, capsys
):
    from rmft_theory.plotting import script_main
    from rmft_theory.reproduce import load_experiment

    exp, _ = toy
    module = load_experiment(exp / "fig_toy.py")
    out = tmp_path / "script_out"
    monkeypatch.setattr(sys, "argv", ["fig_toy.py", "--quick", "--out", str(out)])
    script_main(module.compute, module.plot, "fig_toy")
    provenance = json.loads((out / "fig_toy.provenance.json").read_text())
    assert provenance["experiment"] == "fig_toy" and provenance["quick"] is True
    assert "git_revision" in provenance["environment"]
    empty = tmp_path / "empty"
    monkeypatch.setattr(sys, "argv", ["fig_toy.py", "--plot-only", "--out", str(empty)])
    with pytest.raises(SystemExit) as exit_info:
        script_main(module.compute, module.plot, "fig_toy")
    assert exit_info.value.code == 2
    assert "no saved data for fig_toy" in capsys.readouterr().err


def test_unit_saves_once_and_loads_after(tmp_path):
    calls = []

    def work():
        calls.append(1)
        return {"a": np.arange(3)}

    first = unit(tmp_path, "exp", "u", work)
    second = unit(tmp_path, "exp", "u", work)
    assert len(calls) == 1
    np.testing.assert_array_equal(first["a"], second["a"])
    assert set(second) == {"a"}  # the stored fingerprint is not handed back


@dataclasses.dataclass(frozen=True)
class _Config:
    steps: int
    rate: float = 0.1


def _counting():
    calls = []

    def work():
        calls.append(1)
        return {"steps_used": np.array(len(calls)), "curve": np.arange(3.0)}

    return calls, work


def test_unit_computed_in_quick_mode_is_recomputed_in_full_mode(tmp_path):
    calls, work = _counting()
    unit(tmp_path, "exp", "u", work, quick=True, settings=_Config(10))
    full = unit(tmp_path, "exp", "u", work, quick=False, settings=_Config(10))
    assert len(calls) == 2 and int(full["steps_used"]) == 2
    unit(tmp_path, "exp", "u", work, quick=False, settings=_Config(10))
    assert len(calls) == 2


def test_unit_recomputed_when_settings_change_and_reused_when_equal(tmp_path, capsys):
    calls, work = _counting()
    unit(tmp_path, "exp", "u", work, quick=False, settings={"cfg": _Config(10), "seeds": (0, 1)})
    # Equal settings, built afresh and with the dict keys in another order: reused.
    again = unit(
        tmp_path, "exp", "u", work, quick=False, settings={"seeds": [0, 1], "cfg": _Config(10)}
    )
    assert len(calls) == 1 and int(again["steps_used"]) == 1
    unit(
        tmp_path, "exp", "u", work, quick=False, settings={"cfg": _Config(10, 0.2), "seeds": (0, 1)}
    )
    assert len(calls) == 2
    unit(tmp_path, "exp", "u", work, quick=False, settings={"cfg": _Config(10, 0.2), "seeds": (0,)})
    assert len(calls) == 3
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "  unit u: computing"
    assert err[1].startswith("  unit u: done in ") and err[1].endswith(" s")
    assert err[2] == "  unit u: cached"
    assert err[3] == "  unit u: computing (mode or settings changed)"


def test_legacy_unit_without_fingerprint_is_recomputed(tmp_path):
    path = tmp_path / "units" / "exp" / "u.npz"
    save_npz(path, steps_used=np.array(10))  # as saved before fingerprints existed
    calls, work = _counting()
    out = unit(tmp_path, "exp", "u", work, quick=True)
    assert len(calls) == 1 and int(out["steps_used"]) == 1
    assert str(load_npz(path)[FINGERPRINT_KEY]) == fingerprint(True)
    unit(tmp_path, "exp", "u", work, quick=True)
    assert len(calls) == 1


def test_fingerprint_is_stable_and_rejects_unencodable_settings():
    assert fingerprint(True, {"a": (1, 2), "b": _Config(3)}) == fingerprint(
        True, {"b": {"steps": 3, "rate": 0.1}, "a": [1, 2]}
    )
    assert fingerprint(True) != fingerprint(False) != fingerprint(None)
    with pytest.raises(TypeError, match="JSON-able"):
        fingerprint(True, {"f": object()})


def test_quick_run_then_full_run_into_one_folder_recomputes(toy):
    exp, figs = toy
    assert run_all(None, True, figs, exp)["fig_toy"]["state"] == "computed"
    # The toy passes no mode to unit(): the reproduction's own mode goes into the fingerprint.
    assert run_all(None, False, figs, exp)["fig_toy"]["state"] == "computed"
    log = (figs / "log.txt").read_text().split()
    assert sorted(log) == sorted(2 * [str(i) for i in range(5)])
    status = json.loads((figs / "units" / "fig_toy" / "status.json").read_text())
    assert status["quick"] is False
    assert run_all(None, False, figs, exp)["fig_toy"]["state"] == "cached"


def test_edited_script_or_legacy_status_reruns_compute_reusing_units(toy):
    exp, figs = toy
    run_all(None, True, figs, exp)
    log = (figs / "log.txt").read_text()
    script = exp / "fig_toy.py"
    script.write_text(script.read_text() + "\n# edited\n")
    assert run_all(None, True, figs, exp)["fig_toy"]["state"] == "computed"
    done = figs / "units" / "fig_toy" / "status.json"
    done.write_text(json.dumps({"quick": True, "compute_s": 1.0}))  # before fingerprints
    assert run_all(None, True, figs, exp)["fig_toy"]["state"] == "computed"
    # Unit settings did not change, so no unit was computed again.
    assert (figs / "log.txt").read_text() == log


def test_stale_temporaries_are_removed(tmp_path):
    save_npz(tmp_path / "a.npz", x=np.ones(2))
    (tmp_path / ".a.npz.abc.tmp.npz").write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["a.npz"]
