"""XLA worker-thread pinning (rmft_theory.runtime)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmft_theory import runtime

linux_only = pytest.mark.skipif(not runtime.supported(), reason="thread placement needs Linux")


def affinities(tids):
    return {tid: os.sched_getaffinity(tid) for tid in tids}


@linux_only
def test_the_pool_is_found():
    # XLA's CPU client makes one worker per CPU it may use; a missing pool would make pinning
    # a silent no-op, so the name the module looks for is checked against the running client.
    assert len(runtime.xla_worker_threads()) >= 1


@linux_only
def test_each_worker_gets_one_cpu_round_robin_and_is_restored():
    tids = runtime.xla_worker_threads()
    cpus = sorted(os.sched_getaffinity(0))
    before = affinities(tids)
    with runtime.pinned_xla_threads() as previous:
        assert previous == before
        pinned = affinities(tids)
        assert [pinned[t] for t in tids] == [{cpus[i % len(cpus)]} for i in range(len(tids))]
    assert affinities(tids) == before


@linux_only
def test_an_explicit_cpu_list_is_used_in_order():
    tids = runtime.xla_worker_threads()
    cpus = sorted(os.sched_getaffinity(0))
    order = [cpus[-1], cpus[0]]  # reversed where there are two CPUs: the order must be kept
    previous = runtime.pin_xla_threads(order)
    try:
        assert [os.sched_getaffinity(t) for t in tids] == [{order[i % 2]} for i in range(len(tids))]
    finally:
        runtime.restore_affinities(previous)


@linux_only
def test_an_exception_inside_the_block_still_restores():
    tids = runtime.xla_worker_threads()
    before = affinities(tids)
    with pytest.raises(KeyError), runtime.pinned_xla_threads():
        raise KeyError("boom")
    assert affinities(tids) == before


@linux_only
def test_a_failure_half_way_leaves_no_thread_pinned(monkeypatch):
    tids = runtime.xla_worker_threads()
    if len(tids) < 2:
        pytest.skip("needs a pool of two workers (two CPUs)")
    before = affinities(tids)
    real = os.sched_setaffinity
    calls = []

    def fail_on_second(tid, cpus):
        if tid in tids:
            calls.append(tid)
            if len(calls) == 2:
                raise PermissionError("not allowed")
        real(tid, cpus)

    monkeypatch.setattr(os, "sched_setaffinity", fail_on_second)
    # The second worker's failure propagates, and the first worker gets its affinity back.
    with pytest.raises(PermissionError):
        runtime.pin_xla_threads()
    monkeypatch.undo()
    assert affinities(tids) == before


@linux_only
@pytest.mark.parametrize("cpus", [[], [10_000]])
def test_bad_cpus_are_named(cpus):
    with pytest.raises(ValueError, match="cpus"):
        runtime.pin_xla_threads(cpus)


def test_pinning_changes_placement_not_results():
    # Placement only moves threads; XLA's partition of the work is fixed at compile time, so
    # the same executable gives bit-identical results pinned or not.
    x = jax.random.normal(jax.random.key(0), (512, 512))
    f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(axis=0))
    free = np.asarray(f(x))
    with runtime.pinned_xla_threads() as previous:
        if runtime.supported():
            assert previous and all(len(os.sched_getaffinity(t)) == 1 for t in previous)
        pinned = np.asarray(f(x))
    np.testing.assert_array_equal(pinned, free)


def test_restoring_an_ended_thread_is_skipped():
    # A thread id that no longer exists (ids are never this large on Linux: pid_max <= 2**22).
    runtime.restore_affinities({2**30: {0}})


def test_the_cli_pins_before_running_the_subcommand(monkeypatch, capsys):
    from rmft_theory import cli

    log = []
    monkeypatch.setattr(runtime, "pin_xla_threads", lambda: log.append("pin") or {})
    assert cli.main(["--pin-xla-threads", "reproduce", "--list"]) == 0
    out = capsys.readouterr()
    assert log == ["pin"] and "fig_" in out.out
    assert "thread placement unavailable" in out.err  # the stub pinned nothing
    assert cli.main(["reproduce", "--list"]) == 0 and log == ["pin"]
    # bench runs each benchmark in a process of its own, where this process's pinning does
    # not reach: refused with one line rather than silently ignored.
    assert cli.main(["--pin-xla-threads", "bench", "--list"]) == 2
    assert "own" in capsys.readouterr().err and log == ["pin"]


def test_backend_options_are_appended_to_the_callers_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    flags = runtime.xla_flags_with({"a": "1", "b_c": "x"})
    assert flags == (
        "--xla_force_host_platform_device_count=2 --xla_backend_extra_options=a=1,b_c=x"
    )
    assert runtime.xla_flags_with({}, "--keep") == "--keep"
    assert runtime.xla_flags_with({"k": "v"}, "") == "--xla_backend_extra_options=k=v"


def test_host_device_count_is_added_unless_the_caller_set_one(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert runtime.xla_flags_with_host_devices(2) == (
        "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=2"
    )
    assert runtime.xla_flags_with_host_devices(4, "") == "--xla_force_host_platform_device_count=4"
    assert runtime.xla_flags_with_host_devices(1, "--keep") == "--keep"  # one device: as is
    mine = "--xla_force_host_platform_device_count=8"
    assert runtime.xla_flags_with_host_devices(2, mine) == mine  # the caller's count wins
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="devices must be an integer >= 1"):
            runtime.xla_flags_with_host_devices(bad, "")


@pytest.mark.parametrize(
    "options", [{"a,b": "1"}, {"a": "1=2"}, {"": "1"}, {"a": ""}, {"a b": "1"}]
)
def test_bad_backend_options_are_named(options):
    with pytest.raises(ValueError, match="backend_options"):
        runtime.xla_flags_with(options, "")


def test_the_hoisting_option_still_reaches_xla():
    # XLA reads the option from XLA_FLAGS when JAX starts, so a fresh process: with it, the
    # scan's loop is compiled as one function ("xla_cpu_small_call"); without, it is not. A
    # rename inside XLA would make bench_xla_options measure nothing, and fail here instead.
    import subprocess
    import sys

    code = (
        "import jax, jax.numpy as jnp\n"
        "f = lambda x: jax.lax.scan(lambda c, x: (c + x, c), jnp.zeros(64), x)[1]\n"
        "text = jax.jit(f).lower(jnp.ones((200, 64))).compile().as_text()\n"
        "print(text.count('xla_cpu_small_call'))"
    )
    hoist = {"xla_cpu_small_while_loop_byte_threshold": "1000000000"}
    counts = []
    for flags in ("", runtime.xla_flags_with(hoist, "")):
        env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        counts.append(int(done.stdout.strip().splitlines()[-1]))
    assert counts[0] == 0 and counts[1] >= 1


@pytest.mark.parametrize("noise", ["per-step", "actions", "none"])
def test_every_noise_but_per_trajectory_gets_the_option_on_cpu_only(noise):
    assert runtime.compiler_options(noise, backend="cpu") == runtime.NO_YNN_REDUCE
    assert runtime.compiler_options(noise, backend="gpu") == {}
    assert runtime.compiler_options("per-trajectory", backend="cpu") == {}


def test_an_unknown_noise_is_named():
    with pytest.raises(ValueError, match="noise"):
        runtime.compiler_options("per-round", backend="cpu")


def _ynn_reductions(compiled) -> int:
    """YNNPACK fusions that hold a reduce, in a compiled executable's text."""
    text = compiled.as_text()
    called = [
        line.split("calls=%")[1].split(",")[0]
        for line in text.splitlines()
        if '"__ynn_fusion"' in line and "calls=%" in line
    ]
    blocks = {b.split(" ", 1)[0]: b for b in text.split("\n%")}
    return sum(" reduce(" in blocks.get(name, "") for name in called)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="YNNPACK's fusions are XLA:CPU's")
def test_the_per_step_option_still_reaches_xla():
    # The per-step scoring's reductions go to YNNPACK by default and not with the library's
    # option. An XLA that renamed the option or its value would make compiler_options return
    # {} (or compile nothing different) and fail here, not slow the filter silently.
    from rmft_theory.models import lsa_apply, params_from_weights
    from rmft_theory.rollout import Exploration, make_rollout, rollout_scores

    options = runtime.compiler_options("per-step", backend="cpu")
    assert options == runtime.NO_YNN_REDUCE
    params = params_from_weights(0.1 * jnp.eye(4))
    rewards = jax.random.normal(jax.random.key(0), (4, 50, 4))
    exploration = Exploration("per-step", 1.0)

    def run(params, rewards, key):
        return rollout_scores(lsa_apply, params, rewards, key, exploration, 8).regret

    lowered = jax.jit(run).lower(params, rewards, jax.random.key(1))
    assert _ynn_reductions(lowered.compile()) >= 1
    assert _ynn_reductions(lowered.compile(compiler_options=options)) == 0
    # make_rollout compiles with them.
    jitted = make_rollout(lsa_apply, exploration, 8)
    assert _ynn_reductions(jitted.lower(params, rewards, jax.random.key(1)).compile()) == 0
