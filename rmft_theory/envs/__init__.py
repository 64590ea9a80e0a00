"""Online-learning and bandit environments."""

from rmft_theory.envs.bandits import (
    BernoulliBandit,
    GaussianBandit,
    LinearTrendBandit,
    SineBandit,
    SwitchingBandit,
)
from rmft_theory.envs.gaussian import GaussianFOL, sample_rewards, sample_task
from rmft_theory.envs.processes import (
    AlternatingFOL,
    BernoulliFOL,
    GaussianFOLEnv,
    LinearTrendFOL,
    SineFOL,
)
from rmft_theory.envs.registry import (
    ENVS,
    Environment,
    as_environment,
    check_environment,
    env_name,
    is_gaussian_fol,
    make_env,
)

__all__ = [
    "ENVS",
    "AlternatingFOL",
    "BernoulliBandit",
    "BernoulliFOL",
    "Environment",
    "GaussianBandit",
    "GaussianFOL",
    "GaussianFOLEnv",
    "LinearTrendBandit",
    "LinearTrendFOL",
    "SineBandit",
    "SineFOL",
    "SwitchingBandit",
    "as_environment",
    "check_environment",
    "env_name",
    "is_gaussian_fol",
    "make_env",
    "sample_rewards",
    "sample_task",
]
