"""A name → model-factory registry, so that configs and the command line choose models by name."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.validation import qualified_name, same_definition

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: register ``factory(d, **options) -> flax.linen.Module`` under ``name``.

    The module maps **one** (T, d) reward history to (T, d) floating-point outputs ``g_t``
    that use only the rewards before round t (causality: :func:`check_causal`); the trainers
    check the shape and dtype, and ``rmft train`` checks a plugin model's causality first. Names
    are unique, except that the same factory may register its name again
    (:func:`rmft_theory.validation.same_definition`: a re-run notebook cell or
    ``importlib.reload``).
    """

    def wrap(factory):
        old = MODELS.get(name)
        if old is not None and not same_definition(old, factory):
            raise ValueError(
                f"model name {name!r} is already registered (by {qualified_name(old)})"
            )
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


#: Rounds up to which :func:`check_causal` cuts at every round; longer horizons get five cuts.
CAUSAL_EVERY_CUT = 32


def causal_cuts(horizon: int) -> list[int]:
    """The rounds :func:`check_causal` redraws the rewards from: every round for horizons up to
    :data:`CAUSAL_EVERY_CUT`, else ``0, T/4, T/2, 3T/4`` and ``T − 1``."""
    if horizon <= CAUSAL_EVERY_CUT:
        return list(range(horizon))
    return sorted({0, horizon // 4, horizon // 2, 3 * horizon // 4, horizon - 1})


def check_causal(model: nn.Module, horizon: int, d: int, key, name: str = "model") -> None:
    """Raise a ValueError unless ``model``'s output ``g_t`` uses only the rewards before t.

    A model that sees ``R_t`` when it plays round t earns negative regret, silently. The check
    perturbs the parameters of a fresh initialisation by ``ε z`` (z standard normal; so that a
    zero initialisation cannot hide a dependence), then for each cut c of :func:`causal_cuts`
    redraws the rewards of rounds ``c..T−1`` and requires rows ``0..c`` of the outputs
    (0-indexed: row c is played at round c and may use the rows before it only) to stay within
    ``1e-5 (1 + max_i |g_{t,i}|)`` of their values, row by row. A causal model leaves them
    unchanged up to float rounding (masked terms are exact zeros in the shipped models; the
    same input at different batch positions differed by about 6e-8), while a leak of round t's
    rewards moves row t by O(|g_t|). ε is the first of 0.1, 0.01, 0.001 and 0 at which every
    output is finite (deep multiplicative models overflow at 0.1); non-finite outputs at every
    ε are an error of their own. One compiled program (initialisation and the model on every
    reward table at once) for all ε.
    """
    cuts = causal_cuts(horizon)

    @jax.jit
    def outputs(key, eps):
        key_init, key_params, key_r, key_new = jax.random.split(key, 4)
        params = model.init(key_init, jnp.zeros((horizon, d))).get("params", {})
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(key_params, len(leaves))
        params = treedef.unflatten(
            [
                p + (eps * jax.random.normal(k, jnp.shape(p))).astype(p.dtype)
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

    for eps in (0.1, 0.01, 0.001, 0.0):
        out = np.asarray(outputs(key, eps), np.float64)
        if np.all(np.isfinite(out)):
            break
    else:
        raise ValueError(f"{name} gives non-finite outputs at initialisation")
    g, moved = out[0], out[1:]
    tolerance_T = 1e-5 * (1.0 + np.max(np.abs(g), axis=-1))
    for cut, out_c in zip(cuts, moved, strict=True):
        change_T = np.max(np.abs(out_c[: cut + 1] - g[: cut + 1]), axis=-1)
        bad = np.flatnonzero(change_T > tolerance_T[: cut + 1])
        if bad.size:
            t = int(bad[-1])
            raise ValueError(
                f"{name} is not causal: its output at round {t} (0-indexed) changed by "
                f"{change_T[t]:.3g} when the rewards of rounds {cut}.. changed; g_t may use "
                "only the rewards before round t"
            )
