"""Named PRNG streams and the library's bulk Gaussian draw."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmft_theory.keys import EVALUATION_STREAMS, STREAM_IDS, Seeds, standard_normal


def test_streams_are_distinct_and_independent_of_other_seeds():
    keys = {name: Seeds.from_seed(3).key(name) for name in STREAM_IDS}
    data = {jax.random.key_data(k).tobytes() for k in keys.values()}
    assert len(data) == len(STREAM_IDS)
    moved = Seeds(init=1, tasks=3, rewards=3, noise=3, heldout=3, actions=3)
    for name in STREAM_IDS:
        same = jax.random.key_data(moved.key(name)) == jax.random.key_data(keys[name])
        assert bool(jnp.all(same)) == (name != "init"), name


def test_evaluation_streams_are_off_every_training_key_path():
    # rmft evaluate's run i draws from fold_in(evaluation stream, i); training step i splits
    # fold_in(key("tasks"), i) into its task keys, which under partitionable threefry equal
    # fold_in(that, j). The evaluation keys must be none of those (checked for the first 64
    # steps and tasks), follow their training stream's seed, and differ from each other.
    seeds = Seeds.from_seed(0)
    evaluation = {n: jax.random.key_data(seeds.key(n)).tobytes() for n in EVALUATION_STREAMS}
    assert len(set(evaluation.values())) == len(EVALUATION_STREAMS)
    training = set()
    for name in STREAM_IDS:
        parent = seeds.key(name)
        training.add(jax.random.key_data(parent).tobytes())
        for i in range(64):
            step = jax.random.fold_in(parent, i)
            training.add(jax.random.key_data(step).tobytes())
            children = jax.random.split(step, 64)
            training.update(jax.random.key_data(c).tobytes() for c in children)
    assert not training & set(evaluation.values())
    moved = Seeds(init=0, tasks=5, rewards=0, noise=0, heldout=0, actions=0)
    for name, (field, _) in EVALUATION_STREAMS.items():
        same = jax.random.key_data(moved.key(name)).tobytes() == evaluation[name]
        assert same == (field != "tasks"), name


def test_unknown_stream_and_bad_seed_are_named():
    with pytest.raises(ValueError, match="stream must be one of"):
        Seeds().key("reward")
    with pytest.raises(ValueError, match=r"seeds\.noise"):
        Seeds(noise=-1)


def _sequential_normal(key, shape, dtype=jnp.float32):
    with jax.threefry_partitionable(False):
        return jax.random.normal(key, shape, dtype)


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 5, 7), (64, 200, 8)])
def test_standard_normal_is_jax_normal_with_sequential_counters(shape):
    # The unrolled hash (keys.threefry2x32) reproduces JAX's draw bit for bit, odd counts
    # (padded with one 0) included, eagerly and under jit, whatever the global layout; and it
    # is not the partitionable layout's draw from the same key.
    key = jax.random.key(7)
    expected = _sequential_normal(key, shape)
    with jax.threefry_partitionable(True):
        np.testing.assert_array_equal(standard_normal(key, shape), expected)
        np.testing.assert_array_equal(
            jax.jit(standard_normal, static_argnums=1)(key, shape), expected
        )
        assert not np.array_equal(jax.random.normal(key, shape), expected)


def test_standard_normal_under_vmap_and_its_fallbacks():
    # Batched keys (one per task) give each task its own draw; other dtypes and key
    # implementations take jax.random.normal under sequential counters (the same numbers).
    keys = jax.random.split(jax.random.key(1), 5)
    batched = jax.jit(jax.vmap(lambda k: standard_normal(k, (20, 3))))(keys)
    for i in range(5):
        np.testing.assert_array_equal(batched[i], _sequential_normal(keys[i], (20, 3)))
    key = jax.random.key(2)
    for dtype in (jnp.bfloat16, jnp.float16):
        out = standard_normal(key, (4, 3), dtype)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, _sequential_normal(key, (4, 3), dtype))
    rbg = jax.random.key(2, impl="rbg")
    np.testing.assert_array_equal(standard_normal(rbg, (4, 3)), _sequential_normal(rbg, (4, 3)))
    assert standard_normal(key, (3,)).dtype == jnp.result_type(float)


def test_standard_normal_has_the_standard_law():
    # n = 2·10⁵ draws: mean within 5 SE (1/√n) of 0, variance within 5 SE (√(2/n)) of 1, and
    # adjacent draws (the two words of one threefry hash) uncorrelated within 5 SE (1/√n).
    n = 200_000
    x = np.asarray(standard_normal(jax.random.key(0), (n // 2, 2)), np.float64)
    flat = x.ravel()
    assert abs(flat.mean()) < 5 / np.sqrt(n)
    assert abs(flat.var() - 1.0) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(x[:, 0] * x[:, 1])) < 5 / np.sqrt(n / 2)
