"""A name → model-factory registry, so that configs and the command line choose models by name."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: register ``factory(d, **options) -> flax.linen.Module`` under ``name``.

    The module maps **one** (T, d) reward history to (T, d) floating-point outputs ``g_t``
    that use only the rewards before round t (causality: :func:`check_causal`); the trainers
    check the shape and dtype, and ``rmft train`` checks a plugin model's causality first. Names
    are unique, except that the same factory (by module and qualified name) may register its
    name again, as re-running a notebook cell or ``importlib.reload`` does.
    """

    def wrap(factory):
        old = MODELS.get(name)
        if old is not None and _qualified(old) != _qualified(factory):
            raise ValueError(f"model name {name!r} is already registered (by {_qualified(old)})")
        MODELS[name] = factory
        return factory

    return wrap


def _qualified(factory) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"


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


def check_causal(model: nn.Module, horizon: int, d: int, key, name: str = "model") -> None:
    """Raise a ValueError unless ``model``'s output ``g_t`` uses only the rewards before t.

    A model that sees ``R_t`` when it plays round t earns negative regret, silently. The check
    perturbs the parameters of a fresh initialisation (so that a zero initialisation cannot
    hide a dependence), then, for cuts ``c ∈ {0, ⌊T/2⌋, T − 1}``, redraws the rewards of
    rounds ``c..T−1`` and requires rows ``0..c`` of the outputs (0-indexed: row c is played
    at round c and may use rows before it only) to move by at most ``1e-5 (1 + max|g|)``: a
    causal model leaves them unchanged up to float rounding (masked terms are exact zeros in
    the shipped models), while a leak of round c's rewards moves them by O(|g|). One compiled
    call (initialisation and the model on all the reward tables at once).
    """
    cuts = sorted({0, horizon // 2, horizon - 1})

    @jax.jit
    def outputs(key):
        key_init, key_params, key_r, key_new = jax.random.split(key, 4)
        params = model.init(key_init, jnp.zeros((horizon, d)))["params"]
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(key_params, len(leaves))
        params = treedef.unflatten(
            [
                p + 0.1 * jax.random.normal(k, jnp.shape(p), p.dtype)
                if jnp.issubdtype(jnp.result_type(p), jnp.floating)
                else p
                for p, k in zip(leaves, keys, strict=True)
            ]
        )
        rewards = jax.random.normal(key_r, (horizon, d))
        fresh = jax.random.normal(key_new, (horizon, d))
        rows = jnp.arange(horizon)[:, None]
        tables = jnp.stack([rewards] + [jnp.where(rows >= c, fresh, rewards) for c in cuts])
        return jax.vmap(lambda r: model.apply({"params": params}, r))(tables)

    g, *moved = jnp.asarray(outputs(key))
    scale = 1.0 + float(jnp.max(jnp.abs(g)))
    for cut, out in zip(cuts, moved, strict=True):
        change = float(jnp.max(jnp.abs(out[: cut + 1] - g[: cut + 1])))
        if not change <= 1e-5 * scale:
            raise ValueError(
                f"{name} is not causal: its output at round {cut} (0-indexed) changed by "
                f"{change:.3g} when the rewards of rounds {cut}.. changed; g_t may use only "
                "the rewards before round t"
            )
