"""Sharded rollouts and fine-tuning equal the single-device ones (rmft_theory.sharding).

The checks run in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``:
the pytest process has already started JAX with one CPU device. Tolerances: the sharded
rollout draws the same numbers and does the same per-task arithmetic, so its scores may differ
from the single-device ones only where XLA vectorises a different number of local tasks
(measured: equal or 1 ulp; checked at 1e-6 relative), and so may the filter iteration's mean
regret, which sums those scores (measured: equal or 4.8e-7 apart; checked at 1e-6 relative).
A run's held-out regrets follow parameters fine-tuned as below (measured: 4.8e-7 apart;
checked at 1e-5 relative, the parameters' bound). Sharded fine-tuning sums the loss
over tasks in another order (partial sums per device, then an all-reduce); after 10-20 Adam
steps the parameters agree to 1.7e-7 relative of their scale (measured), checked at 1e-5:
Adam's normalised steps can carry a reordered sum's rounding further than one ulp.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

N_DEVICES = 4


def run_checks() -> dict:
    """Compare sharded and single-device results on N_DEVICES forced host devices."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np

    from rmft_theory.envs import GaussianFOL
    from rmft_theory.keys import Seeds
    from rmft_theory.models import lsa_apply, make_model
    from rmft_theory.rmft import (
        FilterConfig,
        KeptSet,
        finetune,
        heldout_rewards,
        init_state,
        make_iteration,
    )
    from rmft_theory.rollout import Exploration, rollout_scores
    from rmft_theory.sharding import (
        ROLLOUTS,
        TASKS,
        make_mesh,
        sharded_finetune,
        sharded_rollout_scores,
    )

    assert len(jax.devices()) == N_DEVICES, jax.devices()
    out = {"rollout": {}, "finetune": {}, "iteration": {}}
    M, L, T, d = 8, 8, 12, 3
    params = make_model("lsa", d).init(jax.random.key(0), jnp.zeros((T, d)))["params"]
    rewards = jax.random.normal(jax.random.key(1), (M, T, d))
    key = jax.random.key(2)
    meshes = {
        "tasks4": make_mesh((4,), (TASKS,)),
        "tasks2xrollouts2": make_mesh((2, 2), (TASKS, ROLLOUTS)),
        "rollouts4": make_mesh((4,), (ROLLOUTS,)),
    }
    explorations = {
        "per-trajectory": Exploration("per-trajectory", 1.0, space="ball", radius=1.0),
        "per-step": Exploration("per-step", 1.0, space="ball", radius=1.0),
        "actions": Exploration("actions", temperature=0.5, space="simplex"),
        "none": Exploration("none", space="ball", radius=0.5),
    }
    for e_name, e in explorations.items():
        ref = jax.jit(lambda p, r, k, e=e: rollout_scores(lsa_apply, p, r, k, e, L))(
            params, rewards, key
        )
        for m_name, mesh in meshes.items():
            got = jax.jit(
                lambda p, r, k, e=e, mesh=mesh: sharded_rollout_scores(
                    lsa_apply, p, r, k, e, L, mesh
                )
            )(params, rewards, key)
            diff = float(jnp.max(jnp.abs(got.regret - ref.regret)))
            scale = float(jnp.max(jnp.abs(ref.regret)))
            out["rollout"][f"{e_name}/{m_name}"] = {
                "max_abs_diff": diff,
                "scale": scale,
                "n_shards": len(got.regret.sharding.device_set),
            }

    config = FilterConfig(finetune_steps=20, learning_rate=1e-2)
    kept = KeptSet(rewards, 0.1 * rewards, jnp.full((M,), 1.0 / M))
    ref_p = jax.jit(lambda p, k: finetune(lsa_apply, p, k, config)[0])(params, kept)
    for m_name, mesh in meshes.items():
        got_p = sharded_finetune(lsa_apply, params, kept, config, mesh)[0]
        diffs = [
            float(jnp.max(jnp.abs(got_p[n] - ref_p[n])) / (1e-12 + jnp.max(jnp.abs(ref_p[n]))))
            for n in ref_p
        ]
        out["finetune"][m_name] = {"max_rel_diff": max(diffs)}

    env = GaussianFOL(d=d, horizon=T)
    cfg = FilterConfig(
        tasks=M, rollouts=L, keep=2, iterations=2, finetune_steps=10, heldout_tasks=8
    )
    heldout = heldout_rewards(env, 8, jax.random.key(3))
    for noise in ("per-trajectory", "per-step"):
        c = dataclasses.replace(cfg, noise=noise)
        state = init_state(params, env, c, Seeds.from_seed(0))
        ref_s, ref_m = jax.jit(make_iteration(lsa_apply, env, c))(state, heldout)
        for m_name in ("tasks4", "tasks2xrollouts2"):
            step = jax.jit(make_iteration(lsa_apply, env, c, mesh=meshes[m_name]))
            got_s, got_m = step(state, heldout)
            out["iteration"][f"{noise}/{m_name}"] = {
                "targets_max_abs_diff": float(
                    jnp.max(jnp.abs(got_s.buffer.targets - ref_s.buffer.targets))
                ),
                "regret_mean_rel_diff": abs(float(got_m["regret_mean"] - ref_m["regret_mean"]))
                / abs(float(ref_m["regret_mean"])),
                "params_max_rel_diff": max(
                    float(
                        jnp.max(jnp.abs(got_s.params[n] - ref_s.params[n]))
                        / (1e-12 + jnp.max(jnp.abs(ref_s.params[n])))
                    )
                    for n in ref_s.params
                ),
            }
    # Placement. split_tasks splits a per-task array over "tasks" (replicated on "rollouts");
    # placed_for puts a compiled step's inputs where it takes them, so that neither the first
    # call nor the next one on its own output state moves anything (a transfer guard turns any
    # implicit transfer into an error; the unplaced inputs show that it does); the held-out
    # evaluation is taken split, not replicated.
    from rmft_theory.sharding import placed_for, replicated, split_tasks, task_sharding

    def guarded(fn) -> str:
        try:
            with jax.transfer_guard("disallow"):
                jax.block_until_ready(fn())
        except Exception as e:  # the message is the result
            return f"{type(e).__name__}: {str(e)[:200]}"
        return "ok"

    mixed = meshes["tasks2xrollouts2"]
    split = jax.jit(lambda x: split_tasks(x, mixed))(rewards)
    odd = jax.jit(lambda x: split_tasks(x, meshes["tasks4"]))(rewards[:3])
    c = dataclasses.replace(cfg, noise="per-trajectory")
    state = init_state(params, env, c, Seeds.from_seed(0))
    out["placement"] = {
        "split_as_task_sharding": bool(split.sharding.is_equivalent_to(task_sharding(mixed), 3)),
        "split_shards": len({str(s.index) for s in split.addressable_shards}),
        "odd_count_devices": len(odd.sharding.device_set),
    }
    for m_name, mesh in meshes.items():
        step = jax.jit(make_iteration(lsa_apply, env, c, mesh=mesh))
        compiled = step.lower(state, heldout).compile()
        placed = placed_for(compiled, (state, heldout))
        out["placement"][m_name] = {
            "two_iterations_placed": guarded(
                lambda compiled=compiled, placed=placed: compiled(compiled(*placed)[0], placed[1])
            ),
            "unplaced": guarded(lambda compiled=compiled: compiled(state, heldout)),
            "heldout_shards": len({str(s.index) for s in placed[1].addressable_shards}),
        }
    e = explorations["per-trajectory"]
    rollout = jax.jit(lambda p, r, k: sharded_rollout_scores(lsa_apply, p, r, k, e, L, mixed))
    rollout(params, rewards, key)  # compile outside the guard
    put = jax.device_put((params, key), replicated(mixed))
    out["placement"]["rollout_placed"] = guarded(
        lambda: rollout(put[0], jax.device_put(rewards, task_sharding(mixed)), put[1])
    )

    from rmft_theory.rmft import run_filter

    runs = [run_filter(lsa_apply, env, cfg, Seeds.from_seed(1), params=params, quiet=True)]
    # On every mesh, with implicit device-to-device transfers forbidden: run_filter puts its
    # state and held-out tasks on the mesh itself (explicit transfers are allowed).
    for mesh in meshes.values():
        with jax.transfer_guard_device_to_device("disallow"):
            runs.append(
                run_filter(
                    lsa_apply, env, cfg, Seeds.from_seed(1), params=params, quiet=True, mesh=mesh
                )
            )
    out["run_filter"] = {
        m_name: {
            "params_max_rel_diff": max(
                float(
                    jnp.max(jnp.abs(run.params[n] - runs[0].params[n]))
                    / (1e-12 + jnp.max(jnp.abs(runs[0].params[n])))
                )
                for n in runs[0].params
            ),
            "heldout_regret_rel_diff": float(
                np.max(np.abs(run.history["heldout_regret"] - runs[0].history["heldout_regret"]))
                / np.max(np.abs(runs[0].history["heldout_regret"]))
            ),
        }
        for m_name, run in zip(meshes, runs[1:], strict=True)
    }
    return out


@pytest.fixture(scope="module")
def sharded_results():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={N_DEVICES}"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sharded_rollout_equals_single_device(sharded_results):
    for name, r in sharded_results["rollout"].items():
        assert r["max_abs_diff"] <= 1e-6 * max(1.0, r["scale"]), (name, r)
    # Each mesh really splits the work: the scores live on all four devices.
    assert all(r["n_shards"] == N_DEVICES for r in sharded_results["rollout"].values())


def test_sharded_finetune_equals_single_device(sharded_results):
    for name, r in sharded_results["finetune"].items():
        assert r["max_rel_diff"] <= 1e-5, (name, r)


def test_sharded_iteration_equals_single_device(sharded_results):
    for name, r in sharded_results["iteration"].items():
        # Same draws and per-task selection: the kept targets agree to rounding (1e-6).
        assert r["targets_max_abs_diff"] <= 1e-6, (name, r)
        assert r["regret_mean_rel_diff"] <= 1e-6, (name, r)
        assert r["params_max_rel_diff"] <= 1e-5, (name, r)


def test_inputs_are_placed_where_the_mesh_takes_them(sharded_results):
    r = sharded_results["placement"]
    # 8 tasks over a 2 x 2 mesh: 2 distinct slices (each held by the 2 "rollouts" devices).
    assert r["split_as_task_sharding"] and r["split_shards"] == 2, r
    assert r["odd_count_devices"] == 1, r  # 3 tasks do not split over 4 devices: left alone
    assert r["rollout_placed"] == "ok", r
    for m_name, tasks in (("tasks4", 4), ("tasks2xrollouts2", 2), ("rollouts4", 1)):
        m = r[m_name]
        assert m["two_iterations_placed"] == "ok", (m_name, m)
        assert "Disallowed" in m["unplaced"], (m_name, m)  # the guard does catch transfers
        # The held-out tasks are evaluated in one slice per device on the "tasks" axis.
        assert m["heldout_shards"] == tasks, (m_name, m)


def test_sharded_run_filter_equals_single_device(sharded_results):
    for m_name, r in sharded_results["run_filter"].items():
        assert r["params_max_rel_diff"] <= 1e-5, (m_name, r)
        # After fine-tuning, whose parameters may differ by 1e-5 (above): 1e-5 relative.
        assert r["heldout_regret_rel_diff"] <= 1e-5, (m_name, r)


if __name__ == "__main__":
    print(json.dumps(run_checks()))
