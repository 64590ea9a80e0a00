"""The LSA's fine-tuning loss from sufficient statistics equals the direct form."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmft_theory.envs import GaussianFOL
from rmft_theory.keys import Seeds
from rmft_theory.models import (
    LinearSelfAttention,
    lsa_apply,
    lsa_moments,
    make_model,
    params_from_weights,
)
from rmft_theory.models.lsa_moments import mse_loss_from_moments, mse_moments, prefix_outer
from rmft_theory.rmft import (
    FilterConfig,
    KeptSet,
    apply_function,
    finetune,
    finetune_form,
    kept_loss,
    run_filter,
)
from rmft_theory.theory import ftrl_weights


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
    # Far from a fit (random parameters, so the quadratic term dominates and little cancels)
    # both float32 forms are within ~1e-6 of float64: 1e-5 relative to the loss is ~80 eps.
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
    # The two forms sum the same float32 terms in different orders, and Adam carries the
    # rounding through 30 steps that move the O(1) parameters by about 0.15. Measured on the
    # 2-core CPU: parameters differ by at most 1.8e-7 and the losses by 4.1e-7 relative; the
    # bounds leave about 10x room for other CPUs' summation orders. A form that fitted a
    # different loss moves the parameters by O(lr) = 1e-2 per step and fails by far.
    for name in params:
        np.testing.assert_allclose(out["moments"][0][name], out["direct"][0][name], atol=2e-6)
    np.testing.assert_allclose(out["moments"][2], out["direct"][2], rtol=5e-6)


def test_auto_form_picks_moments_for_the_lsa_with_mse_only():
    module = make_model("lsa", 3)
    assert apply_function(module) is lsa_apply
    assert finetune_form(lsa_apply, FilterConfig()) == "moments"
    assert finetune_form(lsa_apply, FilterConfig(finetune_form="direct")) == "direct"
    ce = FilterConfig(space="simplex", noise="actions", loss="cross-entropy")
    assert finetune_form(lsa_apply, ce) == "direct"
    deep = apply_function(make_model("linear-attention", 3))
    assert finetune_form(deep, FilterConfig()) == "direct"


def test_moments_form_where_unavailable_is_a_named_error():
    deep = apply_function(make_model("linear-attention", 3))
    with pytest.raises(ValueError, match="finetune_form='moments'"):
        finetune_form(deep, FilterConfig(finetune_form="moments"))
    ce = FilterConfig(
        space="simplex", noise="actions", loss="cross-entropy", finetune_form="moments"
    )
    with pytest.raises(ValueError, match="finetune_form='moments'"):
        finetune_form(lsa_apply, ce)
    with pytest.raises(ValueError, match="finetune_form"):
        FilterConfig(finetune_form="fast")


def test_moments_finetune_compiles_once_for_new_kept_sets():
    config = FilterConfig(finetune_steps=4, learning_rate=1e-2)
    fn = jax.jit(lambda p, k: finetune(lsa_apply, p, k, config))
    params = random_case(4, C=8, T=6, d=2)[0]
    for seed in range(3):
        fn(params, random_case(seed, C=8, T=6, d=2)[1])
    assert fn._cache_size() == 1


@pytest.mark.parametrize("form", ["moments", "direct"])
def test_optimiser_steps_read_the_kept_set_only_in_the_direct_form(form):
    # The Adam steps run in one lax.scan of finetune_steps iterations. In the moments form its
    # inputs are the parameters, the optimiser state and the (E², E²), (d, E²), () moments: no
    # array has a kept-set axis (C = 37 tasks, T = 11 rounds), so a step's cost does not depend
    # on C or T. The direct form, the control, feeds the (C, T, d) kept set to every step.
    C, T, steps = 37, 11, 5
    params, kept = random_case(0, C, T, d=2)
    config = FilterConfig(finetune_steps=steps, finetune_form=form)
    jaxpr = jax.make_jaxpr(lambda p, k: finetune(lsa_apply, p, k, config))(params, kept)
    (loop,) = [e for e in jaxpr.eqns if e.primitive.name == "scan" and e.params["length"] == steps]
    shapes = [tuple(v.aval.shape) for v in loop.invars]
    touches_kept_set = any(C in shape or T in shape for shape in shapes)
    assert touches_kept_set == (form == "direct"), shapes


def numpy_loss_and_grad_V(params, kept) -> tuple[float, np.ndarray, float]:
    """Float64 loss, ∂loss/∂V and ``c = Σ ω‖y‖²`` by the O(T) prefix sums, in NumPy."""
    V, K, Q = (np.asarray(params[n], np.float64) for n in ("V", "K", "Q"))
    R, Y, w = (np.asarray(x, np.float64) for x in kept)
    C, T, _ = R.shape
    e = np.concatenate([R, np.ones((C, T, 1))], axis=-1)
    x = e * (e @ (K.T @ Q[:, -1]))[..., None]
    z = np.cumsum(x, axis=1) - x
    residual, omega = z @ V.T - Y, w / (T * w.sum())
    loss = np.einsum("c,ctd,ctd->", omega, residual, residual)
    grad_V = 2.0 * np.einsum("c,ctm,cta->ma", omega, residual, z)
    return float(loss), grad_V, float(np.einsum("c,ctd,ctd->", omega, Y, Y))


@pytest.mark.parametrize(("seed", "T"), [(0, 50), (1, 200)])
def test_moments_form_is_accurate_near_a_fit(seed, T):
    # Where the model fits the targets (FTRL at W* against FTRL-like policies plus noise, so
    # the loss is ~0.1 c), the expanded polynomial cancels terms ~10× the loss: its absolute
    # error scales with c, not with the loss. Measured over 5 seeds at T = 50 and 200: loss
    # error ≤ 3.5e-7 c (≈ 3 float32 eps), V-gradient error ≤ 8e-7 of the gradient at V = 0.
    # Tolerances: 1e-5 c and 2e-5 of that gradient (≥ 25× the measured errors).
    C, d = 64, 3
    key_r, key_n = jax.random.split(jax.random.key(seed))
    rewards = jax.random.normal(key_r, (C, T, d))
    W = jnp.asarray(ftrl_weights(np.eye(d), T), jnp.float32)
    y = (jnp.cumsum(rewards, axis=1) - rewards) @ W.T
    y = y / jnp.maximum(jnp.linalg.norm(y, axis=-1, keepdims=True), 1.0)
    kept = KeptSet(rewards, y + 0.1 * jax.random.normal(key_n, y.shape), jnp.ones((C,)))
    params = params_from_weights(W)
    loss, grad_V, c = numpy_loss_and_grad_V(params, kept)
    scale = np.abs(numpy_loss_and_grad_V(params_from_weights(0 * W), kept)[1]).max()
    assert 0.03 < loss / c < 0.3  # a good fit, not an exact one
    got_loss, got_grad = jax.value_and_grad(moments_loss)(params, kept)
    np.testing.assert_allclose(float(got_loss), loss, atol=1e-5 * c)
    np.testing.assert_allclose(got_grad["V"], grad_V, atol=2e-5 * scale)


def test_a_checkpoint_resumes_in_the_other_form(tmp_path):
    # Both forms minimise the same loss, so finetune_form is not part of the run's fingerprint.
    env = GaussianFOL(d=2, horizon=6)
    config = FilterConfig(
        tasks=4, rollouts=4, iterations=2, finetune_steps=3, heldout_tasks=4, finetune_form="direct"
    )
    model, seeds = make_model("lsa", 2), Seeds.from_seed(0)
    run_filter(model, env, config, seeds, checkpoint_dir=tmp_path, stop_after=1, quiet=True)
    first = tmp_path / "records" / "step_000000.npz"
    written = first.stat().st_mtime_ns
    moments = dataclasses.replace(config, finetune_form="moments")
    resumed = run_filter(model, env, moments, seeds, checkpoint_dir=tmp_path, quiet=True)
    assert len(resumed.history["heldout_regret"]) == 2
    # Resumed, not restarted: iteration 0's record was not rewritten.
    assert first.stat().st_mtime_ns == written


def test_subclasses_of_the_lsa_keep_their_own_apply():
    class Doubled(LinearSelfAttention):
        def __call__(self, rewards_TxD):
            return 2.0 * super().__call__(rewards_TxD)

    module = Doubled(d=2)
    rewards = jax.random.normal(jax.random.key(0), (5, 2))
    params = module.init(jax.random.key(1), rewards)["params"]
    apply_fn = apply_function(module)
    assert apply_fn is not lsa_apply
    assert finetune_form(apply_fn, FilterConfig()) == "direct"
    np.testing.assert_array_equal(
        apply_fn(params, rewards), module.apply({"params": params}, rewards)
    )


def test_a_registered_module_class_gets_its_moments_form(monkeypatch):
    # A plugin model (here an LSA subclass with the same __call__, so that the LSA's moments
    # are its own) registers its apply function and moments form with its class; modules the
    # filter and the rmft commands build then fine-tune in the moments form.
    from rmft_theory import rmft

    monkeypatch.setattr(rmft, "MSE_MOMENT_FORMS", dict(rmft.MSE_MOMENT_FORMS))
    monkeypatch.setattr(rmft, "MODULE_APPLY_FUNCTIONS", dict(rmft.MODULE_APPLY_FUNCTIONS))

    class Plugin(LinearSelfAttention):
        pass

    def plugin_apply(params, rewards_TxD):
        return lsa_apply(params, rewards_TxD)

    module = Plugin(d=2)
    assert finetune_form(apply_function(module), FilterConfig()) == "direct"
    rmft.register_moments_form(plugin_apply, mse_moments, mse_loss_from_moments, module=Plugin)
    assert apply_function(module) is plugin_apply
    assert finetune_form(apply_function(module), FilterConfig()) == "moments"
    assert apply_function(Plugin(d=3)) is plugin_apply  # every instance of the class
    # The registered function runs the plugin's rollouts too: one that computes something else
    # is refused before the filter starts.
    rmft.register_moments_form(
        lambda p, r: 2.0 * lsa_apply(p, r), mse_moments, mse_loss_from_moments, module=Plugin
    )
    env = GaussianFOL(d=2, horizon=5)
    params = module.init(jax.random.key(0), jnp.zeros((5, 2)))["params"]
    params = jax.tree.map(lambda x: x + 0.1, params)  # not zero, so that 2x differs
    with pytest.raises(ValueError, match=r"registered for Plugin .* does not compute what"):
        run_filter(module, env, FilterConfig(iterations=1), Seeds(), params=params, quiet=True)
    with pytest.raises(ValueError, match="module must be a flax Module class"):
        rmft.register_moments_form(plugin_apply, mse_moments, mse_loss_from_moments, module=1)
    with pytest.raises(ValueError, match="loss_fn must be callable"):
        rmft.register_moments_form(plugin_apply, mse_moments, None)
