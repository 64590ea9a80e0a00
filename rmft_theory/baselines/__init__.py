"""Classical baselines as pure functions of a history."""

from rmft_theory.baselines.bandits import (
    BanditAlgorithm,
    BanditTrace,
    discounted_thompson,
    epsilon_greedy,
    exp3,
    exp3_gamma,
    exp3_regret_bound,
    run_bandit,
    sliding_window_ucb,
    thompson_bernoulli,
    thompson_gaussian,
    ucb1,
    ucb1_regret_bound,
    uniform_random,
)
from rmft_theory.baselines.online import (
    ftl_policies,
    ftrl_policies,
    hedge_policies,
    prefix_sums,
    uniform_policies,
    zero_policies,
)

__all__ = [
    "BanditAlgorithm",
    "BanditTrace",
    "discounted_thompson",
    "epsilon_greedy",
    "exp3",
    "exp3_gamma",
    "exp3_regret_bound",
    "ftl_policies",
    "ftrl_policies",
    "hedge_policies",
    "prefix_sums",
    "run_bandit",
    "sliding_window_ucb",
    "thompson_bernoulli",
    "thompson_gaussian",
    "ucb1",
    "ucb1_regret_bound",
    "uniform_policies",
    "uniform_random",
    "zero_policies",
]
