"""Classical baselines as pure functions of a history."""

from rmft_theory.baselines.online import (
    ftl_policies,
    ftrl_policies,
    hedge_policies,
    prefix_sums,
    uniform_policies,
    zero_policies,
)

__all__ = [
    "ftl_policies",
    "ftrl_policies",
    "hedge_policies",
    "prefix_sums",
    "uniform_policies",
    "zero_policies",
]
