"""Exact Gamma and Beta draws (rmft_theory.sampling) against scipy's distributions.

Goodness of fit is a Kolmogorov–Smirnov test with fixed keys, so each check is deterministic.
Threshold: p > 1e-4. For a correct sampler and fresh keys, each check would fail with
probability 1e-4 (about 2e-3 for the whole file). The power check shows that a 5% error in the
shape is rejected at this sample size.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

from rmft_theory import sampling

N = 50_000
P_MIN = 1e-4


def ks_pvalue(samples, dist) -> float:
    return float(st.kstest(np.asarray(samples, np.float64), dist.cdf).pvalue)


@pytest.mark.parametrize("proposals", [1, 2])
@pytest.mark.parametrize("a", [0.05, 0.5, 1.0, 2.5, 40.0, 1e4])
def test_log_gamma_follows_the_log_gamma_distribution(a, proposals):
    # Compared in log space: Gamma(0.05) draws underflow float32 below 1e-45 about 0.6% of
    # the time, their logs do not.
    key = jax.random.key(int(a * 100) + proposals)
    x = sampling.log_gamma(key, jnp.full((N,), a), proposals)
    assert ks_pvalue(x, st.loggamma(a)) > P_MIN


def test_the_fit_test_rejects_a_five_percent_shape_error():
    x = sampling.log_gamma(jax.random.key(7), jnp.full((N,), 2.5 * 1.05))
    assert ks_pvalue(x, st.loggamma(2.5)) < P_MIN


@pytest.mark.parametrize("a, b", [(0.5, 0.5), (1.0, 1.0), (3.0, 7.0), (200.0, 5.0)])
def test_beta_follows_the_beta_distribution(a, b):
    x = sampling.beta(jax.random.key(int(a + 10 * b)), jnp.full((N,), a), b)
    assert ks_pvalue(x, st.beta(a, b)) > P_MIN


@pytest.mark.parametrize("a", [0.3, 1.0, 5.0])
def test_gamma_mean_and_variance_match_theory(a):
    # Gamma(a, 1) has mean a and variance a; the fourth central moment is 3a² + 6a, so the
    # sample variance has standard error √((2a² + 6a)/N). Each check allows 5 standard errors
    # (a correct sampler fails one with probability ~6e-7); a 5% shape error is 25 or more SEs
    # off in the mean for every a here.
    x = np.asarray(sampling.gamma(jax.random.key(int(a * 10) + 20), jnp.full((N,), a)), np.float64)
    assert abs(x.mean() - a) < 5 * np.sqrt(a / N)
    assert abs(x.var(ddof=1) - a) < 5 * np.sqrt((2 * a * a + 6 * a) / N)


def test_beta_broadcasts_like_explicit_arrays():
    # A scalar b is broadcast before the draw, so it gives exactly the draws of the full array.
    key = jax.random.key(3)
    a = jnp.array([0.3, 1.0, 5.0])
    got = sampling.beta(key, a, 2.0)
    assert got.shape == (3,)
    np.testing.assert_array_equal(got, sampling.beta(key, a, jnp.full((3,), 2.0)))


def test_marsaglia_tsang_accepts_at_least_95_percent_of_proposals_at_shape_one():
    # The acceptance probability is smallest at a = 1, where it is 0.9514 (Marsaglia & Tsang
    # 2000). 4·10⁵ proposals: standard error 3.4e-4; the check allows 5 of them.
    _, single, _ = sampling._propose(jax.random.key(1), jnp.ones((8 * N,)), 1)
    rate = float(jnp.mean(single))
    assert abs(rate - 0.9514) < 5 * np.sqrt(0.9514 * 0.0486 / (8 * N))


def test_same_key_same_draws_other_key_other_draws():
    a = jnp.full((100,), 2.0)
    first = sampling.gamma(jax.random.key(4), a)
    np.testing.assert_array_equal(first, sampling.gamma(jax.random.key(4), a))
    assert not np.array_equal(first, sampling.gamma(jax.random.key(5), a))


def test_invalid_shapes_give_nan_and_terminate():
    out = sampling.gamma(jax.random.key(0), jnp.array([0.0, -1.0, jnp.nan, jnp.inf, 2.0]))
    assert np.isnan(out[:4]).all() and np.isfinite(out[4])
    assert np.isnan(sampling.beta(jax.random.key(0), jnp.array([1.0, 0.0]), 1.0)[1])


def test_tiny_shapes_give_finite_beta_draws():
    # Both gammas can underflow to 0 in float32; in log space the ratio stays defined.
    x = sampling.beta(jax.random.key(0), jnp.full((1000,), 0.01), 0.01)
    assert np.isfinite(x).all() and ((x >= 0) & (x <= 1)).all()


def test_bad_proposals_name_the_parameter():
    with pytest.raises(ValueError, match="proposals"):
        sampling.gamma(jax.random.key(0), jnp.ones(3), 0)


def test_works_under_jit_and_vmap():
    keys = jax.random.split(jax.random.key(0), 4)
    out = jax.jit(jax.vmap(lambda k: sampling.beta(k, jnp.array([1.0, 2.0]), 3.0)))(keys)
    assert out.shape == (4, 2) and np.isfinite(out).all()


def test_later_rounds_use_keys_unrelated_to_earlier_rounds_bits(monkeypatch):
    # With partitionable threefry, bits(k)[i] is the XOR of the two words of the block
    # threefry(k, counter i), and fold_in(k, i) is that same block as a key. So no round may
    # use a key whose words, or their XOR, appear among the bits another round drew (as
    # fold_in(key, r) next to bits(key) did), and the caller's key draws no bits itself.
    # One proposal for 2000 shape-1 elements: all accept at once with probability 0.95^2000,
    # so several rounds run. disable_jit runs the while_loop in Python to record every round.
    draws = []
    bits = jax.random.bits

    def recording_bits(key, *args, **kwargs):
        out = bits(key, *args, **kwargs)
        draws.append((np.asarray(jax.random.key_data(key)), np.asarray(out).ravel()))
        return out

    monkeypatch.setattr(jax.random, "bits", recording_bits)
    key = jax.random.key(0)
    with jax.disable_jit():
        sampling.log_gamma(key, jnp.ones((2000,)), 1)
    assert len(draws) >= 3
    caller = np.asarray(jax.random.key_data(key))
    for i, (data_i, _) in enumerate(draws):
        assert not np.array_equal(data_i, caller), f"round {i} draws from the caller's key"
        for j, (_, bits_j) in enumerate(draws):
            if i != j:
                material = [data_i[0], data_i[1], data_i[0] ^ data_i[1]]
                assert not np.isin(material, bits_j).any(), f"round {i} key in round {j} bits"
