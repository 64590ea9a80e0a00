"""Policy models. Each maps one (T, d) reward history to (T, d) pre-head outputs ``g_t``."""

from rmft_theory.models.lsa import (
    Invariants,
    LinearSelfAttention,
    invariants,
    lsa_apply,
    lsa_apply_quadratic,
    params_from_weights,
)
from rmft_theory.models.registry import MODELS, make_model, register_model

__all__ = [
    "MODELS",
    "Invariants",
    "LinearSelfAttention",
    "invariants",
    "lsa_apply",
    "lsa_apply_quadratic",
    "make_model",
    "params_from_weights",
    "register_model",
]
