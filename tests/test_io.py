"""Provenance helpers of rmft_theory.io."""

import shutil
import subprocess

import pytest

from rmft_theory.io import git_revision, json_differences


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_revision_is_dirty_for_code_changes_but_not_for_outputs(tmp_path):
    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    (tmp_path / "figures").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "figures" / "fig.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    clean = git_revision(tmp_path)
    assert clean is not None and not clean.endswith("-dirty")
    (tmp_path / "figures" / "fig.json").write_text('{"a": 1}\n')  # an output: still clean
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert git_revision(tmp_path / "figures") == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_revision(tmp_path) == clean + "-dirty"


def test_git_revision_is_none_outside_a_checkout(tmp_path):
    assert git_revision(tmp_path) is None


def test_json_differences_names_each_differing_path():
    saved = {"config": {"keep": 2, "iterations": 3, "shape": [1, 2]}, "seed": 0}
    assert json_differences(saved, saved) == []
    current = {"config": {"keep": 1, "iterations": 3, "shape": [1, 3], "new": 1}, "seed": 0}
    assert json_differences(saved, current) == ["config.keep", "config.new", "config.shape"]
    assert json_differences(1, 2) == ["<root>"]
    assert json_differences({"a": {"b": 1}}, {"a": 1}) == ["a"]
