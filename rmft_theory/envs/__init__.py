"""Online-learning and bandit environments."""

from rmft_theory.envs.gaussian import GaussianFOL, sample_rewards, sample_task

__all__ = ["GaussianFOL", "sample_rewards", "sample_task"]
