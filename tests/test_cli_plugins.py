"""``rmft --import MODULE``: user registrations reach ``rmft evaluate`` and ``rmft train``."""

import json
import math
import sys
import textwrap

import pytest

from rmft_theory.cli import main
from rmft_theory.envs import ENVS

# The README's LaplaceFOL example ("Extending it"), as a user would save it next to their work.
PLUGIN = textwrap.dedent(
    """
    import dataclasses
    from typing import ClassVar
    import jax, jax.numpy as jnp
    from rmft_theory.envs.registry import EnvEntry, register_env


    @dataclasses.dataclass(frozen=True)
    class LaplaceFOL:
        d: int
        horizon: int
        scale: float = 1.0
        feedback: ClassVar[str] = "full"
        stationary: ClassVar[bool] = True
        symmetric_noise: ClassVar[bool] = True  # Laplace noise is symmetric about its mean
        reward_range = (-float("inf"), float("inf"))
        reward_scale = property(lambda self: self.scale * 2**0.5)

        def __post_init__(self):
            if self.scale <= 0:
                raise ValueError(f"scale must be > 0, got {self.scale}")

        def sample_task(self, key):  # per-task parameters (a pytree)
            return jnp.zeros(self.d)

        def mean_rewards(self, task):  # (T, d) means
            return jnp.broadcast_to(task, (self.horizon, self.d))

        def sample_rewards(self, key, task):  # (T, d) realised rewards
            return task[None, :] + self.scale * jax.random.laplace(key, (self.horizon, self.d))


    register_env("laplace-fol", EnvEntry(LaplaceFOL, "full information, Laplace rewards"))
    """
)

EVALUATE = ["evaluate", "--policy", "ftl", "--env", "laplace-fol", "--d", "3"]
EVALUATE += ["--horizon", "12", "--runs", "8", "--n-boot", "50"]


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder holding the plugin module ``rmft_laplace_plugin.py``; the registry is restored."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "rmft_laplace_plugin.py").write_text(PLUGIN)
    monkeypatch.setattr(sys, "path", list(sys.path))  # restored after the test
    assert "laplace-fol" not in ENVS
    yield folder
    ENVS.pop("laplace-fol", None)
    sys.modules.pop("rmft_laplace_plugin", None)


def test_import_makes_a_user_env_visible_to_evaluate(plugin_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    # Without --import the shell command cannot see the registration: one-line error.
    assert main([*EVALUATE, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "laplace-fol" in err and "\n" not in err
    sys.path.insert(0, str(plugin_dir))
    assert main(["--import", "rmft_laplace_plugin", *EVALUATE, "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["env"] == "laplace-fol" and math.isfinite(result["mean_regret"])


def test_import_finds_modules_in_the_current_directory(plugin_dir, tmp_path, monkeypatch):
    # The `rmft` script's sys.path starts at its own folder; --import adds the current one.
    monkeypatch.chdir(plugin_dir)
    sys.path[:] = [p for p in sys.path if p not in ("", str(plugin_dir))]
    out = tmp_path / "ev"
    assert main(["--import", "rmft_laplace_plugin", *EVALUATE, "--out", str(out)]) == 0
    assert (out / "result.json").exists()


def test_direct_training_with_antithetic_pairs_on_a_symmetric_user_env(plugin_dir, tmp_path):
    # antithetic defaults to true: accepted because the class sets symmetric_noise = True.
    sys.path.insert(0, str(plugin_dir))
    out = tmp_path / "run"
    argv = ["--import", "rmft_laplace_plugin", "train", "--set", "env.name=laplace-fol"]
    argv += ["--set", 'env.options={"d": 2, "horizon": 6}', "--set", "direct.steps=10"]
    argv += ["--set", "direct.batch_size=8", "--set", "direct.chunk=10", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["env"]["name"] == "laplace-fol" and cfg["direct"]["antithetic"] is True


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, "rmft: error: --import rmft_laplace_plugin: ModuleNotFoundError: No module named"),
        ("raise RuntimeError('bad\\nplugin')", "RuntimeError: bad plugin"),
    ],
)
def test_import_failure_exits_2_with_one_line(plugin_dir, tmp_path, capsys, source, expected):
    if source is None:
        (plugin_dir / "rmft_laplace_plugin.py").unlink()
    else:
        (plugin_dir / "rmft_laplace_plugin.py").write_text(source)
    sys.path.insert(0, str(plugin_dir))
    code = main(["--import", "rmft_laplace_plugin", *EVALUATE, "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert expected in err and "rmft_laplace_plugin" in err and "\n" not in err
    assert not (tmp_path / "ev").exists()
