"""Sharded rollouts and fine-tuning equal the single-device ones (rmft_theory.sharding).

The checks run in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``:
the pytest process has already started JAX with one CPU device. Tolerances: the sharded
rollout draws the same numbers and does the same per-task arithmetic, so its scores may differ
from the single-device ones only where XLA vectorises a different number of local tasks
(measured: equal or 1 ulp; checked at 1e-6 relative). Sharded fine-tuning sums the loss over
tasks in another order (partial sums per device, then an all-reduce); after 20 Adam steps the
parameters agree to 1e-5 relative of their scale.
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
                "bit_identical": bool(np.array_equal(got.regret, ref.regret)),
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
                "targets_bit_identical": bool(
                    np.array_equal(got_s.buffer.targets, ref_s.buffer.targets)
                ),
                "targets_max_abs_diff": float(
                    jnp.max(jnp.abs(got_s.buffer.targets - ref_s.buffer.targets))
                ),
                "regret_mean_diff": abs(float(got_m["regret_mean"] - ref_m["regret_mean"])),
                "params_max_rel_diff": max(
                    float(
                        jnp.max(jnp.abs(got_s.params[n] - ref_s.params[n]))
                        / (1e-12 + jnp.max(jnp.abs(ref_s.params[n])))
                    )
                    for n in ref_s.params
                ),
            }
    # Placement: split_tasks splits a per-task array over "tasks" (replicated on "rollouts"),
    # and placed_for puts inputs where a mesh executable takes them; the iteration's held-out
    # evaluation is split over the devices too (its input is taken split).
    from rmft_theory.sharding import placed_for, split_tasks, task_sharding

    mixed = meshes["tasks2xrollouts2"]
    split = jax.jit(lambda x: split_tasks(x, mixed))(rewards)
    odd = jax.jit(lambda x: split_tasks(x, meshes["tasks4"]))(rewards[:3])
    c = dataclasses.replace(cfg, noise="per-trajectory")
    state = init_state(params, env, c, Seeds.from_seed(0))
    step = jax.jit(make_iteration(lsa_apply, env, c, mesh=meshes["tasks4"]))
    compiled = step.lower(state, heldout).compile()
    placed = placed_for(compiled, (state, heldout))
    # None where the executable does not read an input (the iteration restarts the optimiser).
    as_compiled = jax.tree.map(
        lambda w, a: w is None or bool(a.sharding.is_equivalent_to(w, a.ndim)),
        compiled.input_shardings[0],
        placed,
        is_leaf=lambda w: w is None,
    )
    out["placement"] = {
        "split_as_task_sharding": bool(split.sharding.is_equivalent_to(task_sharding(mixed), 3)),
        "split_devices": len(split.sharding.device_set),
        "odd_count_devices": len(odd.sharding.device_set),
        "placed_as_compiled": all(jax.tree.leaves(as_compiled)),
        "placed_leaves": len(jax.tree.leaves(as_compiled)),
        "heldout_shards": len({str(s.index) for s in placed[1].addressable_shards}),
    }

    from rmft_theory.rmft import run_filter

    runs = [
        run_filter(lsa_apply, env, cfg, Seeds.from_seed(1), params=params, quiet=True, mesh=m)
        for m in (None, meshes["tasks4"])
    ]
    out["run_filter"] = {
        "params_max_rel_diff": max(
            float(
                jnp.max(jnp.abs(runs[1].params[n] - runs[0].params[n]))
                / (1e-12 + jnp.max(jnp.abs(runs[0].params[n])))
            )
            for n in runs[0].params
        ),
        "heldout_regret_diff": float(
            np.max(np.abs(runs[1].history["heldout_regret"] - runs[0].history["heldout_regret"]))
        ),
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
        assert r["regret_mean_diff"] <= 1e-5, (name, r)
        assert r["params_max_rel_diff"] <= 1e-5, (name, r)


def test_inputs_are_placed_where_the_mesh_takes_them(sharded_results):
    r = sharded_results["placement"]
    assert r["split_as_task_sharding"] and r["split_devices"] == N_DEVICES, r
    assert r["odd_count_devices"] == 1, r  # 3 tasks do not split over 4 devices: left alone
    assert r["placed_as_compiled"] and r["placed_leaves"] >= 10, r  # params, buffer, keys...
    # The held-out tasks are evaluated in N_DEVICES distinct slices, not replicated.
    assert r["heldout_shards"] == N_DEVICES, r


def test_sharded_run_filter_equals_single_device(sharded_results):
    r = sharded_results["run_filter"]
    assert r["params_max_rel_diff"] <= 1e-5 and r["heldout_regret_diff"] <= 1e-4, r


if __name__ == "__main__":
    print(json.dumps(run_checks()))
