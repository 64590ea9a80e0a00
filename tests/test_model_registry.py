"""The model registry: registration, and the causality check run before training."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from rmft_theory.models import MODELS, check_causal, make_model, register_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_is_causal(name):
    check_causal(make_model(name, 3), 7, 3, jax.random.key(0), name)


class Peeking(nn.Module):
    """Uses R_t at round t (the inclusive prefix sum): it would earn negative regret."""

    d: int

    @nn.compact
    def __call__(self, rewards_TxD):
        eta = self.param("eta", nn.initializers.zeros, (self.d,))
        return jnp.cumsum(rewards_TxD, 0) * eta[None, :]


class LastRoundOnly(nn.Module):
    """Causal except at the last round, which sees the whole sequence: the T − 1 cut finds it."""

    d: int

    @nn.compact
    def __call__(self, rewards_TxD):
        eta = self.param("eta", nn.initializers.zeros, (self.d,))
        past = jnp.cumsum(rewards_TxD, 0) - rewards_TxD
        return past.at[-1].add(rewards_TxD[-1]) * eta[None, :]


@pytest.mark.parametrize("module, round_", [(Peeking, 0), (LastRoundOnly, 6)])
def test_a_model_that_sees_the_current_round_is_refused(module, round_):
    # Zero-initialised on purpose: the check perturbs the parameters, so a zero init hides
    # nothing.
    with pytest.raises(ValueError, match=rf"^peek is not causal: its output at round {round_} "):
        check_causal(module(d=3), 7, 3, jax.random.key(0), "peek")


def test_registration_names_clashes_but_accepts_the_same_factory_again(monkeypatch):
    monkeypatch.setattr("rmft_theory.models.registry.MODELS", dict(MODELS))
    from rmft_theory.models import registry

    register_model("peek")(Peeking)
    register_model("peek")(Peeking)  # a re-run notebook cell or importlib.reload
    assert registry.MODELS["peek"] is Peeking
    with pytest.raises(ValueError, match=r"model name 'peek' is already registered \(by "):
        register_model("peek")(LastRoundOnly)


def test_rmft_train_refuses_a_plugin_model_that_is_not_causal(tmp_path, monkeypatch):
    from rmft_theory.config import load
    from rmft_theory.runs import TrainRunConfig, run_training

    monkeypatch.setitem(MODELS, "peek", Peeking)
    config = load(TrainRunConfig, None, ["model.name=peek", 'env.options={"d": 2, "horizon": 6}'])
    with pytest.raises(ValueError, match=r"^model 'peek' is not causal: its output at round 0 "):
        run_training(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "checkpoint").exists()
