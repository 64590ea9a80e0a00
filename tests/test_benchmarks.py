"""The benchmarks' references compute the same work as the library (no timing here)."""

import importlib.util
import sys

import numpy as np
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


# torch.compile imports torch.utils.mkldnn, whose torch.jit.script_method warns of its own
# deprecation (PyTorch 2.13); the warning is PyTorch's, not this code's.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
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
    # The pinned variants get the same names with one suffix.
    given["vs_torch_pinned"] = 1.4
    spread["vs_torch_pinned_median"] = 1.55
    out = bench.verdicts([], given, [], True, None, spread)
    assert not out["per_trajectory_rewards_given_vs_torch>=1.5_xla_threads_pinned"]
    assert out["per_trajectory_rewards_given_vs_torch>=1.5_process_median_xla_threads_pinned"]


def _scaling_rows(times_ms: dict[int, float], axis: str = "T") -> list[dict]:
    """Scaling rows at M = L = 64 for the horizons (or M, on the B axis) given."""
    rows = []
    for size, time_ms in times_ms.items():
        M, T = (64, size) if axis == "T" else (size, 200)
        rows.append(
            {
                "axis": axis,
                "noise": "per-trajectory",
                "M": M,
                "L": 64,
                "T": T,
                "B": M * 64,
                "time_ms": time_ms,
            }
        )
    first = rows[0]["M"] * rows[0]["L"] * rows[0]["T"] / rows[0]["time_ms"]
    for r in rows:
        r["rate_vs_first"] = r["M"] * r["L"] * r["T"] / r["time_ms"] / first
    return rows


def test_marginal_costs_separate_a_fixed_cost_from_growth():
    bench = load("rollout")
    # time = 0.5 ms + 2 ns per trajectory-step, exactly: the rate rises 1.27x from T = 200 to
    # 2000 (the rate check fails) while every increment is the overall slope. Rows below
    # B = 4096 are left out. Exact affine data, so the fit holds to float64 rounding (1e-9).
    affine = _scaling_rows({T: 0.5 + 2e-6 * 4096 * T for T in (200, 500, 1000, 2000)})
    small = {**affine[0], "M": 16, "B": 1024, "time_ms": 99.0}
    (m,) = bench.marginal_costs([*affine, small])
    assert m["sizes"] == 4
    assert m["fixed_ms"] == pytest.approx(0.5, abs=1e-9)
    assert m["marginal_ns_per_step"] == pytest.approx(2.0, rel=1e-9)
    assert m["increment_over_overall"] == [1.0, 1.0, 1.0]
    out = bench.verdicts([], None, affine, False)
    assert not out["linear_in_T_within_20%"]
    assert out["marginal_cost_T_per-trajectory_constant_within_20%"]
    # Quadratic growth: the increments grow with T and the marginal check fails.
    quadratic = _scaling_rows({T: 1e-6 * T * T for T in (200, 500, 1000, 2000)})
    (q,) = bench.marginal_costs(quadratic)
    assert q["increment_over_overall"][0] < 0.8 and q["increment_over_overall"][-1] > 1.2
    assert not bench.verdicts([], None, quadratic, False)[
        "marginal_cost_T_per-trajectory_constant_within_20%"
    ]
    # Two sizes give no increments to compare: reported by marginal_costs, not checked.
    two = _scaling_rows({M: 0.1 * M for M in (64, 256)}, axis="B")
    assert bench.marginal_costs(two)[0]["sizes"] == 2
    assert not any(k.startswith("marginal_cost") for k in bench.verdicts([], None, two, False))


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
    assert len(table) == 4 and table[2].startswith("| 0 | 1e+09 |  |  |  | 14 |")
    assert lines[-1] == "Median over processes: jax_steps_per_s 8e+08 (range 6e+08-1e+09)."


def test_placement_summary_keeps_rounds_whose_probes_agree_apart():
    bench = load("rollout")

    def rnd(where, jax, torch_a, torch_b):
        return {"placement": where, "ms": {"jax": jax, "torch@1": torch_a, "torch@2": torch_b}}

    rounds = [
        rnd("near", 0.5, 0.9, 0.6),  # best PyTorch 0.6: ratio 1.2
        rnd("near", 0.4, 0.8, 0.8),  # best 0.8: ratio 2.0
        rnd("near", 0.6, 0.6, 0.9),  # best 0.6: ratio 1.0
        rnd("far", 0.8, 0.8, 0.9),
        rnd("mixed", 5.0, 1.0, 1.0),
    ]
    out = bench.placement_summary(rounds, ["jax"], ["torch@1", "torch@2"])
    near = out["near"]
    assert near["rounds"] == 3 and near["jax_ms"] == 0.5 and near["torch_best_ms"] == 0.6
    # The ratio is the median of per-round ratios, not the ratio of medians (0.6 / 0.5).
    assert near["vs_torch"] == pytest.approx(1.2)
    assert out["far"]["vs_torch"] == pytest.approx(1.0) and out["mixed"]["rounds"] == 1
    assert "unknown" not in out

    study = {"summary": out}
    checks = bench.verdicts([], None, [], True, None, None, study)
    assert checks == {
        "per_trajectory_rewards_given_vs_torch>=1.5_near": False,
        "per_trajectory_rewards_given_vs_torch>=1.5_far": False,
        "linear_in_T_within_20%": True,
        "linear_in_B_within_20%": True,
    }
    lines = bench.placement_markdown({"rounds": rounds, "block": 20, "seconds": 9.0, **study})
    assert "5 rounds of 20 calls" in lines[0] and "9 s" in lines[0]
    assert lines[2].splitlines()[0].startswith("| placement | rounds | jax_ms |")
    assert bench.placement_markdown("skipped: no compiler") == [
        "Placement study skipped: no compiler."
    ]


def test_pin_toggling_pins_before_the_pinned_calls_and_restores(monkeypatch):
    from rmft_theory import benchmarking as bench

    log = []
    monkeypatch.setattr(bench, "pin_xla_threads", lambda: log.append("pin") or {1: {0, 1}})
    monkeypatch.setattr(bench, "restore_affinities", lambda prev: log.append(("restore", prev)))
    calls = {n: (lambda n=n: log.append(n)) for n in ("jax", "jax_pinned", "torch@2")}
    wrapped, restore = bench.pin_toggling(calls, {"jax_pinned"})
    for name in ("jax_pinned", "jax_pinned", "torch@2", "jax", "jax", "jax_pinned"):
        wrapped[name]()
    restore()
    restore()  # nothing left to restore
    assert log == [
        "pin",
        "jax_pinned",
        "jax_pinned",
        "torch@2",  # PyTorch's calls leave the placement as it is
        ("restore", {1: {0, 1}}),
        "jax",
        "jax",
        "pin",
        "jax_pinned",
        ("restore", {1: {0, 1}}),
    ]


def test_rollout_stages_are_the_parts_of_the_full_call():
    # The score stage, fed the model and draws stages' outputs, is the full rollout's regret:
    # the same keys and arithmetic, so equal up to float32 rounding of a different fusion
    # (1e-4 absolute on regrets of O(1)-O(10), as for the references). PyTorch's stages are
    # the helpers torch_rollout is built from, whose numbers check_references tests; here
    # only that each stage call runs and has its shape (its noise is its own draw).
    bench = load("rollout")
    case = (3, 5, 17, 4)
    jax_calls = bench.jax_stages(case)
    assert np.abs(np.asarray(jax_calls["score"]()) - np.asarray(jax_calls["full"]())).max() < 1e-4
    torch = import_torch()
    if torch is not None:
        threads = torch.get_num_threads()
        try:
            calls = bench.torch_stages(torch, case, threads=1, compiled=False)
            assert tuple(calls["model"]().shape) == (3, 17, 4)
            assert tuple(calls["draws"]().shape) == (3, 5, 4)
            assert tuple(calls["score"]().shape) == tuple(calls["full"]().shape) == (3, 5)
        finally:
            torch.set_num_threads(threads)


def test_stages_markdown_sums_the_stages_and_says_why_one_core_is_missing():
    bench = load("rollout")
    stages = [
        {"stage": s, "jax_ms": ms, "jax_cores": 1.0, "jax_switches_per_call": 2.0}
        for s, ms in zip(bench.STAGES, (0.2, 0.1, 0.3, 0.8), strict=True)
    ]
    lines = bench.stages_markdown(stages, "skipped: no affinity")
    assert "(one-core run: skipped: no affinity)" in lines[0]
    assert lines[-1].endswith("full call: jax 0.6 ms against 0.8 ms.")
    one_core = [{"stage": "model", "jax_ms": 0.25}]
    table = bench.stages_markdown(stages, one_core)[2].splitlines()
    assert table[2].startswith("| model | 0.2 | 1 | 2 | 0.25 |")


def test_sharding_summary_takes_medians_and_counts_the_faster_processes():
    bench = load("sharding")

    def row(label, single, mesh2, diff=0.0, pinned=1.5):
        return {
            "workload": label,
            "single_ms": single,
            "mesh1_ms": single,
            "mesh2_ms": mesh2,
            "speedup_vs_single": single / mesh2,
            "speedup_vs_mesh1": single / mesh2,
            "single_cores": 1.0,
            "mesh2_cores": 2.0,
            "mesh2_max_rel_diff": diff,
            "single_pinned_ms": pinned,
            "mesh2_pinned_ms": 1.0,
            "speedup_pinned": pinned,
            "mesh2_from_device0_ms": mesh2 + 0.25,
            "speedup_from_device0": single / (mesh2 + 0.25),
        }

    runs = [
        [row("rollout a", 1.0, 0.5), row("finetune", 2.0, 4.0)],
        "failed: ['boom']",
        [row("rollout a", 1.0, 2.0, 1e-7), row("finetune", 2.0, 1.0)],
        [row("rollout a", 3.0, 1.0, pinned=0.9), row("finetune", 2.0, 4.0)],
    ]
    out = {r["workload"]: r for r in bench.summarize(runs, 2)}
    assert out["rollout a"]["processes"] == 3
    assert out["rollout a"]["speedup_vs_single"] == 2.0  # median of 2, 0.5, 3
    assert out["rollout a"]["faster_in"] == "2/3"
    assert out["rollout a"]["speedup_range"] == "0.50-3.00"
    assert out["rollout a"]["single_ms_range"] == "1-3"
    assert out["rollout a"]["mesh2_ms_range"] == "0.5-2"
    assert out["rollout a"]["mesh2_max_rel_diff"] == 1e-7
    assert out["finetune"]["faster_in"] == "1/3"
    assert out["rollout a"]["placements"] == "unknown 3"  # rows without probes
    assert (
        out["rollout a"]["speedup_pinned"] == 1.5 and out["rollout a"]["faster_in_pinned"] == "2/3"
    )
    assert out["rollout a"]["mesh2_from_device0_ms"] == 1.25  # median of 0.75, 2.25, 1.25
    assert out["rollout a"]["speedup_from_device0"] == 1.0 / 0.75  # median of 1.33, 0.44, 2.4
    # Results from before the placed inputs (f6d953e) have no from-device-0 timings, and
    # those from before pinning no pinned ones either; a summary over old and new processes
    # reports only what all of them measured.
    placed = row("rollout a", 1.0, 0.5)
    unplaced = {k: v for k, v in placed.items() if "device0" not in k}
    unpinned = {k: v for k, v in unplaced.items() if "pinned" not in k}
    for runs_, absent in (
        ([[unplaced]], ("mesh2_from_device0_ms", "speedup_from_device0")),
        ([[unpinned]], ("speedup_pinned", "mesh2_pinned_ms", "speedup_from_device0")),
        ([[placed], [unplaced]], ("mesh2_from_device0_ms", "speedup_from_device0")),
    ):
        summary = bench.summarize(runs_, 2)[0]
        assert not any(k in summary for k in absent), (absent, summary)
        assert summary["speedup_vs_single"] == 2.0
    assert bench.summarize(["failed: ['x']"], 2) == []


def test_xla_options_summary_pools_rounds_per_placement_and_option():
    bench = load("xla_options")

    def run(placements_ms, regret):
        rounds = [
            {"placement": p, "ms": {w: ms for w in bench.WORKLOADS}} for p, ms in placements_ms
        ]
        study = [
            {"placement": p, "ms": {"jax": ms, "jax_pinned": ms / 2, "torch_compile@2": 1.0}}
            for p, ms in placements_ms
        ]
        return {"rounds": rounds, "placement_rounds": study, "regret": regret}

    runs = {
        "default": [run([("near", 1.0), ("far", 4.0)], [[1.0, 2.0]]), "failed: ['boom']"],
        "hoisted": [
            run([("near", 0.5), ("far", 2.0)], [[1.0, 2.5]]),
            run([("near", 0.5), ("mixed", 9.0)], [[1.0, 2.0]]),
        ],
    }
    rows = {(r["workload"], r["placement"]): r for r in bench.summarize(runs)}
    # A placement counts only where both options have rounds in it: mixed is left out.
    assert {p for _, p in rows} == {"near", "far"}
    near = rows[("given", "near")]
    assert (near["default_rounds"], near["hoisted_rounds"]) == (1, 2)
    assert near["speedup"] == 2.0 and rows[("thompson", "far")]["speedup"] == 2.0
    studies = {(r["option"], r["placement"]): r for r in bench.placement_studies(runs)}
    assert studies[("hoisted", "near")]["rounds"] == 2
    assert studies[("hoisted", "near")]["vs_torch_jax_pinned"] == 4.0  # 1.0 / 0.25
    assert studies[("default", "far")]["vs_torch"] == 0.25
    assert bench.regret_difference(runs) == 0.5
    assert bench.regret_difference({"default": ["failed: ['x']"], "hoisted": []}) is None
    stored = bench.without_regrets(runs)
    assert all("regret" not in r for rs in stored.values() for r in rs if isinstance(r, dict))
    assert stored["default"][1] == "failed: ['boom']" and "regret" in runs["hoisted"][0]


def test_compiler_options_summary_takes_the_median_of_per_round_ratios_per_placement():
    bench = load("compiler_options")
    rounds = [
        {"workload": "a", "placement": "near", "ms": {"default": 2.0, "no_ynn_reduce": 1.0}},
        {"workload": "a", "placement": "near", "ms": {"default": 9.0, "no_ynn_reduce": 3.0}},
        {"workload": "a", "placement": "near", "ms": {"default": 1.0, "no_ynn_reduce": 2.0}},
        {"workload": "a", "placement": "far", "ms": {"default": 1.0, "no_ynn_reduce": 2.0}},
        {"workload": "b", "placement": "mixed", "ms": {"default": 1.0, "no_ynn_reduce": 4.0}},
    ]
    meta = {"a": {"library_uses_option": True}, "b": {"library_uses_option": False}}
    rows = {(r["workload"], r["placement"]): r for r in bench.summarize(rounds, meta)}
    assert set(rows) == {("a", "near"), ("a", "far"), ("b", "mixed")}
    near = rows[("a", "near")]
    # Per-round ratios 2, 3, 0.5: median 2, not the ratio of the medians (2.0 / 2.0 = 1).
    assert near["rounds"] == 3 and near["speedup"] == 2.0
    assert near["default_ms"] == 2.0 and near["no_ynn_reduce_ms"] == 2.0
    assert rows[("a", "far")]["speedup"] == 0.5 and rows[("a", "far")]["library_uses_option"]
    assert rows[("b", "mixed")]["speedup"] == 0.25


def test_compiler_options_relative_difference_reads_float_leaves_only():
    bench = load("compiler_options")
    a = {"x": np.array([1.0, 3.0]), "n": np.array([7])}
    b = {"x": np.array([1.0, 2.0]), "n": np.array([8])}
    assert bench.relative_difference(a, b) == 0.25  # |3 - 2| / (1 + 3); integers skipped
