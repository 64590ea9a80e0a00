"""A name → model-factory registry, so that configs and the command line choose models by name."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: register ``factory(d, **options) -> flax.linen.Module`` under ``name``."""

    def wrap(factory):
        if name in MODELS:
            raise ValueError(f"model name {name!r} is already registered")
        MODELS[name] = factory
        return factory

    return wrap


def make_model(name: str, d: int, **options) -> nn.Module:
    """Build the registered model ``name`` for reward dimension ``d``."""
    if name not in MODELS:
        raise ValueError(
            f"model must be one of {sorted(MODELS)}, got {name!r} (one registered in your "
            "own module: import it first, or `rmft --import MODULE ...` on the command line)"
        )
    return MODELS[name](d=d, **options)


def _register_builtin():
    from rmft_theory.models.equivariant import EquivariantLinearAttention, EquivariantTransformer
    from rmft_theory.models.linear_attention import LinearAttention
    from rmft_theory.models.lsa import LinearSelfAttention
    from rmft_theory.models.transformer import CausalTransformer

    register_model("lsa")(LinearSelfAttention)
    register_model("linear-attention")(LinearAttention)
    register_model("transformer")(CausalTransformer)
    register_model("equivariant-transformer")(EquivariantTransformer)
    register_model("equivariant-linear-attention")(EquivariantLinearAttention)


_register_builtin()
