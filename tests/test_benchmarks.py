"""The benchmarks' references compute the same work as the library (no timing here)."""

import importlib.util
import sys

import pytest

from rmft_theory.benchmarking import benchmarks_dir, discover_benchmarks, import_torch


def load(name: str):
    """Import ``benchmarks/bench_NAME.py`` as a module (benchmarks/ is not a package)."""
    path = discover_benchmarks()[name]
    sys.path.insert(0, str(benchmarks_dir()))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(benchmarks_dir()))
    return module


def test_every_benchmark_imports_and_has_a_main():
    for name in discover_benchmarks():
        module = load(name)
        assert callable(module.main), name
        assert module.__doc__, name


def test_rollout_references_score_the_same_trajectories_as_the_library():
    # The NumPy loop (and PyTorch, when installed) on the library's own draws: float32
    # regrets of O(1)–O(10) summed over 17 rounds agree to 1e-4 absolute.
    bench = load("rollout")
    assert bench.check_references(import_torch()) < 1e-4


def test_finetune_pytorch_reference_matches_both_forms():
    torch = pytest.importorskip("torch")
    # 5 Adam steps (lr 1e-2) from the same float32 start in both libraries: 1e-5 absolute.
    assert load("finetune").check_agreement(torch) < 1e-5


def test_rollout_verdicts_check_the_median_over_processes_too():
    bench = load("rollout")
    given = {"vs_numpy": 12.0, "roofline_fraction": 0.05, "vs_torch": 1.6}
    spread = {"vs_numpy_median": 9.0, "vs_torch_median": 1.7}
    out = bench.verdicts([], given, [], True, None, spread)
    assert out["per_trajectory_rewards_given_vs_numpy>=10"]
    assert not out["per_trajectory_rewards_given_vs_numpy>=10_process_median"]
    assert out["per_trajectory_rewards_given_vs_torch>=1.5_process_median"]
    assert "per_trajectory_rewards_given_vs_torch>=1.5_process_median" not in bench.verdicts(
        [], given, [], True, None, {}
    )


def test_spread_markdown_lists_every_process_and_the_medians():
    bench = load("rollout")
    spread = {
        "processes": [{"jax_steps_per_s": 1e9, "vs_numpy": 14.0}, {"jax_steps_per_s": 6e8}],
        "jax_steps_per_s_median": 8e8,
        "jax_steps_per_s_range": [6e8, 1e9],
    }
    lines = bench.spread_markdown(spread, " without PyTorch")
    assert "2 fresh processes" in lines[0] and "without PyTorch" in lines[0]
    table = lines[2].splitlines()
    assert len(table) == 4 and table[2].startswith("| 0 | 1e+09 | 14 |")
    assert lines[-1] == "Median over processes: jax_steps_per_s 8e+08 (range 6e+08-1e+09)."
