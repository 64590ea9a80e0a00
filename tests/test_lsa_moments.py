"""The LSA's fine-tuning loss from sufficient statistics equals the direct form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmft_theory.models import lsa_apply, lsa_moments, make_model
from rmft_theory.models.lsa_moments import mse_loss_from_moments, mse_moments, prefix_outer
from rmft_theory.rmft import (
    FilterConfig,
    KeptSet,
    apply_function,
    finetune,
    finetune_form,
    kept_loss,
)


def random_case(seed: int, C: int, T: int, d: int, zero_weights: int = 0):
    """Near-identity LSA parameters and a kept set with random weights and with targets that
    depend on the reward history (so that every term of the expanded loss matters)."""
    key_p, key_r, key_y, key_w = jax.random.split(jax.random.key(seed), 4)
    E = d + 1
    p = jax.random.normal(key_p, (3, E, E))
    params = {"V": 0.3 * p[0, :d], "K": jnp.eye(E) + 0.2 * p[1], "Q": jnp.eye(E) + 0.2 * p[2]}
    weights = jax.random.uniform(key_w, (C,)).at[:zero_weights].set(0.0)
    rewards = jax.random.normal(key_r, (C, T, d))
    history = jnp.cumsum(rewards, axis=1) - rewards
    noise = jax.random.normal(key_y, (C, T, d))
    kept = KeptSet(rewards, jnp.clip(0.2 * history + 0.3 * noise, -1.0, 1.0), weights)
    return params, kept


def numpy_direct_loss(params, kept) -> float:
    """The weighted MSE of the LSA in float64 NumPy, by the O(T²) definition of THEORY §2."""
    V, K, Q = (np.asarray(params[n], np.float64) for n in ("V", "K", "Q"))
    R, Y, w = (np.asarray(x, np.float64) for x in kept)
    C, T, _ = R.shape
    e = np.concatenate([R, np.ones((C, T, 1))], axis=-1)
    k = K.T @ Q[:, -1]
    mask = np.tril(np.ones((T, T)), k=-1)
    g = np.einsum("ts,cs,csa->cta", mask, e @ k, e @ V.T)
    per_task = ((g - Y) ** 2).sum(-1).mean(-1)
    return float((w * per_task).sum() / max(w.sum(), np.finfo(np.float32).tiny))


def direct_loss(params, kept):
    config = FilterConfig(finetune_form="direct")
    return kept_loss(lsa_apply, kept, config)(params)


def moments_loss(params, kept):
    return mse_loss_from_moments(params, mse_moments(*kept))


def test_prefix_outer_is_the_exclusive_prefix_sum_of_outer_products():
    R = jax.random.normal(jax.random.key(0), (7, 3))
    e = np.concatenate([np.asarray(R, np.float64), np.ones((7, 1))], axis=1)
    A = np.cumsum(np.einsum("ta,tb->tab", e, e), axis=0) - np.einsum("ta,tb->tab", e, e)
    I, J = np.triu_indices(4)
    # float32 sums of ≤ 7 O(1) products: 1e-5 absolute.
    np.testing.assert_allclose(prefix_outer(R), A[:, I, J], atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    C=st.integers(1, 12),
    T=st.integers(1, 30),
    d=st.integers(1, 6),
    zero_weights=st.integers(0, 3),
)
def test_moments_loss_and_gradient_equal_the_direct_form(seed, C, T, d, zero_weights):
    params, kept = random_case(seed, C, T, d, min(zero_weights, C))
    loss_m, grad_m = jax.jit(jax.value_and_grad(moments_loss))(params, kept)
    loss_d, grad_d = jax.jit(jax.value_and_grad(direct_loss))(params, kept)
    reference = numpy_direct_loss(params, kept)
    # The expanded polynomial cancels terms a few times larger than the loss in float32
    # (eps 1.2e-7) and sums C·T terms: 1e-5 relative to the loss is ~100 eps of headroom.
    np.testing.assert_allclose(float(loss_m), reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(loss_d), reference, rtol=1e-5, atol=1e-6)
    for name in grad_d:
        scale = float(jnp.max(jnp.abs(grad_d[name]))) + 1e-6
        # Both float32 gradients are within ~1e-6 relative of float64 at these sizes (the
        # module docstring has the measurement at C = 4096): 2e-5 of the largest entry.
        np.testing.assert_allclose(grad_m[name], grad_d[name], atol=2e-5 * scale, err_msg=name)


def test_chunked_moments_equal_one_chunk(monkeypatch):
    # 13 tasks in chunks of 2 (the last padded with a weight-0 task) against one chunk.
    params, kept = random_case(1, C=13, T=9, d=3)
    whole = mse_moments(*kept)
    monkeypatch.setattr(lsa_moments, "CHUNK_ELEMENTS", 2 * 9 * 10)
    chunked = mse_moments(*kept)
    for a, b in zip(whole, chunked):
        # Only the order of float32 sums differs: 1e-5 relative to the largest entry.
        np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.max(jnp.abs(a))))
    np.testing.assert_allclose(
        float(mse_loss_from_moments(params, chunked)), numpy_direct_loss(params, kept), rtol=1e-5
    )


def test_all_zero_weights_give_zero_loss_in_both_forms():
    params, kept = random_case(2, C=4, T=5, d=2, zero_weights=4)
    assert float(moments_loss(params, kept)) == 0.0
    assert float(direct_loss(params, kept)) == 0.0


def test_finetune_in_both_forms_ends_at_the_same_parameters():
    params, kept = random_case(3, C=32, T=20, d=4)
    out = {}
    for form in ("direct", "moments"):
        config = FilterConfig(finetune_steps=30, learning_rate=1e-2, finetune_form=form)
        out[form] = jax.jit(lambda p, k, c=config: finetune(lsa_apply, p, k, c))(params, kept)
    for name in params:
        # 30 Adam steps of size ≤ lr = 1e-2 from gradients that agree to ~1e-6: 1e-4 absolute
        # on O(1) parameters.
        np.testing.assert_allclose(out["moments"][0][name], out["direct"][0][name], atol=1e-4)
    np.testing.assert_allclose(out["moments"][2], out["direct"][2], rtol=1e-5)


def test_auto_form_picks_moments_for_the_lsa_with_mse_only():
    module = make_model("lsa", 3)
    assert apply_function(module) is lsa_apply
    assert finetune_form(lsa_apply, FilterConfig()) == "moments"
    assert finetune_form(lsa_apply, FilterConfig(finetune_form="direct")) == "direct"
    ce = FilterConfig(space="simplex", loss="cross-entropy")
    assert finetune_form(lsa_apply, ce) == "direct"
    deep = apply_function(make_model("linear-attention", 3))
    assert finetune_form(deep, FilterConfig()) == "direct"


def test_moments_form_where_unavailable_is_a_named_error():
    deep = apply_function(make_model("linear-attention", 3))
    with pytest.raises(ValueError, match="finetune_form='moments'"):
        finetune_form(deep, FilterConfig(finetune_form="moments"))
    ce = FilterConfig(space="simplex", loss="cross-entropy", finetune_form="moments")
    with pytest.raises(ValueError, match="finetune_form='moments'"):
        finetune_form(lsa_apply, ce)
    with pytest.raises(ValueError, match="finetune_form"):
        FilterConfig(finetune_form="fast")


def test_moments_finetune_compiles_once_and_its_steps_do_not_grow_with_the_kept_set():
    config = FilterConfig(finetune_steps=4, learning_rate=1e-2)
    fn = jax.jit(lambda p, k: finetune(lsa_apply, p, k, config))
    params = random_case(4, C=8, T=6, d=2)[0]
    for seed in range(3):
        fn(params, random_case(seed, C=8, T=6, d=2)[1])
    assert fn._cache_size() == 1

    # One optimiser step on the moments costs the same for any C and T: compare the compiled
    # step (loss and gradient from given moments) across kept-set sizes.
    params_d3 = random_case(0, 1, 1, 3)[0]

    def step_flops(C, T):
        stats = jax.eval_shape(mse_moments, *random_case(0, C, T, 3)[1])
        grad = jax.jit(jax.grad(mse_loss_from_moments)).lower(params_d3, stats).compile()
        cost = grad.cost_analysis()
        return round(float((cost[0] if isinstance(cost, list) else cost)["flops"]))

    assert step_flops(8, 10) == step_flops(512, 200)
