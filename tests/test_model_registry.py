"""The model registry: registration, and the causality check run before training."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from rmft_theory.models import MODELS, check_causal, make_model, register_model
from rmft_theory.models.registry import causal_cuts
from rmft_theory.validation import same_definition


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_is_causal(name):
    # T = 7: the check cuts at every round (causal_cuts).
    assert causal_cuts(7) == list(range(7))
    check_causal(make_model(name, 3), 7, 3, jax.random.key(0), name)


def test_a_deep_model_whose_perturbed_outputs_overflow_is_still_checked():
    # Four linear-attention layers multiply: parameters perturbed by 0.1 overflowed float32 at
    # T = 200, which once read as "not causal"; the check now takes a smaller perturbation.
    check_causal(make_model("linear-attention", 3, depth=4), 200, 3, jax.random.key(0))
    assert causal_cuts(200) == [0, 50, 100, 150, 199]


class NonFinite(nn.Module):
    d: int

    @nn.compact
    def __call__(self, rewards_TxD):
        return jnp.log(-jnp.abs(rewards_TxD) - 1.0)  # NaN for every input


def test_non_finite_outputs_are_their_own_error():
    with pytest.raises(ValueError, match=r"^nan gives non-finite outputs at initialisation$"):
        check_causal(NonFinite(d=2), 5, 2, jax.random.key(0), "nan")


class Peeking(nn.Module):
    """Uses R_t at round t (the inclusive prefix sum): it would earn negative regret."""

    d: int

    @nn.compact
    def __call__(self, rewards_TxD):
        eta = self.param("eta", nn.initializers.zeros, (self.d,))
        return jnp.cumsum(rewards_TxD, 0) * eta[None, :]


class LeakAt(nn.Module):
    """Causal except at round ``leak``, which also sees R_leak: only a cut at that round (or
    before it, for rows up to it) finds it."""

    d: int
    leak: int = 3

    @nn.compact
    def __call__(self, rewards_TxD):
        eta = self.param("eta", nn.initializers.zeros, (self.d,))
        past = jnp.cumsum(rewards_TxD, 0) - rewards_TxD
        return past.at[self.leak].add(rewards_TxD[self.leak]) * eta[None, :]


@pytest.mark.parametrize(
    "module, round_", [(Peeking(d=3), 0), (LeakAt(d=3, leak=6), 6), (LeakAt(d=3, leak=3), 3)]
)
def test_a_model_that_sees_the_current_round_is_refused(module, round_):
    # Zero-initialised on purpose: the check perturbs the parameters, so a zero init hides
    # nothing. The last round and a middle one: every round is a cut at T = 7.
    with pytest.raises(ValueError, match=rf"^peek is not causal: its output at round {round_} "):
        check_causal(module, 7, 3, jax.random.key(0), "peek")


def test_two_lambdas_of_one_module_are_not_the_same_definition():
    first, second = (lambda d: Peeking(d=d)), (lambda d: Peeking(d=d))
    assert not same_definition(first, second) and same_definition(first, first)
    assert same_definition(Peeking, Peeking)


def test_registration_names_clashes_but_accepts_the_same_factory_again(monkeypatch):
    monkeypatch.setattr("rmft_theory.models.registry.MODELS", dict(MODELS))
    from rmft_theory.models import registry

    register_model("peek")(Peeking)
    register_model("peek")(Peeking)  # a re-run notebook cell or importlib.reload
    assert registry.MODELS["peek"] is Peeking
    with pytest.raises(ValueError, match=r"model name 'peek' is already registered \(by "):
        register_model("peek")(LeakAt)


def test_rmft_train_refuses_a_plugin_model_that_is_not_causal(tmp_path, monkeypatch):
    from rmft_theory.config import load
    from rmft_theory.runs import TrainRunConfig, run_training

    monkeypatch.setitem(MODELS, "peek", Peeking)
    config = load(TrainRunConfig, None, ["model.name=peek", 'env.options={"d": 2, "horizon": 6}'])
    with pytest.raises(ValueError, match=r"^model 'peek' is not causal: its output at round 0 "):
        run_training(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "checkpoint").exists()
