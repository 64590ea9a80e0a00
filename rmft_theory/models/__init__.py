"""Policy models. Each maps one (T, d) reward history to (T, d) pre-head outputs ``g_t``."""

from rmft_theory.models.equivariant import (
    EquivariantLinearAttention,
    EquivariantTransformer,
    arm_features,
)
from rmft_theory.models.heads import action_logits, ball_head, policy_head, simplex_head
from rmft_theory.models.linear_attention import (
    LinearAttention,
    causal_linear_attention,
    causal_linear_attention_masked,
    params_from_lsa,
)
from rmft_theory.models.lsa import (
    Invariants,
    LinearSelfAttention,
    invariants,
    lsa_apply,
    lsa_apply_quadratic,
    params_from_weights,
)
from rmft_theory.models.registry import MODELS, check_causal, make_model, register_model
from rmft_theory.models.transformer import CausalTransformer, causal_softmax_attention

__all__ = [
    "MODELS",
    "CausalTransformer",
    "EquivariantLinearAttention",
    "EquivariantTransformer",
    "Invariants",
    "LinearAttention",
    "LinearSelfAttention",
    "action_logits",
    "arm_features",
    "ball_head",
    "causal_linear_attention",
    "causal_linear_attention_masked",
    "causal_softmax_attention",
    "check_causal",
    "invariants",
    "lsa_apply",
    "lsa_apply_quadratic",
    "make_model",
    "params_from_lsa",
    "params_from_weights",
    "policy_head",
    "register_model",
    "simplex_head",
]
