"""rmft-theory: a JAX testbed for the theory of Iterative Regret-Minimisation Fine-Tuning."""

__version__ = "0.1.0"
