"""The timing protocol of rmft_theory.benchmarking (call order and counts; nothing is timed)."""

import json
import os

import pytest

from rmft_theory import benchmarking
from rmft_theory.benchmarking import assemble_results, placement, run_child, time_interleaved


def recorder(log: list, name: str):
    return lambda: log.append(name)


@pytest.fixture
def ticking(monkeypatch):
    """A fake clock for rmft_theory.benchmarking: ``ticking(log, name)`` is a call that takes
    exactly 1 ms of it and logs its name, so counts that depend on time do not depend on the
    machine's load."""
    clock = [0.0]

    class FakeTime:
        perf_counter = staticmethod(lambda: clock[0])
        process_time = staticmethod(lambda: clock[0])

    monkeypatch.setattr(benchmarking, "time", FakeTime)

    def call(log, name):
        def run():
            clock[0] += 1e-3
            log.append(name)

        return run

    return call


def test_single_calls_alternate_and_the_order_reverses_every_round():
    log = []
    out = time_interleaved({"a": recorder(log, "a"), "b": recorder(log, "b")}, repeats=3)
    # one warm-up round, then rounds a b | b a | a b
    assert log == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {name: len(r["runs_s"]) for name, r in out.items()} == {"a": 3, "b": 3}


def test_blocks_run_back_to_back_after_one_untimed_settling_call():
    log = []
    out = time_interleaved(
        {"a": recorder(log, "a"), "b": recorder(log, "b")}, repeats=2, warmup=0, block=3
    )
    assert log == ["a"] * 4 + ["b"] * 4 + ["b"] * 4 + ["a"] * 4
    assert {name: len(r["runs_s"]) for name, r in out.items()} == {"a": 6, "b": 6}
    for r in out.values():
        assert r["min_s"] <= r["median_s"]


def test_settling_calls_fill_settle_s_before_each_block(ticking):
    # Every call takes 1 ms of the fake clock, so 3.5 ms of settling is 4 untimed calls.
    log = []
    out = time_interleaved(
        {"a": ticking(log, "a"), "b": ticking(log, "b")},
        repeats=2,
        warmup=0,
        block=2,
        settle_s=0.0035,
    )
    assert log == ["a"] * 6 + ["b"] * 6 + ["b"] * 6 + ["a"] * 6  # 4 settling + 2 timed
    assert out["a"]["runs_s"] == pytest.approx([1e-3] * 4)


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"block": 0}])
def test_bad_counts_are_named(kwargs):
    with pytest.raises(ValueError, match="repeats and block"):
        time_interleaved({"a": lambda: None}, **kwargs)


def test_bad_settle_time_is_named():
    with pytest.raises(ValueError, match="settle_s"):
        time_interleaved({"a": lambda: None}, block=2, settle_s=-1.0)


def test_machine_use_tells_a_sleeping_call_from_a_busy_one():
    """``cores`` is CPU time over wall time: a sleep uses almost none, a busy loop one core.

    Bounds with wide margins, as they hold on a loaded machine: 20 ms of sleep costs the
    process well under 0.3 ms of CPU (cores < 0.25 leaves 10× that for the timing code
    itself), and a busy loop runs on the CPU unless the scheduler takes it off, which would
    have to happen for over 3/4 of its wall time to fail cores > 0.25.
    """
    import time

    def busy():
        end = time.perf_counter() + 0.02
        while time.perf_counter() < end:
            pass

    out = time_interleaved({"sleep": lambda: time.sleep(0.02), "busy": busy}, repeats=2)
    assert out["sleep"]["cores"] < 0.25
    assert out["busy"]["cores"] > 0.25
    # Every sleep blocks the thread: at least one voluntary context switch per call (on Unix).
    assert out["sleep"]["switches_per_call"] is None or out["sleep"]["switches_per_call"] >= 1


def test_run_child_returns_json_or_says_why_it_failed():
    import sys

    def child(code):
        return run_child([sys.executable, "-c", code], timeout_s=60)

    assert child("print('noise'); print('[1, 2]')") == (True, [1, 2])
    ok, why = child("import sys; sys.exit(3)")
    assert not ok and why.startswith("exit 3")
    ok, why = child("pass")
    assert not ok and why.startswith("no output")
    ok, why = child("print('not json')")
    assert not ok and "not JSON" in why
    ok, why = run_child([sys.executable, "-c", "import time; time.sleep(5)"], timeout_s=0.5)
    assert not ok and why.startswith("timed out")


def test_results_name_each_benchmark_and_the_revision_it_ran_at(tmp_path):
    """RESULTS.md gathers every results/<name>.md under a heading with its own revision."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "alpha.md").write_text("| a |\n|---|\n| 1 |\n")
    (results / "alpha.json").write_text(
        json.dumps({"machine": {"git_revision": "abc123"}, "quick": True})
    )
    (results / "beta.md").write_text("beta table\n")  # no JSON beside it
    text = assemble_results(tmp_path).read_text()
    assert "## alpha (git abc123, quick mode)\n\n| a |" in text
    assert "## beta\n\nbeta table" in text
    assert text.index("## alpha") < text.index("## beta")


def test_quick_results_never_overwrite_the_full_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarking, "benchmarks_dir", lambda: tmp_path)
    benchmarking.write_results("alpha", {"quick": False}, "full table")
    benchmarking.write_results("alpha", {"quick": True}, "quick table")
    assert (tmp_path / "results" / "alpha.md").read_text() == "full table\n"
    assert (tmp_path / "results" / "quick" / "alpha.md").read_text() == "quick table\n"
    full, quick = assemble_results(), assemble_results(quick=True)
    assert full == tmp_path / "RESULTS.md" and "full table" in full.read_text()
    assert quick == tmp_path / "results" / "quick" / "RESULTS.md"
    assert "quick table" in quick.read_text() and "full table" not in quick.read_text()
    assert "quick table" not in full.read_text()


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [(80.0, 95.0, "near"), (350.0, 420.0, "far"), (80.0, 350.0, "mixed"), (None, 80.0, "unknown")],
)
def test_placement_needs_both_probes_to_agree(before, after, expected):
    assert placement(before, after) == expected


def test_core_latency_is_none_without_a_compiler_or_a_second_cpu(monkeypatch):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("needs os.sched_getaffinity")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(benchmarking, "_core_latency_binary", lambda: None)
    assert benchmarking.core_latency_ns() is None  # no compiler
    monkeypatch.setattr(benchmarking, "_core_latency_binary", lambda: "/bin/false")
    assert benchmarking.core_latency_ns() is None  # the probe failed
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert benchmarking.core_latency_ns() is None  # one CPU: nothing to measure


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"rounds": 0}, "rounds"), ({"cpus": (0, 0)}, "cpus"), ({"cpus": (0, 10_000)}, "cpus")],
)
def test_bad_probe_arguments_are_named(kwargs, match):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("needs os.sched_getaffinity")
    with pytest.raises(ValueError, match=match):
        benchmarking.core_latency_ns(**kwargs)


def test_core_latency_probe_measures_a_round_trip():
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2 or benchmarking._core_latency_binary() is None:
        pytest.skip("needs Linux, two CPUs and a C compiler")
    # A cache line's round trip between two idle CPUs takes tens to hundreds of nanoseconds.
    # Under pytest -n 2 the other CPU runs another test, and the spinning partner thread may
    # wait for the scheduler's time slice (milliseconds), so the bound only rules out a
    # broken probe: positive, and under 0.1 s per round trip. 50 rounds keep it short.
    ns = benchmarking.core_latency_ns((cpus[0], cpus[1]), rounds=50)
    assert ns is not None and 1.0 < ns < 1e8


def test_probed_brackets_the_call_with_two_probes(monkeypatch):
    log = []
    readings = iter([80.0, 350.0])
    monkeypatch.setattr(
        benchmarking, "core_latency_ns", lambda: log.append("probe") or next(readings)
    )
    result, probes = benchmarking.probed(lambda: log.append("call") or 7)
    assert result == 7 and log == ["probe", "call", "probe"]
    assert probes == {"core_before_ns": 80.0, "core_after_ns": 350.0, "placement": "mixed"}


def test_probed_rounds_alternate_the_order_and_label_each_round(monkeypatch, ticking):
    import itertools

    from rmft_theory import benchmarking

    latencies = itertools.chain([80.0, 90.0, 300.0, 80.0], itertools.repeat(300.0))
    monkeypatch.setattr(benchmarking, "core_latency_ns", lambda: next(latencies))
    # On the fake clock a round (settling call + block of 2, for each of a and b) takes 6 ms,
    # so 13 ms of rounds are 3 rounds (the third starts at 12 ms).
    order = []
    calls = {"a": ticking(order, "a"), "b": ticking(order, "b")}
    rounds = benchmarking.probed_rounds(calls, seconds=0.013, block=2)
    assert len(rounds) == 3
    assert [r["placement"] for r in rounds[:2]] == ["near", "mixed"]
    assert all(r["ms"] == pytest.approx({"a": 1.0, "b": 1.0}) for r in rounds)
    # Warm-up (1 + settle + 2 per call), then rounds of settle + block: a first, then b first.
    warm = 2 * (1 + 1 + 2)
    assert order[warm : warm + 6] == ["a"] * 3 + ["b"] * 3
    assert order[warm + 6 : warm + 12] == ["b"] * 3 + ["a"] * 3


def test_probed_rounds_pass_the_settling_time_on(monkeypatch, ticking):
    from rmft_theory import benchmarking

    monkeypatch.setattr(benchmarking, "core_latency_ns", lambda: 80.0)
    seen = []
    real = benchmarking.time_interleaved

    def spy(calls, *args, **kwargs):
        seen.append(kwargs.get("settle_s"))
        return real(calls, *args, **kwargs)

    monkeypatch.setattr(benchmarking, "time_interleaved", spy)
    # On the fake clock a round takes 3 ms: 10 ms of rounds are 4 rounds after the warm-up.
    benchmarking.probed_rounds({"a": ticking([], "a")}, seconds=0.01, block=2, settle_s=0.001)
    # The warm-up and every round settle for the time asked.
    assert seen == [0.001] * 5
