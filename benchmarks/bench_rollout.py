"""The regret filter's rollout of the single-layer LSA against a NumPy loop and PyTorch.

The work (THEORY §4, one filter rollout): draw M Gaussian tasks of T rounds in d coordinates,
run the model once per task (the L trajectories of a task share its rewards and so its outputs
``g_t``), explore L trajectories per task with per-trajectory noise ``π_t = Proj(g_t + sξ)`` or
per-step noise ``π_t = Proj(g_t + sξ_t)`` on the unit ball, and score every trajectory by its
static regret. Only the (M, L) regrets are returned: the filter recomputes the few kept
trajectories' policies from their keys (:func:`rmft_theory.rollout.rollout_scores`).

Implementations, timed back to back in one process (median over rounds that alternate the
implementations, each running a block of calls after 20 ms of settling calls, so that no
library is timed while another's idle threads spin:
:func:`rmft_theory.benchmarking.time_interleaved`; compile time apart):

* ``jax``: the library (``sample_batch`` + ``rollout_scores``), one jitted call;
* ``numpy``: a plain NumPy loop over t, vectorised over tasks and trajectories, with the
  model's (d+1)-vector state per task (the same shared-``g`` structure);
* ``torch``: the best PyTorch CPU formulation found (optional; skipped with a message when
  PyTorch is missing): vectorised over t (FOL rollouts need no loop over t: the model is a
  prefix sum), the collapsed (T, L) form for per-trajectory noise, chunks of ~1024
  trajectories for per-step noise, and the faster of 1 and all threads (measured in this run;
  with other processes on the cores, one thread is often faster). ``torch.compile`` is tried
  on the headline case in full mode. In the rewards-given headline every PyTorch variant
  (eager, compiled) runs at every thread count and the fastest is the reference.

Floors, measured in the same run: the time to draw the run's random numbers (rewards and
noise, drawn the library's way and summed, so nothing is stored), and the compute/bandwidth
roofline from the measured matmul peak and copy bandwidth
(:func:`rmft_theory.benchmarking.machine_floors`). The FLOP count is that of the direct form:
``5d + 5`` per trajectory-step (``x = g + sξ``, ``‖x‖²``, ``<x, R>``, the projection scale and
the accumulation) plus ``2(d+1)(d+2) + 4d`` per task-step for the model; the bytes are the
rewards read and written once and the regrets written once.

Sections: the grid (M × L × T × d × noise; a subset with ``--quick``); the headline
per-trajectory case with the rewards given (the issue's "model + policy + regret with rewards
given" row, on which its 10× NumPy and 1.5× PyTorch targets are checked), repeated in fresh
processes (:func:`given_spread`: a process's speed on this VM is bimodal); the scaling of time
in T (200 → 2000) and in the number of trajectories B (1024 → 65536), on both cores and again
pinned to one core; and the RNG and chunking choices of the per-step rollout. Writes
``benchmarks/results/rollout.{json,md}``::

    .venv/bin/python benchmarks/bench_rollout.py            # full grid (tens of minutes)
    .venv/bin/python benchmarks/bench_rollout.py --quick    # < 1 minute
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.benchmarking import (
    NEAR_BELOW_NS,
    blocking,
    compile_jax,
    core_latency_ns,
    floors_markdown,
    import_torch,
    load_average,
    machine_floors,
    markdown_table,
    pin_toggling,
    probed,
    probed_rounds,
    roofline_fraction,
    run_child,
    time_interleaved,
    write_results,
)
from rmft_theory.envs import GaussianFOL
from rmft_theory.keys import standard_normal
from rmft_theory.models import lsa_apply, make_model
from rmft_theory.models.lsa import key_vector
from rmft_theory.regret import best_fixed_value
from rmft_theory.rollout import (
    Exploration,
    earned_from_draws,
    rollout_scores,
    task_chunk_size,
    task_draws,
    task_elements,
)
from rmft_theory.runtime import compiler_options, pinned_xla_threads, xla_accepts
from rmft_theory.train import sample_batch

NOISES = ("per-trajectory", "per-step")
SCALE, RADIUS = 1.0, 1.0
HEADLINE = (64, 64, 200, 8)  # M, L, T, d of the Done-when figures (B = 4096 trajectories)
# Seconds of untimed settling calls before each timed block (time_interleaved's settle_s):
# after PyTorch's block its OpenMP threads spin on, and one settling call of a ~1 ms rollout
# did not outlast them (a full run at 9ee0f30, its tables not kept, timed the own-rewards
# headline at 1.05 ms in the grid, interleaved with PyTorch, and the same function at 0.66 ms
# in the scaling table, without PyTorch). Every implementation settles the same way.
SETTLE_S = 0.02


# ----------------------------------------------------------------------------- work counts


def flops(M: int, L: int, T: int, d: int) -> float:
    """Useful FLOPs of one rollout in the direct form (see the module docstring)."""
    E = d + 1
    return M * L * T * (5 * d + 5) + M * T * (2 * E * (E + 1) + 4 * d)


def bytes_moved(M: int, L: int, T: int, d: int) -> float:
    """Fewest bytes: the float32 rewards written and read once, the regrets written once."""
    return 4.0 * (2 * M * T * d + M * L)


def n_random(M: int, L: int, T: int, d: int, noise: str) -> int:
    """Gaussians one rollout draws: the rewards and the exploration noise."""
    return M * T * d + (M * L * d if noise == "per-trajectory" else M * L * T * d)


# ----------------------------------------------------------------------------- JAX


def setup(M: int, T: int, d: int):
    """The LSA parameters (flax init, seed 0) and the environment of one case."""
    env = GaussianFOL(d=d, horizon=T)
    params = make_model("lsa", d).init(jax.random.key(0), jnp.zeros((T, d)))["params"]
    return env, params


def jax_rollout(env, M: int, L: int, noise: str):
    """``(params, key) -> regret (M, L)``: sample tasks and rewards, roll out, score."""
    exploration = Exploration(noise, SCALE, space="ball", radius=RADIUS)

    def run(params, key):
        key_tasks, key_rewards, key_noise = jax.random.split(key, 3)
        rewards = sample_batch(key_tasks, key_rewards, env, M)
        return rollout_scores(lsa_apply, params, rewards, key_noise, exploration, L).regret

    return run


def jax_random_floor(env, M: int, L: int, noise: str):
    """``key -> scalar``: draw the rollout's Gaussians the library's way, chunked, and sum them.

    Rewards by ``sample_batch`` itself (one (T, d) draw per task); the noise as
    ``task_draws`` (one (L, d) or (L, T, d) draw per task) in the chunks of ``rollout_scores``.
    """
    T, d = env.horizon, env.d
    exploration = Exploration(noise, SCALE, space="ball", radius=RADIUS)
    g0 = jnp.zeros((T, d))

    def run(key):
        key_tasks, key_rewards, key_noise = jax.random.split(key, 3)
        total = jnp.sum(sample_batch(key_tasks, key_rewards, env, M))

        def one(key_m):
            return jnp.sum(task_draws(key_m, g0, exploration, L))

        chunk = task_chunk_size(M, task_elements(exploration, L, T, d))
        return total + jnp.sum(jax.lax.map(one, jax.random.split(key_noise, M), batch_size=chunk))

    return run


# ----------------------------------------------------------------------------- NumPy


def numpy_params(params) -> tuple[np.ndarray, np.ndarray]:
    """``(V, k)`` of the LSA as float32 NumPy arrays (``k = Kᵀ Q c``)."""
    return (np.array(params["V"], np.float32), np.array(key_vector(params), np.float32))


def numpy_rollout(V, k, rewards_MxTxD, noise, draw_step=None):
    """Regrets (M, L) by a plain loop over t, vectorised over tasks and trajectories.

    ``noise`` is the per-trajectory (M, L, d) offsets ``sξ``, or None for per-step noise, whose
    (M, L, d) offsets ``draw_step(t)`` returns each round. The model state is the (M, d+1)
    prefix sum ``z``; ``g_t = V z_{t−1}`` is computed once per task and shared by its L
    trajectories.
    """
    M, T, d = rewards_MxTxD.shape
    z = np.zeros((M, d + 1), np.float32)
    earned = None
    e = np.ones((M, d + 1), np.float32)
    for t in range(T):
        R_t = rewards_MxTxD[:, t]
        g = z @ V.T
        x = g[:, None, :] + (noise if noise is not None else draw_step(t))
        sq = np.einsum("mld,mld->ml", x, x)
        scale = np.minimum(1.0, RADIUS / np.sqrt(np.maximum(sq, 1e-30)))
        step = scale * np.einsum("mld,md->ml", x, R_t)
        earned = step if earned is None else earned + step
        e[:, :d] = R_t
        z += e * (e @ k)[:, None]
    best = RADIUS * np.linalg.norm(rewards_MxTxD.sum(axis=1), axis=-1)
    return best[:, None] - earned


def numpy_full(V, k, M: int, L: int, T: int, d: int, noise: str, seed: int = 0):
    """The NumPy reference drawing its own rewards and noise (PCG64, float32)."""
    rng = np.random.default_rng(seed)
    rewards = rng.standard_normal((M, T, d), dtype=np.float32)
    if noise == "per-trajectory":
        xi = SCALE * rng.standard_normal((M, L, d), dtype=np.float32)
        return numpy_rollout(V, k, rewards, xi)

    def draw_step(t):
        return SCALE * rng.standard_normal((M, L, d), dtype=np.float32)

    return numpy_rollout(V, k, rewards, None, draw_step)


# ----------------------------------------------------------------------------- PyTorch


def torch_rollout(torch, V, k, rewards, noise=None, generator=None, L=None):
    """Regrets (M, L), vectorised over t: the best PyTorch CPU formulation found.

    Per-trajectory noise (``noise`` (M, L, d)): the collapsed form, ``‖g + n‖²`` and
    ``<g + n, R>`` from two batched (T, d)×(d, L) products. Per-step noise (``noise`` (M, L, T,
    d) given, or drawn here with ``generator`` in chunks of ~1024 trajectories): one pass of
    in-place ops per chunk.
    """
    M, T, d = rewards.shape
    g = torch_model(torch, V, k, rewards)
    if noise is not None and noise.dim() == 3:
        return torch_collapsed_regrets(torch, g, rewards, noise)
    best = RADIUS * torch.linalg.vector_norm(rewards.sum(dim=1), dim=-1)
    L = noise.shape[1] if noise is not None else L
    chunk = max(1, 1024 // L)
    out = []
    for m0 in range(0, M, chunk):
        m1 = min(M, m0 + chunk)
        if noise is not None:
            xs = noise[m0:m1] + g[m0:m1, None]
        else:
            xs = torch.randn(m1 - m0, L, T, d, generator=generator)
            xs.mul_(SCALE).add_(g[m0:m1, None])
        sq = torch.einsum("mltd,mltd->mlt", xs, xs)
        dot = torch.einsum("mltd,mtd->mlt", xs, rewards[m0:m1])
        scale = torch.clamp(RADIUS * torch.rsqrt(sq), max=1.0)
        out.append(best[m0:m1, None] - (scale * dot).sum(dim=-1))
    return torch.cat(out)


def torch_model(torch, V, k, rewards):
    """The LSA outputs ``g`` (M, T, d): ``V`` times the exclusive prefix sum of ``e_t (e_tᵀk)``."""
    M, T, _ = rewards.shape
    e = torch.cat([rewards, torch.ones(M, T, 1)], dim=-1)
    x = e * (e @ k)[..., None]
    z = torch.cumsum(x, dim=1) - x  # exclusive prefix sum
    return z @ V.T


def torch_collapsed_regrets(torch, g, rewards, noise):
    """Regrets (M, L) for per-trajectory noise (M, L, d) by the collapsed form: ``‖g + n‖²`` and
    ``<g + n, R>`` from two batched (T, d)×(d, L) products."""
    best = RADIUS * torch.linalg.vector_norm(rewards.sum(dim=1), dim=-1)
    gn = torch.bmm(g, noise.transpose(1, 2))  # (M, T, L)
    rn = torch.bmm(rewards, noise.transpose(1, 2))
    sq = (g * g).sum(-1, keepdim=True) + 2 * gn + (noise * noise).sum(-1)[:, None, :]
    dot = (g * rewards).sum(-1, keepdim=True) + rn
    scale = torch.clamp(RADIUS * torch.rsqrt(sq), max=1.0)
    return best[:, None] - (scale * dot).sum(dim=1)


def torch_at_threads(torch, threads: int, fn, *args):
    """A zero-argument call of ``fn(*args)`` that first sets PyTorch to ``threads`` threads."""

    def call():
        torch.set_num_threads(threads)
        return fn(*args)

    return call


def torch_full(torch, V, k, M, L, T, d, noise, generator):
    """The PyTorch reference drawing its own rewards and noise (``torch.randn``)."""
    rewards = torch.randn(M, T, d, generator=generator)
    if noise == "per-trajectory":
        xi = SCALE * torch.randn(M, L, d, generator=generator)
        return torch_rollout(torch, V, k, rewards, xi)
    return torch_rollout(torch, V, k, rewards, None, generator, L)


def pick_torch_threads(torch, V, k, case, repeats: int) -> tuple[int, dict]:
    """The faster of 1 and ``os.cpu_count()`` intra-op threads on ``case`` (per-step noise)."""
    import os

    M, L, T, d = case
    gen = torch.Generator().manual_seed(0)
    options = sorted({1, os.cpu_count() or 1})
    times = {}
    for n in options:
        torch.set_num_threads(n)
        times[n] = time_interleaved(
            {"t": lambda: torch_full(torch, V, k, M, L, T, d, "per-step", gen)}, repeats
        )["t"]["median_s"]
    best = min(times, key=times.get)
    torch.set_num_threads(best)
    return best, {str(n): t for n, t in times.items()}


# ----------------------------------------------------------------------------- checks


def check_references(torch) -> float:
    """Max |regret difference| of NumPy and PyTorch against JAX on the same draws (small case)."""
    M, L, T, d = 3, 5, 17, 4
    _, params = setup(M, T, d)
    g0 = jnp.zeros((T, d))
    V, k = numpy_params(params)
    key = jax.random.key(11)
    rewards = jax.random.normal(key, (M, T, d))
    worst = 0.0
    for noise in NOISES:
        e = Exploration(noise, SCALE, space="ball", radius=RADIUS)
        ours = np.asarray(rollout_scores(lsa_apply, params, rewards, key, e, L).regret)
        xi = jax.vmap(lambda km, e=e: task_draws(km, g0, e, L))(jax.random.split(key, M))
        xi = np.array(xi)  # s·ξ, as the rollout adds it (a writable copy for torch)
        R = np.array(rewards)
        if noise == "per-trajectory":
            ref = numpy_rollout(V, k, R, xi)
        else:
            ref = numpy_rollout(V, k, R, None, lambda t, xi=xi: xi[:, :, t])
        worst = max(worst, float(np.abs(ref - ours).max()))
        if torch is not None:
            tr = torch_rollout(
                torch,
                torch.from_numpy(V),
                torch.from_numpy(k),
                torch.from_numpy(R),
                torch.from_numpy(xi),
            ).numpy()
            worst = max(worst, float(np.abs(tr - ours).max()))
    return worst


# ----------------------------------------------------------------------------- one case


def bench_case(case, noise, floors, torch, repeats, loop_repeats, compiled_torch=False) -> dict:
    """All implementations and floors of one (M, L, T, d, noise), timed back to back."""
    M, L, T, d = case
    env, params = setup(M, T, d)
    key = jax.random.key(1)
    options = compiler_options(noise)  # as the library compiles it
    run, compile_s = compile_jax(
        jax_rollout(env, M, L, noise), params, key, compiler_options=options
    )
    rng_floor, _ = compile_jax(jax_random_floor(env, M, L, noise), key, compiler_options=options)
    calls = {"jax": blocking(run, params, key), "jax_random": blocking(rng_floor, key)}
    V, k = numpy_params(params)
    calls["numpy"] = lambda: numpy_full(V, k, M, L, T, d, noise)
    if torch is not None:
        Vt, kt = torch.from_numpy(V), torch.from_numpy(k)
        gen = torch.Generator().manual_seed(0)
        calls["torch"] = lambda: torch_full(torch, Vt, kt, M, L, T, d, noise, gen)
        buf = torch.empty(min(n_random(M, L, T, d, noise), 2**24))

        def torch_random():  # the same count as the rollout draws, in bounded chunks
            left = n_random(M, L, T, d, noise)
            while left > 0:
                torch.randn(
                    min(left, buf.numel()), generator=gen, out=buf[: min(left, buf.numel())]
                )
                left -= buf.numel()

        calls["torch_random"] = torch_random
        if compiled_torch:
            try:
                fn = torch.compile(torch_full, dynamic=False)
                t0 = time.perf_counter()
                fn(torch, Vt, kt, M, L, T, d, noise, gen)
                compile_torch_s = time.perf_counter() - t0
                calls["torch_compile"] = lambda: fn(torch, Vt, kt, M, L, T, d, noise, gen)
            except Exception as exc:
                print(f"torch.compile failed, skipped: {exc!r:.200}", file=sys.stderr)
                compiled_torch = False
    slow = {"numpy"}  # the loop is slow: fewer repeats
    fast_calls = {n: c for n, c in calls.items() if n not in slow}
    # Blocks of 3 after SETTLE_S of settling calls (time_interleaved): the libraries' idle
    # threads would otherwise slow each other; half the rounds keep the run's length down.
    t = time_interleaved(fast_calls, max(2, repeats // 2), block=3, settle_s=SETTLE_S)
    t.update(time_interleaved({n: calls[n] for n in slow}, loop_repeats))
    steps = M * L * T
    row = {
        "M": M,
        "L": L,
        "T": T,
        "d": d,
        "noise": noise,
        "B": M * L,
        "jax_compile_s": compile_s,
        "times_s": {n: v["median_s"] for n, v in t.items()},
        "runs_s": {n: v["runs_s"] for n, v in t.items()},
        "jax_steps_per_s": steps / t["jax"]["median_s"],
        "numpy_steps_per_s": steps / t["numpy"]["median_s"],
        "vs_numpy": t["numpy"]["median_s"] / t["jax"]["median_s"],
        "random_numbers": n_random(M, L, T, d, noise),
        "jax_over_random_floor": t["jax"]["median_s"] / t["jax_random"]["median_s"],
        "roofline_fraction": roofline_fraction(
            flops(M, L, T, d),
            bytes_moved(M, L, T, d),
            t["jax"]["median_s"],
            floors["peak_gflops"],
            floors["bandwidth_gbs"],
        ),
        "gflops_per_s": flops(M, L, T, d) / t["jax"]["median_s"] / 1e9,
        "jax_cores": t["jax"]["cores"],
    }
    if torch is not None:
        torch_best = min(t[n]["median_s"] for n in ("torch", "torch_compile") if n in t)
        row.update(
            torch_steps_per_s=steps / torch_best,
            vs_torch=torch_best / t["jax"]["median_s"],
            torch_over_random_floor=t["torch"]["median_s"] / t["torch_random"]["median_s"],
        )
        if compiled_torch:
            row["torch_compile_s"] = compile_torch_s
    return row


# ----------------------------------------------------------------------------- rewards given


class GivenCalls(NamedTuple):
    """What :func:`given_calls` builds."""

    calls: dict  # name -> zero-argument timed call (JAX variants, PyTorch variants)
    slow: dict  # the NumPy loop, timed apart with fewer repeats
    row: dict  # the case's metadata and compile times
    torch_threads: int | None  # PyTorch's thread count to restore afterwards; None without it


def given_run(case) -> tuple[Callable, tuple]:
    """The rewards-given headline's JAX function ``(params, rewards, key) -> regret (M, L)``
    (per-trajectory noise) and its arguments: the LSA at flax's seed-0 init, rewards drawn
    from ``key(5)``, the noise key ``key(6)``."""
    M, L, T, d = case
    _, params = setup(M, T, d)
    exploration = Exploration("per-trajectory", SCALE, space="ball", radius=RADIUS)
    rewards = jax.random.normal(jax.random.key(5), (M, T, d))

    def run(params, rewards, key):
        return rollout_scores(lsa_apply, params, rewards, key, exploration, L).regret

    return run, (params, rewards, jax.random.key(6))


def given_calls(
    case, torch, compiled_torch: bool, jax_options: dict[str, dict] | None = None
) -> GivenCalls:
    """The rewards-given headline as zero-argument calls, for :func:`bench_given` and
    :func:`bench_placement`.

    Returns the timed calls (one JAX executable per ``jax_options`` entry, name to XLA
    ``compiler_options``, default ``{"jax": {}}``; PyTorch eager and, with
    ``compiled_torch``, ``torch.compile``-d, each at 1 and at all intra-op threads), the NumPy
    loop apart (it is timed with fewer repeats), the row's metadata (with the first JAX
    executable's compile time), and PyTorch's thread count to restore afterwards (None
    without PyTorch).
    """
    M, L, T, d = case
    noise = "per-trajectory"
    run, (params, rewards, key) = given_run(case)
    row = {"M": M, "L": L, "T": T, "d": d, "noise": noise, "rewards": "given"}
    calls = {}
    for name, options in (jax_options or {"jax": {}}).items():
        fn, compile_s = compile_jax(run, params, rewards, key, compiler_options=options)
        row.setdefault("jax_compile_s", compile_s)
        calls[name] = blocking(fn, params, rewards, key)
    V, k = numpy_params(params)
    R = np.array(rewards)
    rng = np.random.default_rng(0)
    slow = {
        "numpy": lambda: numpy_rollout(
            V, k, R, SCALE * rng.standard_normal((M, L, d), dtype=np.float32)
        )
    }
    threads_before = None
    if torch is not None:
        Vt, kt, Rt = torch.from_numpy(V), torch.from_numpy(k), torch.from_numpy(R)
        gen = torch.Generator().manual_seed(0)
        threads_before = torch.get_num_threads()

        def torch_given(Vt, kt, Rt):
            return torch_rollout(torch, Vt, kt, Rt, SCALE * torch.randn(M, L, d, generator=gen))

        impls = {"torch": torch_given}
        if compiled_torch:
            try:
                compiled = torch.compile(torch_given, dynamic=False)
                t0 = time.perf_counter()
                compiled(Vt, kt, Rt)
                row["torch_compile_s"] = time.perf_counter() - t0
                impls["torch_compile"] = compiled
            except Exception as exc:
                print(f"torch.compile failed, skipped: {exc!r:.200}", file=sys.stderr)

        # PyTorch at every thread count tried (its best is the reference): the set_num_threads
        # inside the call costs nothing measurable next to a 0.5 ms rollout.
        for name, fn in impls.items():
            for n in sorted({1, os.cpu_count() or 1}):
                calls[f"{name}@{n}"] = torch_at_threads(torch, n, fn, Vt, kt, Rt)
    return GivenCalls(calls, slow, row, threads_before)


def bench_given(case, floors, torch, repeats, loop_repeats, compiled_torch) -> dict:
    """The per-trajectory rollout with the rewards given (drawn before timing), back to back.

    The issue's "model + policy + regret with rewards given" measurement: each implementation
    receives the (M, T, d) rewards in its own array type and draws only its (M, L, d)
    per-trajectory noise; everything else is as in :func:`bench_case`.
    """
    M, L, T, d = case
    calls, slow, row, threads_before = given_calls(case, torch, compiled_torch)
    calls = {"jax": calls["jax"], "jax_pinned": calls["jax"], **calls}
    calls, unpin = pin_toggling(calls, {"jax_pinned"})
    try:
        t = time_interleaved(calls, repeats, block=5, settle_s=SETTLE_S)
    finally:
        unpin()
        if threads_before is not None:
            torch.set_num_threads(threads_before)
    t.update(time_interleaved(slow, loop_repeats))
    steps = M * L * T
    row.update(
        times_s={n: v["median_s"] for n, v in t.items()},
        jax_steps_per_s=steps / t["jax"]["median_s"],
        jax_pinned_steps_per_s=steps / t["jax_pinned"]["median_s"],
        numpy_steps_per_s=steps / t["numpy"]["median_s"],
        vs_numpy=t["numpy"]["median_s"] / t["jax"]["median_s"],
        jax_cores=t["jax"]["cores"],
        jax_switches_per_call=t["jax"]["switches_per_call"],
        roofline_fraction=roofline_fraction(
            flops(M, L, T, d),
            bytes_moved(M, L, T, d),
            t["jax"]["median_s"],
            floors["peak_gflops"],
            floors["bandwidth_gbs"],
        ),
    )
    if torch is not None:
        torch_name = min((n for n in t if n.startswith("torch")), key=lambda n: t[n]["median_s"])
        torch_best = t[torch_name]["median_s"]
        row.update(
            torch_steps_per_s=steps / torch_best,
            vs_torch=torch_best / t["jax"]["median_s"],
            vs_torch_pinned=torch_best / t["jax_pinned"]["median_s"],
            torch_best=torch_name,
            torch_cores=t[torch_name]["cores"],
        )
    return row


# XLA's own fusion emitters instead of YNNPACK's for the rollout's elementwise and small-dot
# work (XLA's experimental option; an empty list turns the YNN fusions off).
NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}


def no_ynn_supported() -> bool:
    """Whether this XLA accepts :data:`NO_YNN` (an experimental option may go away)."""
    ((option, value),) = NO_YNN.items()
    return xla_accepts(option, value)


def bench_placement(case, torch, seconds: float, block: int = 20) -> dict | str:
    """The rewards-given headline in short rounds, each between two core-latency probes.

    On the 2-core benchmark VM the hypervisor moves the two vCPUs between hosts' cores that
    share a cache and cores that do not, every second or so to minutes
    (:func:`rmft_theory.benchmarking.core_latency_ns`: a round trip of about 80 against
    280-430 ns), and every two-thread implementation's speed moves with it. Each round probes
    the latency, times ``block`` calls of every implementation back to back, each block after
    :data:`SETTLE_S` of settling calls (:func:`rmft_theory.benchmarking.time_interleaved`),
    and probes again; a round counts for a
    placement only when both probes agree (:func:`rmft_theory.benchmarking.placement`). Rounds
    run until ``seconds`` have passed. The JAX rollout is timed twice: as compiled by default
    (``jax``, with YNNPACK fusions) and with XLA's own fusion emitters (``jax_no_ynn``,
    :data:`NO_YNN`), each also with XLA's worker threads pinned one per CPU (``*_pinned``,
    :func:`rmft_theory.benchmarking.pin_toggling`). Returns the rounds and, per placement,
    the median over rounds of every implementation's time and of the per-round ratio of the
    best PyTorch variant to each JAX executable; or why it was skipped.
    """
    if core_latency_ns() is None:
        return "skipped: the core-latency probe needs Linux, two CPUs and a C compiler"
    variants = {"jax": {}}
    if no_ynn_supported():
        variants["jax_no_ynn"] = NO_YNN
    else:
        print("this XLA lacks the YNNPACK option: jax_no_ynn skipped", file=sys.stderr)
    calls, _, _, threads_before = given_calls(case, torch, torch is not None, variants)
    for name in [n for n in calls if n.startswith("jax")]:
        calls[f"{name}_pinned"] = calls[name]
    calls, unpin = pin_toggling(calls, {n for n in calls if n.endswith("_pinned")})
    jax_names = [n for n in calls if n.startswith("jax")]
    torch_names = [n for n in calls if n.startswith("torch")]
    try:
        rounds = probed_rounds(calls, seconds, block, settle_s=SETTLE_S)
    finally:
        unpin()
        if threads_before is not None:
            torch.set_num_threads(threads_before)
    return {
        "block": block,
        "seconds": seconds,
        "rounds": rounds,
        "summary": placement_summary(rounds, jax_names, torch_names),
    }


def placement_summary(rounds: list[dict], jax_names: list[str], torch_names: list[str]) -> dict:
    """Per placement: the number of rounds, the median over rounds of each implementation's
    time (ms), and the median over rounds of the best PyTorch time over each JAX time
    (``vs_torch`` for ``jax``, ``vs_torch_<name>`` for the others)."""
    out = {}
    for where in ("near", "far", "mixed", "unknown"):
        sel = [r["ms"] for r in rounds if r["placement"] == where]
        if not sel:
            continue
        row: dict = {"placement": where, "rounds": len(sel)}
        for name in jax_names + torch_names:
            row[f"{name}_ms"] = float(np.median([ms[name] for ms in sel]))
        if torch_names:
            best = [min(ms[n] for n in torch_names) for ms in sel]
            row["torch_best_ms"] = float(np.median(best))
            for name in jax_names:
                key = "vs_torch" if name == "jax" else f"vs_torch_{name}"
                row[key] = float(np.median([b / ms[name] for b, ms in zip(best, sel)]))
        out[where] = row
    return out


def placement_markdown(study: dict | str) -> list[str]:
    """Markdown lines for :func:`bench_placement`: one row per placement."""
    if isinstance(study, str):
        return [f"Placement study {study}."]
    rows = list(study["summary"].values())
    cols = ["placement", "rounds"] + [
        k for k in (rows[0] if rows else {}) if k.endswith("_ms") or k.startswith("vs_torch")
    ]
    return [
        f"The same headline in {len(study['rounds'])} rounds of {study['block']} calls per "
        f"implementation (each block after {1e3 * SETTLE_S:g} ms of settling calls) over "
        f"{study['seconds']:g} s, each round between two core-latency "
        "probes (:func:`bench_placement`; `near`: both round trips under "
        f"{NEAR_BELOW_NS:.0f} ns, `far`: both over, `mixed`: the placement changed within the "
        "round). `jax_no_ynn`: the same rollout compiled with XLA's own fusion emitters "
        "instead of YNNPACK's; `*_pinned`: with XLA's worker threads pinned one per CPU "
        "(:func:`rmft_theory.runtime.pin_xla_threads`). Times are medians over rounds; "
        "`vs_torch*`: the median over rounds of the best PyTorch variant's time over JAX's.",
        "",
        markdown_table(rows, cols),
    ]


# ----------------------------------------------------------------------------- stages

STAGES = ("model", "draws", "score", "full")


def jax_stages(case) -> dict:
    """The rewards-given headline's stages as zero-argument blocking calls, the library's way.

    ``model``: the LSA outputs of every task; ``draws``: every task's (L, d) noise from its key
    (:func:`rmft_theory.rollout.task_draws`); ``score``: the collapsed regrets from given
    outputs and noise (:func:`rmft_theory.rollout.earned_from_draws`); ``full``: the whole
    :func:`rmft_theory.rollout.rollout_scores` call, whose parts these are (one chunk of tasks
    at the headline size, so the stages are the same computations vmapped over tasks).
    """
    M, L, T, d = case
    _, params = setup(M, T, d)
    exploration = Exploration("per-trajectory", SCALE, space="ball", radius=RADIUS)
    rewards = jax.random.normal(jax.random.key(5), (M, T, d))
    key = jax.random.key(6)

    def model(params, rewards):
        return jax.vmap(lsa_apply, in_axes=(None, 0))(params, rewards)

    def draws(g, key):
        keys = jax.random.split(key, M)
        return jax.vmap(lambda k, g_m: task_draws(k, g_m, exploration, L))(keys, g)

    def score(g, rewards, noise):
        def one(g_m, r_m, n_m):
            best = best_fixed_value(r_m.sum(0), exploration.space, exploration.radius)
            return best - earned_from_draws(g_m, r_m, n_m, exploration)

        return jax.vmap(one)(g, rewards, noise)

    def full(params, rewards, key):
        return rollout_scores(lsa_apply, params, rewards, key, exploration, L).regret

    g = jax.jit(model)(params, rewards)
    noise = jax.jit(draws)(g, key)
    args = {
        "model": (params, rewards),
        "draws": (g, key),
        "score": (g, rewards, noise),
        "full": (params, rewards, key),
    }
    fns = {"model": model, "draws": draws, "score": score, "full": full}
    return {s: blocking(compile_jax(fns[s], *args[s])[0], *args[s]) for s in STAGES}


def torch_stages(torch, case, threads: int, compiled: bool) -> dict:
    """The same stages in PyTorch (:func:`torch_model`, ``torch.randn``,
    :func:`torch_collapsed_regrets`), eager or ``torch.compile``-d, at ``threads`` threads."""
    M, L, T, d = case
    _, params = setup(M, T, d)
    V, k = (torch.from_numpy(a) for a in numpy_params(params))
    R = torch.from_numpy(np.array(jax.random.normal(jax.random.key(5), (M, T, d))))
    gen = torch.Generator().manual_seed(0)

    def model(R):
        return torch_model(torch, V, k, R)

    def draws():
        return SCALE * torch.randn(M, L, d, generator=gen)

    def score(g, R, noise):
        return torch_collapsed_regrets(torch, g, R, noise)

    def full(R):
        return score(model(R), R, draws())

    if compiled:
        model, score, full = (torch.compile(f, dynamic=False) for f in (model, score, full))
    g, noise = model(R), draws()
    args = {"model": (R,), "draws": (), "score": (g, R, noise), "full": (R,)}
    fns = {"model": model, "draws": draws, "score": score, "full": full}

    return {s: torch_at_threads(torch, threads, fns[s], *args[s]) for s in STAGES}


def bench_given_stages(case, torch, repeats: int, torch_best: str | None = None) -> list[dict]:
    """Each stage of the rewards-given headline in JAX and in PyTorch, back to back (blocks of 5).

    PyTorch runs as the variant ``torch_best`` names (``"torch_compile@2"``: compiled, two
    threads; from :func:`bench_given`), eager at all threads if None. Returns one row per stage
    with times, ``vs_torch`` (PyTorch time over JAX time) and each side's ``cores`` and
    ``switches_per_call`` (:func:`rmft_theory.benchmarking.time_interleaved`).
    """
    calls = {f"jax_{s}": c for s, c in jax_stages(case).items()}
    if torch is not None:
        variant, _, n = (torch_best or f"torch@{os.cpu_count() or 1}").partition("@")
        threads_before = torch.get_num_threads()
        stages = torch_stages(torch, case, int(n or 1), compiled=variant == "torch_compile")
        calls.update({f"torch_{s}": c for s, c in stages.items()})
    try:
        t = time_interleaved(calls, repeats, block=5, settle_s=SETTLE_S)
    finally:
        if torch is not None:
            torch.set_num_threads(threads_before)
    rows = []
    for s in STAGES:
        j = t[f"jax_{s}"]
        row = {
            "stage": s,
            "jax_ms": 1e3 * j["median_s"],
            "jax_cores": j["cores"],
            "jax_switches_per_call": j["switches_per_call"],
        }
        if torch is not None:
            o = t[f"torch_{s}"]
            row.update(
                torch_ms=1e3 * o["median_s"],
                torch_cores=o["cores"],
                vs_torch=o["median_s"] / j["median_s"],
                torch_variant=torch_best or "torch",
            )
        rows.append(row)
    return rows


def stages_one_core(repeats: int) -> list[dict] | str:
    """JAX's stages (:func:`bench_given_stages`) in a child process pinned to one core."""
    return one_core_child(f"bench_given_stages({HEADLINE}, None, {repeats})")


def stages_markdown(stages: list[dict], one_core) -> list[str]:
    """The stage table: both libraries on all cores, and JAX pinned to one core beside them."""
    one = {r["stage"]: r["jax_ms"] for r in one_core} if isinstance(one_core, list) else {}
    rows = [{**r, "jax_one_core_ms": one.get(r["stage"])} for r in stages]
    cols = (
        "stage jax_ms jax_cores jax_switches_per_call jax_one_core_ms torch_ms torch_cores "
        "vs_torch torch_variant"
    ).split()
    note = "" if one else f" (one-core run: {one_core})"
    parts = {r["stage"]: r for r in stages}
    sums = []
    for side in ("jax", "torch"):
        if f"{side}_ms" in parts["full"]:
            total = sum(parts[s][f"{side}_ms"] for s in STAGES if s != "full")
            sums.append(f"{side} {total:.3g} ms against {parts['full'][f'{side}_ms']:.3g} ms")
    return [
        "The headline's stages, each timed alone (:func:`bench_given_stages`; `cores`: process "
        "CPU time over wall time, spin-waiting included; `switches_per_call`: voluntary context "
        "switches, how often a thread slept waiting for work; `jax_one_core_ms`: the same JAX "
        f"stage in a child process pinned to one core){note}:",
        "",
        markdown_table(rows, cols),
        "",
        "Sum of the stages timed alone against the full call: " + "; ".join(sums) + ".",
    ]


# ----------------------------------------------------------------------------- RNG choices


def _per_step_scores(draw, chunk_tasks):
    """The per-step rollout of :func:`jax_rollout` with another noise draw and chunk size."""

    def run(params, rewards, key):
        M, T, d = rewards.shape

        def one(xs):
            key_m, R = xs
            g = lsa_apply(params, R)
            x = g[None] + SCALE * draw(key_m, (L_CHOICES, T, d))
            sq = jnp.sum(x * x, -1)
            dot = jnp.sum(x * R[None], -1)
            scale = jnp.minimum(1.0, RADIUS * jax.lax.rsqrt(jnp.maximum(sq, 1e-30)))
            return RADIUS * jnp.linalg.norm(R.sum(0)) - jnp.sum(scale * dot, -1)

        return jax.lax.map(one, (jax.random.split(key, M), rewards), batch_size=chunk_tasks)

    return run


L_CHOICES = 64
#: The library's draw (:func:`rmft_theory.keys.standard_normal`: threefry2x32 with sequential
#: counters, the hash unrolled), against JAX's own threefry2x32 in either layout and the other
#: PRNGs.
LIBRARY_DRAW = "keys.standard_normal"


def _draw(impl: str):
    """A (key, shape) -> N(0, 1) draw with the noise key converted to ``impl``."""

    def draw(key, shape):
        if impl == LIBRARY_DRAW:
            return standard_normal(key, shape)
        if impl == "threefry2x32/partitionable":
            return jax.random.normal(key, shape)
        if impl == "threefry2x32/sequential":
            with jax.threefry_partitionable(False):
                return jax.random.normal(key, shape)
        words = {"threefry4x32": 4, "philox4x32": 2, "rbg": 4, "unsafe_rbg": 4}[impl]
        new = jax.random.wrap_key_data(jax.random.bits(key, (words,), jnp.uint32), impl=impl)
        return jax.random.normal(new, shape)

    return draw


def bench_choices(M: int, T: int, d: int, repeats: int) -> list[dict]:
    """Per-step rollout time for each noise RNG (chunk 1024) and each chunk size (threefry)."""
    L = L_CHOICES
    _, params = setup(M, T, d)
    rewards = jax.random.normal(jax.random.key(3), (M, T, d))
    key = jax.random.key(4)
    impls = [
        LIBRARY_DRAW,
        "threefry2x32/sequential",
        "threefry2x32/partitionable",
        "threefry4x32",
        "philox4x32",
        "rbg",
        "unsafe_rbg",
    ]
    variants = {f"rng {i}, chunk 1024": (_draw(i), max(1, 1024 // L)) for i in impls}
    for traj in (256, 4096, M * L):
        if traj != 1024 and traj <= M * L:
            variants[f"rng {LIBRARY_DRAW}, chunk {traj}"] = (
                _draw(LIBRARY_DRAW),
                max(1, traj // L),
            )
    calls = {}
    options = compiler_options("per-step")
    for name, (draw, chunk) in variants.items():
        fn, _ = compile_jax(
            _per_step_scores(draw, chunk), params, rewards, key, compiler_options=options
        )
        calls[name] = blocking(fn, params, rewards, key)
    t = time_interleaved(calls, repeats)
    steps = M * L * T
    return [
        {
            "variant": n,
            "M": M,
            "L": L,
            "T": T,
            "d": d,
            "time_ms": 1e3 * v["median_s"],
            "steps_per_s": steps / v["median_s"],
        }
        for n, v in t.items()
    ]


# ----------------------------------------------------------------------------- driver


def grid(quick: bool) -> list[tuple]:
    """(M, L, T, d) cases: the full grid, or the headline and the smallest case."""
    if quick:
        return [HEADLINE, (16, 16, 50, 2)]
    return list(itertools.product((16, 64, 256), (16, 64), (50, 200, 2000), (2, 8, 32)))


def scaling_cases(quick: bool) -> dict[str, list[tuple]]:
    """Cases for the linearity checks: T from 200 to 2000 at B = 4096; B up to 65536."""
    if quick:
        return {
            "T": [(64, 64, 200, 8), (64, 64, 400, 8), (64, 64, 800, 8)],
            "B": [(64, 64, 200, 8), (256, 64, 200, 8)],
        }
    return {
        "T": [(64, 64, 200, 8), (64, 64, 500, 8), (64, 64, 1000, 8), (64, 64, 2000, 8)],
        "B": [(64, 64, 200, 8), (256, 64, 200, 8), (1024, 64, 200, 8), (16, 64, 200, 8)],
    }


def bench_scaling(cases, repeats) -> list[dict]:
    """JAX rollout time per case and noise, timed back to back."""
    rows = []
    for noise in NOISES:
        calls, meta = {}, {}
        for case in cases:
            M, L, T, d = case
            env, params = setup(M, T, d)
            key = jax.random.key(1)
            options = compiler_options(noise)
            fn, _ = compile_jax(
                jax_rollout(env, M, L, noise), params, key, compiler_options=options
            )
            calls[case] = blocking(fn, params, key)
            meta[case] = M * L * T
        t = time_interleaved(calls, repeats)
        base = None
        for case in cases:
            rate = meta[case] / t[case]["median_s"]
            base = base or rate
            rows.append(
                {
                    "M": case[0],
                    "L": case[1],
                    "T": case[2],
                    "d": case[3],
                    "B": case[0] * case[1],
                    "noise": noise,
                    "time_ms": 1e3 * t[case]["median_s"],
                    "steps_per_s": rate,
                    "rate_vs_first": rate / base,
                    "cores": t[case]["cores"],
                }
            )
    return rows


def scaling_rows(quick: bool, repeats: int) -> list[dict]:
    """The scaling section: :func:`bench_scaling` on each axis of :func:`scaling_cases`."""
    return [
        {"axis": axis, **r}
        for axis, cases in scaling_cases(quick).items()
        for r in bench_scaling(cases, repeats)
    ]


def marginal_costs(table: list[dict]) -> list[dict]:
    """Per axis and noise: ``time = a + b·n`` in the work ``n = M·L·T``, from the headline size
    up (B ≥ 4096, as in the linearity check).

    ``fixed_ms`` and ``marginal_ns_per_step`` are the least-squares ``a`` and ``b``;
    ``increment_over_overall`` is each step between successive sizes, ``Δtime/Δn``, over the
    slope from the first to the last size. Linear growth (constant marginal cost) puts every
    increment at 1; a cost that does not grow with the work (the per-trajectory noise draw is
    O(M·L·d), independent of T; the dispatch) shows in ``a``, not in the increments, so the
    rate ``n/time`` can rise with T while the time still grows linearly.
    """
    out = []
    groups: dict[tuple, list] = {}
    for r in table:
        if r["B"] >= 4096:
            groups.setdefault((r["axis"], r["noise"]), []).append(r)
    for (axis, noise), rows in groups.items():
        if len(rows) < 2:
            continue
        rows = sorted(rows, key=lambda r: r["M"] * r["L"] * r["T"])
        n = np.array([r["M"] * r["L"] * r["T"] for r in rows], float)
        t = np.array([r["time_ms"] for r in rows], float)
        b, a = np.polyfit(n, t, 1)
        overall = (t[-1] - t[0]) / (n[-1] - n[0])
        steps = np.diff(t) / np.diff(n) / overall
        out.append(
            {
                "axis": axis,
                "noise": noise,
                "sizes": len(rows),
                "fixed_ms": float(a),
                "fixed_share_first": float(a / t[0]),
                "marginal_ns_per_step": float(1e6 * b),
                "increment_over_overall": [round(float(x), 3) for x in steps],
            }
        )
    return out


def scaling_markdown(table: list[dict]) -> list[str]:
    """A scaling table and its :func:`marginal_costs` beneath it."""
    cols = "axis noise M L T B time_ms steps_per_s rate_vs_first cores".split()
    marginal = [
        {**m, "increment_over_overall": " ".join(map(str, m["increment_over_overall"]))}
        for m in marginal_costs(table)
    ]
    return [
        markdown_table(table, cols),
        "",
        "Fitted `time = fixed + marginal · M·L·T` from B = 4096 up (:func:`marginal_costs`; "
        "`fixed_share_first`: the fixed part of the first size's time; "
        "`increment_over_overall`: each step's Δtime/Δwork over the first-to-last slope, "
        "all 1 for linear growth):",
        "",
        markdown_table(
            marginal,
            "axis noise sizes fixed_ms fixed_share_first marginal_ns_per_step "
            "increment_over_overall".split(),
        ),
    ]


def scaling_one_core(quick: bool, repeats: int) -> list[dict] | str:
    """:func:`scaling_rows` in a child process pinned to one core, or why it could not run.

    On two cores XLA splits large elementwise loops (the reward and noise draws) over both
    threads but leaves small ones on one, so the rate grows with B for reasons of parallelism,
    not of the algorithm; pinned to one core the scaling is the algorithm's alone.
    """
    return one_core_child(f"scaling_rows({quick}, {repeats})")


def one_core_child(call: str) -> list[dict] | str:
    """``bench_rollout.<call>`` in a child process pinned to one core (:func:`in_child`): its
    JSON rows, or why it was skipped or failed."""
    if not hasattr(os, "sched_setaffinity"):
        return "skipped: os.sched_setaffinity is not available on this platform"
    ok, out = in_child(call, one_core=True)
    return out if ok else f"failed: {out}"


def in_child(call: str, *argv: str, one_core: bool = False) -> tuple[bool, object]:
    """Evaluate ``bench_rollout.<call>`` in a fresh Python process (``sys.argv[1:]`` there is
    ``argv``; pinned to one core with ``one_core``): ``(True, its JSON result)`` or
    ``(False, why it failed)`` (:func:`rmft_theory.benchmarking.run_child`)."""
    pin = "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " if one_core else ""
    code = (
        f"import json, os, sys; {pin}"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_rollout as b; "
        f"print(json.dumps(b.{call}))"
    )
    return run_child([sys.executable, "-c", code, *argv])


def given_child(floors: dict, repeats: int, loop_repeats: int, with_torch: bool = True) -> dict:
    """:func:`bench_given` in this process, with PyTorch if present and ``with_torch`` (run by
    :func:`given_spread`)."""
    torch = import_torch() if with_torch else None
    row, probes = probed(
        lambda: bench_given(HEADLINE, floors, torch, repeats, loop_repeats, torch is not None)
    )
    row.update(probes)
    keys = (
        "jax_steps_per_s",
        "vs_numpy",
        "vs_torch",
        "jax_pinned_steps_per_s",
        "vs_torch_pinned",
        "torch_best",
        "jax_cores",
        "jax_switches_per_call",
        "times_s",
        "core_before_ns",
        "core_after_ns",
        "placement",
    )
    return {k: row[k] for k in keys if k in row}


# The quantities :func:`given_spread` takes medians and ranges of over its processes.
SPREAD_MEDIANS = (
    "jax_steps_per_s",
    "jax_pinned_steps_per_s",
    "vs_numpy",
    "vs_torch",
    "vs_torch_pinned",
)


def given_spread(
    floors: dict, processes: int, repeats: int, loop_repeats: int, with_torch: bool = True
) -> dict:
    """The rewards-given headline again in ``processes`` fresh child processes, one at a time
    (without PyTorch when ``with_torch`` is false: JAX and the NumPy loop only), each between
    two core-latency probes (``core_before_ns``, ``core_after_ns``, ``placement``).

    On the 2-core benchmark VM JAX's speed is bimodal: the same compiled rollout ran at about
    0.46 ms and at 0.69-1.08 ms, in proportions that changed from one batch of processes to the
    next, and a process can switch within a run. Two causes were measured. (1) Where the
    hypervisor puts the two vCPUs: a cache line's round trip between them
    (:func:`core_latency_ns`) switched between about 80 ns and 280-430 ns every second or so to
    minutes, and in a probe of 40 rounds in one JAX-only process calling the rollout back to
    back (so that cause 2 did not arise), each round bracketed by two probes, every round with
    both probes near 80 ns ran fast (0.46 ms) and every one with both far ran slow (0.68-0.88
    ms): XLA hands data between its two threads many times per call, and without a shared cache
    each hand-over costs about 4× more. (2) Where Linux puts XLA's two worker threads: after a
    pause or after PyTorch ran, they shared one CPU for the next 20-60 calls (0.72-0.83 ms with
    the vCPUs sharing a cache, in probes), unless pinned one per CPU (``jax_pinned``,
    :mod:`rmft_theory.runtime`; 0.46-0.49 ms). PyTorch's two-thread times move with the
    placement too. Earlier passes ruled out other explanations by measurement: wake-ups per
    call, steal time, ``OMP_WAIT_POLICY=PASSIVE``, malloc arenas, recompiling; thread priority
    (probes this pass) changed nothing either.
    :func:`bench_placement` times JAX and PyTorch under each placement; this spread shows what
    one whole process sees.
    """
    call = f"given_child(json.loads(sys.argv[1]), {repeats}, {loop_repeats}, {with_torch})"
    runs, failures = [], []
    for _ in range(processes):
        ok, out = in_child(call, json.dumps(floors))
        (runs if ok else failures).append(out)
    out: dict = {"processes": runs, "failures": failures}
    for key in SPREAD_MEDIANS:
        values = [r[key] for r in runs if key in r]
        if values:
            out[f"{key}_median"] = float(np.median(values))
            out[f"{key}_range"] = [float(min(values)), float(max(values))]
    return out


def spread_markdown(spread: dict, title: str = "") -> list[str]:
    """Markdown lines for a :func:`given_spread` result: one row per process, then medians."""
    runs = spread["processes"]
    cols = (
        "process jax_steps_per_s jax_pinned_steps_per_s jax_cores jax_switches_per_call vs_numpy "
        "vs_torch vs_torch_pinned torch_best core_before_ns core_after_ns placement"
    )
    cols = cols.split()
    medians = [
        f"{k} {spread[k + '_median']:.3g} (range {spread[k + '_range'][0]:.3g}-"
        f"{spread[k + '_range'][1]:.3g})"
        for k in SPREAD_MEDIANS
        if k + "_median" in spread
    ]
    return [
        f"The same headline in {len(runs)} fresh processes, one after another{title} "
        "(:func:`given_spread`; a process's speed on this VM follows the placement of its two "
        "vCPUs, probed before and after: see the placement study below):",
        "",
        markdown_table([{"process": i, **r} for i, r in enumerate(runs)], cols),
        "",
        "Median over processes: " + ", ".join(medians) + ".",
    ]


def verdicts(
    rows,
    given,
    scaling,
    torch_present,
    scaling_1core=None,
    spread=None,
    placement_study=None,
    scaling_pinned=None,
) -> dict:
    """The issue's Done-when checks that this benchmark measures.

    The per-trajectory targets (10× NumPy, 1.5× PyTorch) are those of the issue's "model +
    policy + regret with rewards given" row, so they are checked on ``given``, and again on
    the median over the fresh processes of :func:`given_spread`, and on the rounds of
    :func:`bench_placement` under each placement of the two vCPUs (``_near``, ``_far``); the
    same ratios with every implementation drawing its own rewards are reported beside them.
    """
    head = {r["noise"]: r for r in rows if (r["M"], r["L"], r["T"], r["d"]) == HEADLINE}
    out = {}
    pt, ps = head.get("per-trajectory"), head.get("per-step")
    if given:
        out["per_trajectory_rewards_given_vs_numpy>=10"] = given["vs_numpy"] >= 10
        out["per_trajectory_rewards_given_roofline>=3%"] = given["roofline_fraction"] >= 0.03
        if torch_present:
            out["per_trajectory_rewards_given_vs_torch>=1.5"] = given["vs_torch"] >= 1.5
            if "vs_torch_pinned" in given:
                out["per_trajectory_rewards_given_vs_torch>=1.5_xla_threads_pinned"] = (
                    given["vs_torch_pinned"] >= 1.5
                )
    for key, target, suffix in (
        ("vs_numpy", 10, ""),
        ("vs_torch", 1.5, ""),
        ("vs_torch_pinned", 1.5, "_xla_threads_pinned"),
    ):
        if spread and f"{key}_median" in spread:
            name = key.removesuffix("_pinned")
            out[f"per_trajectory_rewards_given_{name}>={target}_process_median{suffix}"] = (
                spread[f"{key}_median"] >= target
            )
    if isinstance(placement_study, dict):
        for where in ("near", "far"):
            row = placement_study["summary"].get(where, {})
            name = f"per_trajectory_rewards_given_vs_torch>=1.5_{where}"
            if "vs_torch" in row:
                out[name] = row["vs_torch"] >= 1.5
            if "vs_torch_jax_pinned" in row:
                out[name + "_xla_threads_pinned"] = row["vs_torch_jax_pinned"] >= 1.5
    if pt:
        out["per_trajectory_own_rewards_vs_numpy>=10"] = pt["vs_numpy"] >= 10
        out["per_trajectory_own_rewards_roofline>=3%"] = pt["roofline_fraction"] >= 0.03
        if torch_present:
            out["per_trajectory_own_rewards_vs_torch>=1.5"] = pt["vs_torch"] >= 1.5
    if ps:
        out["per_step_within_1.5x_random_floor"] = ps["jax_over_random_floor"] <= 1.5
        if torch_present:
            out["per_step_vs_torch>=1"] = ps["vs_torch"] >= 1.0
    runs = {"": scaling}
    if scaling_pinned:
        runs["_xla_threads_pinned"] = scaling_pinned
    if isinstance(scaling_1core, list):
        runs["_one_core"] = scaling_1core
    for suffix, table in runs.items():
        for axis in ("T", "B"):
            # From the headline size up (B = 4096 to 65536; T = 200 to 2000): smaller batches
            # carry a fixed per-call overhead and are reported but not part of the check.
            sel = [r for r in table if r["axis"] == axis and r["B"] >= 4096]
            ok = all(abs(r["rate_vs_first"] - 1) <= 0.2 for r in sel)
            out[f"linear_in_{axis}{suffix}_within_20%"] = ok
        # Linear growth read as a constant marginal cost (time = a + b·n, marginal_costs): the
        # rate check above also fails when time grows slower than the work.
        for m in marginal_costs(table):
            if m["sizes"] >= 3:
                ok = all(abs(x - 1) <= 0.2 for x in m["increment_over_overall"])
                name = f"marginal_cost_{m['axis']}_{m['noise']}{suffix}_constant_within_20%"
                out[name] = ok
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small subset (< 1 minute)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7, quick 5)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch references")
    p.add_argument("--no-choices", action="store_true", help="skip the RNG/chunk comparison")
    p.add_argument(
        "--spread",
        type=int,
        default=None,
        help="fresh processes that repeat the rewards-given headline (default 5, quick 2; 0: skip)",
    )
    args = p.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 7)
    loop_repeats = 2 if args.quick else 3
    t_start = time.perf_counter()
    load_before = load_average()

    torch = None if args.no_torch else import_torch()
    floors = machine_floors(quick=args.quick)
    max_diff = check_references(torch)
    torch_info = {}
    if torch is not None:
        _, params = setup(*HEADLINE[:1], HEADLINE[2], HEADLINE[3])
        V, k = numpy_params(params)
        threads, times = pick_torch_threads(
            torch, torch.from_numpy(V), torch.from_numpy(k), HEADLINE, 3
        )
        torch_info = {"threads": threads, "per_step_headline_s_by_threads": times}

    rows = []
    for case in grid(args.quick):
        for noise in NOISES:
            big = case[0] * case[1] * case[2] * case[3] > 2**26
            rows.append(
                bench_case(
                    case,
                    noise,
                    floors,
                    torch,
                    3 if big else repeats,
                    1 if big else loop_repeats,
                    compiled_torch=(torch is not None and not args.quick and case == HEADLINE),
                )
            )
            print(f"{case} {noise}: {rows[-1]['jax_steps_per_s']:.3g} steps/s", file=sys.stderr)
    given = bench_given(  # blocks of 5: the targets are checked on this one case
        HEADLINE, floors, torch, repeats, loop_repeats, compiled_torch=torch is not None
    )
    print(f"{HEADLINE} rewards given: {given['jax_steps_per_s']:.3g} steps/s", file=sys.stderr)
    stages = bench_given_stages(HEADLINE, torch, repeats, given.get("torch_best"))
    stages_1core = stages_one_core(repeats)
    n_spread = (2 if args.quick else 5) if args.spread is None else args.spread
    spread = given_spread(floors, n_spread, repeats, loop_repeats) if n_spread > 0 else {}
    spread_jax = (
        given_spread(floors, n_spread, repeats, loop_repeats, with_torch=False)
        if n_spread > 0 and torch is not None
        else {}
    )
    placement_study = bench_placement(HEADLINE, torch, 10.0 if args.quick else 90.0)
    scaling = scaling_rows(args.quick, repeats)
    with pinned_xla_threads():
        scaling_pinned = scaling_rows(args.quick, repeats)
    scaling_1core = scaling_one_core(args.quick, repeats)
    choices = (
        []
        if args.no_choices
        else bench_choices(16 if args.quick else 64, 200, 8, 3 if args.quick else repeats)
    )
    checks = verdicts(
        rows,
        given,
        scaling,
        torch is not None,
        scaling_1core,
        spread,
        placement_study,
        scaling_pinned,
    )

    payload = {
        "benchmark": "rollout",
        "quick": args.quick,
        "settings": {
            "noise_scale": SCALE,
            "radius": RADIUS,
            "repeats": repeats,
            "loop_repeats": loop_repeats,
            "headline": HEADLINE,
        },
        "floors": floors,
        "torch": torch_info if torch is not None else "not installed: references skipped",
        "reference_max_abs_diff": max_diff,
        "rows": rows,
        "rewards_given": given,
        "rewards_given_stages": stages,
        "rewards_given_stages_one_core": stages_1core,
        "rewards_given_spread": spread,
        "rewards_given_spread_without_torch": spread_jax,
        "rewards_given_placement": placement_study,
        "scaling": scaling,
        "scaling_xla_threads_pinned": scaling_pinned,
        "scaling_one_core": scaling_1core,
        "choices": choices,
        "done_when": checks,
        "load_average_1min": {"before": load_before, "after": load_average()},
        "wall_s": time.perf_counter() - t_start,
    }
    md = [
        "Filter rollout of the single-layer LSA (rewards, model once per task, exploration, "
        "regret of every trajectory; policies not stored). Trajectory-steps/s = M·L·T / median "
        "time; ratios are our speed over the reference's, timed back to back in this run.",
        "",
        floors_markdown(floors),
        "",
    ]
    if torch is None:
        md.append("PyTorch is not installed: its columns are skipped.")
    else:
        md.append(
            f"PyTorch: {torch_info['threads']} intra-op thread(s), the faster of those tried "
            "in this run on the eager per-step headline; `torch` is the better of eager and "
            "torch.compile where compile ran, which in the grid is the headline case only: "
            "elsewhere `vs_torch` is against eager PyTorch."
        )
    md.append(
        f"Each grid case: {max(2, repeats // 2)} rounds of 3 calls per implementation (the "
        f"NumPy loop: {loop_repeats} calls); the largest (M·L·T·d > 2^26): 2 rounds of 3 and "
        "1 NumPy call. At this VM's ±25% noise a single row's floor ratio can fall below 1."
    )
    md += [
        f"NumPy/PyTorch against JAX on the same draws: max |regret difference| {max_diff:.2g}.",
        "",
    ]
    cols = (
        "M L T d noise jax_steps_per_s vs_numpy vs_torch "
        "jax_over_random_floor torch_over_random_floor roofline_fraction jax_cores jax_compile_s"
    ).split()
    md.append(markdown_table(rows, cols))
    md += [
        "",
        "The headline per-trajectory case with the rewards given (drawn before timing; each "
        "implementation draws only its per-trajectory noise), the issue's \"model + policy + "
        'regret with rewards given" measurement:',
        "",
        markdown_table(
            [given],
            (
                "M L T d noise jax_steps_per_s numpy_steps_per_s torch_steps_per_s vs_numpy "
                "vs_torch torch_best roofline_fraction jax_cores torch_cores"
            ).split(),
        ),
        "",
        "`torch_best`: the fastest PyTorch variant, eager or `torch.compile`, at `@n` intra-op "
        "threads; every variant was timed in blocks of 5 calls after 20 ms of settling calls, and "
        "`times_s` in `rollout.json` lists them all.",
        "",
        *stages_markdown(stages, stages_1core),
    ]
    for title, table in (
        ("", spread),
        (" without PyTorch in the process (JAX and the NumPy loop only)", spread_jax),
    ):
        if table.get("processes"):
            md += ["", *spread_markdown(table, title)]
    md += ["", *placement_markdown(placement_study)]
    md += [
        "",
        "Scaling (JAX; rate relative to the first row of each axis and noise, the "
        "headline size; B = 1024 shows the fixed per-call overhead and is outside the "
        "linearity check; `cores`: process CPU time over wall time, which shows where XLA's "
        "worker threads joined in):",
        "",
    ]
    md += scaling_markdown(scaling)
    md += [
        "",
        "The same with XLA's worker threads pinned one per CPU "
        "(:func:`rmft_theory.runtime.pinned_xla_threads`):",
        "",
        *scaling_markdown(scaling_pinned),
    ]
    md += ["", "The same, in a child process pinned to one core (:func:`scaling_one_core`):", ""]
    if isinstance(scaling_1core, list):
        md += scaling_markdown(scaling_1core)
    else:
        md.append(f"Not run ({scaling_1core}).")
    if choices:
        md += [
            "",
            "Per-step noise: the noise draw (`keys.standard_normal`, the library's: "
            "threefry2x32 with sequential counters and the hash unrolled; the others through "
            "`jax.random.normal`) and chunk sizes (trajectories per chunk), same rollout:",
            "",
        ]
        md.append(
            markdown_table(choices, ["variant", "M", "L", "T", "d", "time_ms", "steps_per_s"])
        )
    md += [
        "",
        "Done-when checks: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items()),
        "",
        f"Load average (1 min) before/after: {load_before}/{load_average()}.",
    ]
    write_results("rollout", payload, "\n".join(md))
    print("\n".join(md))
    return payload


if __name__ == "__main__":
    main()
