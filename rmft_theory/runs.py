"""Training runs from one config: any registered model on any registered environment.

A :class:`TrainRunConfig` names the model and environment by registry name, the method
(``"direct"``: an objective of THEORY §3; ``"filter"``: the regret filter of §4) and both
methods' settings. :func:`run_training` writes a self-describing run directory:

* ``config.json`` (the resolved config), ``result.json`` (metrics, timings, seeds, versions);
* ``curves.npz`` (per-step or per-iteration metrics);
* ``model/`` the trained parameters as a pickle-free checkpoint, which
  ``rmft evaluate --policy model:DIR`` and :func:`load_model_policy` read back.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rmft_theory.checkpoint import META_FILE, has_checkpoint, load_checkpoint, save_checkpoint
from rmft_theory.envs.gaussian import GaussianFOL
from rmft_theory.envs.processes import GaussianFOLEnv
from rmft_theory.envs.registry import ENVS, as_environment, is_gaussian_fol, make_env
from rmft_theory.io import (
    environment_info,
    json_differences,
    load_json,
    save_json,
    save_npz,
    to_jsonable,
)
from rmft_theory.keys import Seeds
from rmft_theory.models.heads import policy_head
from rmft_theory.models.registry import MODELS, check_causal, make_model
from rmft_theory.rmft import (
    FilterConfig,
    check_same_mesh,
    lsa_weight_metrics,
    resume_free_fields,
    run_filter,
)
from rmft_theory.rollout import model_outputs
from rmft_theory.spaces import project
from rmft_theory.theory import ftrl_weights
from rmft_theory.train import DirectTrainConfig, check_full_information, train_direct
from rmft_theory.validation import check_choice, is_builtin

METHODS = ("direct", "filter")


def _model_option_names(factory) -> set[str] | None:
    """The options ``factory(d, **options)`` accepts, or None when they cannot be listed."""
    if dataclasses.is_dataclass(factory):  # flax modules: 'parent' and 'name' are not options
        names = {f.name for f in dataclasses.fields(factory) if f.init}
        return names - {"d", "parent", "name"}
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL} - {"d"}


def check_registered(name: str, value: str, registry: dict) -> None:
    """A ValueError naming ``name`` unless ``value`` is registered, saying how plugins are."""
    if value not in registry:
        raise ValueError(
            f"{name} must be one of {sorted(registry)}, got {value!r} (one registered in your "
            "own module: import it first, or `rmft --import MODULE ...` on the command line)"
        )


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model and its constructor options.

    Construction checks the model name and the option names. The option values are checked
    by the model itself when :meth:`build` makes it for a reward dimension d, which
    :class:`TrainRunConfig` does on construction with its environment's d (a model may check
    an option against d, e.g. heads dividing d).
    """

    name: str = "lsa"
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        check_registered("model.name", self.name, MODELS)
        if not isinstance(self.options, dict):
            raise ValueError(f"model.options must be a table/mapping, got {self.options!r}")
        if "d" in self.options:
            raise ValueError("model.options cannot set 'd': the environment's d is used")
        allowed = _model_option_names(MODELS[self.name])
        if allowed is not None:
            unknown = sorted(set(self.options) - allowed)
            if unknown:
                raise ValueError(
                    f"model.options: unknown option(s) {unknown} for model {self.name!r}; "
                    f"allowed options are {sorted(allowed)}"
                )

    def build(self, d: int):
        """The flax module for reward dimension ``d``."""
        try:
            return make_model(self.name, d, **self.options)
        except TypeError as err:
            raise ValueError(f"model.options do not fit model {self.name!r}: {err}") from None
        except ValueError as err:
            raise ValueError(f"model.options: {err}") from None


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """A registered environment and its options (validated by building it)."""

    name: str = "gaussian-fol"
    options: dict = dataclasses.field(default_factory=lambda: {"d": 5, "horizon": 50})

    def __post_init__(self):
        check_registered("env.name", self.name, ENVS)
        self.build()

    def build(self):
        """The environment config."""
        try:
            return make_env(self.name, **self.options)
        except ValueError as err:
            raise ValueError(f"env.options: {err}") from None


@dataclasses.dataclass(frozen=True)
class TrainRunConfig:
    """One training run: model, environment, method and the method's settings."""

    method: str = "direct"
    seed: int = 0
    model: ModelSpec = dataclasses.field(default_factory=ModelSpec)
    env: EnvSpec = dataclasses.field(default_factory=EnvSpec)
    direct: DirectTrainConfig = dataclasses.field(default_factory=DirectTrainConfig)
    filter: FilterConfig = dataclasses.field(default_factory=FilterConfig)

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        env = self.env.build()
        self.model.build(env.d)
        if self.method == "direct":
            if env.feedback != "full":
                raise ValueError(
                    f"method 'direct' needs a full-information env, got {self.env.name!r}; "
                    "use method = 'filter'"
                )
            check_full_information(_plain(env), self.direct.antithetic)

    @property
    def space(self) -> tuple[str, float, float]:
        """(space, radius, temperature) of the trained policy."""
        if self.method == "direct":
            return "ball", self.direct.radius, 1.0
        f = self.filter
        return f.space, f.radius, f.temperature


def _plain(env):
    """The registry's ``gaussian-fol`` (:class:`GaussianFOLEnv`) as the plain :class:`GaussianFOL`
    the trainers take; any other environment, a subclass of either included, as it is (a
    plugin's subclass keeps its own fields and methods)."""
    if type(env) is GaussianFOLEnv:
        return GaussianFOL(
            **{f.name: getattr(env, f.name) for f in dataclasses.fields(GaussianFOL)}
        )
    return env


def run_training(config: TrainRunConfig, out: Path, quiet: bool = False, mesh=None) -> dict:
    """Train as ``config`` says and write the run directory ``out``; return the summary.

    ``mesh`` (:func:`rmft_theory.sharding.make_mesh`) runs each filter iteration over its
    devices (``method = "filter"`` on full-information environments only)."""
    out = Path(out)
    env = _plain(config.env.build())
    check_devices(config, env, mesh)
    model = config.model.build(env.d)
    seeds = Seeds.from_seed(config.seed)
    if not is_builtin(MODELS[config.model.name]):
        # A plugin model (the shipped ones are checked by the test suite): seconds, once. A
        # fixed key of its own: the check is not part of the run and takes none of its streams.
        check_causal(model, env.horizon, env.d, jax.random.key(0), f"model {config.model.name!r}")
    check_resumable_config(out, config, mesh)
    save_json(out / "config.json", config)
    lsa_gaussian = config.model.name == "lsa" and is_gaussian_fol(env)
    W_star = None
    if lsa_gaussian and env.mean_kind == "zero":
        W_star = ftrl_weights(env.cov_matrix, env.horizon, config.space[1])
    if config.method == "direct":
        metrics_fn = None
        if W_star is not None:
            metrics_fn = lsa_weight_metrics(W_star, env.reward_scale)
        result = train_direct(
            model,
            env,
            config.direct,
            seeds,
            metrics_fn=metrics_fn,
            quiet=quiet,
            checkpoint_dir=out / "checkpoint",
        )
        params, curves = result.params, result.metrics
        summary = {"final": {k: v[-1] for k, v in curves.items() if np.ndim(v[-1]) == 0}}
        timings = result.timings
    else:
        metrics_fn = lsa_weight_metrics(W_star, env.reward_scale) if W_star is not None else None
        result = run_filter(
            model,
            env,
            config.filter,
            seeds,
            metrics_fn=metrics_fn,
            checkpoint_dir=out / "checkpoint",
            quiet=quiet,
            mesh=mesh,
        )
        params, curves, timings = result.params, result.history, result.timings
        summary = {
            "final": {
                k: np.asarray(v)[-1] for k, v in curves.items() if np.ndim(np.asarray(v)[-1]) == 0
            },
            "base": result.base,
            "reference": {k: v for k, v in result.reference.items() if np.ndim(v) == 0},
        }
    # Both trainers report the whole run's timings: every step's run time, resumed sessions'
    # included, and the compile time of the session that compiled, which their checkpoints
    # record; checkpoints written before they did fall back on an earlier result.json.
    if timings.compile_s == 0.0 and (out / "result.json").exists():
        timings = timings._replace(
            compile_s=float(load_json(out / "result.json").get("compile_s") or 0.0)
        )
    save_npz(out / "curves.npz", **{k: np.asarray(v) for k, v in curves.items()})
    mix = config.filter.uniform_mix if config.method == "filter" else 0.0
    save_model(
        out,
        params,
        config.model,
        config.env,
        *config.space,
        uniform_mix=mix,
        simplex_policy=simplex_policy(config),
    )
    summary = {
        **summary,
        "W_star": W_star,
        "compile_s": timings.compile_s,
        "run_s": timings.run_s,
        "devices": 1 if mesh is None else int(mesh.size),
        "config": config,
        "seeds": seeds,
        "environment": environment_info(),
    }
    save_json(out / "result.json", summary)
    return to_jsonable(summary)


def check_devices(config: TrainRunConfig, env, mesh) -> None:
    """A mesh of several devices needs the filter on a full-information environment, and a
    task count its ``"tasks"`` axis divides; errors name ``devices``."""
    if mesh is None or mesh.size == 1:
        return
    n = int(mesh.size)
    if config.method != "filter":
        raise ValueError(f"devices={n} needs method 'filter', got {config.method!r}")
    if getattr(env, "feedback", "full") == "bandit":
        raise ValueError(
            f"devices={n} needs a full-information environment, got {config.env.name!r}"
        )
    tasks_axis = dict(mesh.shape).get("tasks", 1)
    if config.filter.tasks % tasks_axis:
        raise ValueError(
            f"devices={n}: filter.tasks must be a multiple of {tasks_axis}, "
            f"got {config.filter.tasks}"
        )


def _resume_settings(config_json: dict, method: str, free: tuple[str, ...]) -> dict:
    """The parts of a saved config that a training checkpoint of ``method`` must match: all
    but the other method's section and the filter's fields ``free``
    (:func:`rmft_theory.rmft.resume_free_fields`)."""
    settings = json.loads(json.dumps(config_json))
    settings.pop("direct" if method == "filter" else "filter", None)
    for name in free:
        settings.get("filter", {}).pop(name, None)
    return settings


def check_resumable_config(out: Path, config: TrainRunConfig, mesh=None) -> None:
    """Refuse to overwrite ``out/config.json`` when ``out`` holds a training checkpoint (filter
    or direct) that ``config`` cannot resume: one of a run with other settings, or with more
    finished filter iterations than ``config`` asks for (the checkpoint would refuse to resume
    anyway, after the file was rewritten to describe a run that never happened). The error
    names the settings that differ. A filter checkpoint must also have been written on a mesh
    of ``mesh``'s shape (:func:`rmft_theory.rmft.check_same_mesh`)."""
    out = Path(out)
    saved = out / "config.json"
    if not (saved.exists() and has_checkpoint(out / "checkpoint")):
        return
    free = resume_free_fields(config.filter)
    differ = json_differences(
        _resume_settings(load_json(saved), config.method, free),
        _resume_settings(to_jsonable(config), config.method, free),
    )
    if differ:
        raise ValueError(
            f"out {str(out)!r} holds a run with different settings ({', '.join(differ)}; its "
            "config.json and checkpoint); use another --out folder or delete it"
        )
    done = load_json(out / "checkpoint" / META_FILE).get("step", 0)
    if config.method == "filter" and done > config.filter.iterations:
        raise ValueError(
            f"filter.iterations={config.filter.iterations} is fewer than the {done} iterations "
            f"the run in {str(out)!r} has finished"
        )
    if config.method == "filter":
        check_same_mesh(out / "checkpoint", mesh)


#: How a saved model's outputs become policies on the simplex (:func:`save_model`).
SIMPLEX_POLICIES = ("softmax", "projection")


def save_model(
    out: Path,
    params,
    model: ModelSpec,
    env: EnvSpec,
    space: str,
    radius: float,
    temperature: float = 1.0,
    uniform_mix: float = 0.0,
    simplex_policy: str = "softmax",
) -> Path:
    """Save trained ``params`` as ``out/model`` (pickle-free), with what is needed to rebuild.

    ``simplex_policy`` is how the model's outputs ``g_t`` become policies on the simplex:
    ``"softmax"`` (``softmax(g/τ)``, sampled actions and cross-entropy) or ``"projection"``
    (``Proj_Δ(g)``, a filter trained with Gaussian or no noise, THEORY §4).
    """
    check_choice("simplex_policy", simplex_policy, SIMPLEX_POLICIES)
    built = env.build()
    save_checkpoint(
        Path(out) / "model",
        params,
        0,
        {
            "model": model,
            "env": env,
            "d": built.d,
            "horizon": built.horizon,
            "space": space,
            "radius": radius,
            "temperature": temperature,
            "uniform_mix": uniform_mix,
            "simplex_policy": simplex_policy,
        },
    )
    return Path(out) / "model"


def load_model(path: Path, d: int | None = None):
    """Rebuild a saved model: returns ``(module, params, meta)``; ``d`` defaults to the saved one.

    Models whose parameters depend on d (all but the arm-equivariant ones) must keep it.
    """
    model_dir = Path(path) / "model"
    if not (model_dir / "checkpoint.json").exists():
        raise ValueError(
            f"model path {str(path)!r} holds no saved model (no model/checkpoint.json)"
        )
    meta = load_json(model_dir / "checkpoint.json")
    spec = ModelSpec(**meta["model"])
    d = meta["d"] if d is None else d
    module = spec.build(d)
    template = module.init(jax.random.key(0), jnp.zeros((meta["horizon"], d)))["params"]
    try:
        params, _ = load_checkpoint(model_dir, template)
    except ValueError as err:
        why = (
            f"saved for d={meta['d']} cannot run with d={d}"
            if d != meta["d"]
            else "does not match the parameters saved under its name (was the model changed "
            "since, or is another model registered under this name?)"
        )
        raise ValueError(f"model {spec.name!r} {why}: {err}") from None
    return module, params, meta


def simplex_policy(config: TrainRunConfig) -> str:
    """How the run's model plays on the simplex (:func:`save_model`): ``"projection"`` for a
    filter on the simplex with Gaussian or no noise, which rolls out and is scored with
    ``Proj_Δ(g_t)``; ``"softmax"`` otherwise."""
    f = config.filter
    if config.method == "filter" and f.space == "simplex" and f.noise != "actions":
        return "projection"
    return "softmax"


def load_model_policy(path, env, space: str | None = None, mix: float | None = None):
    """A saved model as a policy for ``env`` (the ``model:PATH`` policy of ``rmft evaluate``).

    On full-information envs it plays ``policy_head(g_t)`` in the saved space; on the simplex
    ``Proj_Δ(g_t)`` instead where the model was trained that way (the saved ``simplex_policy``;
    models saved before it was recorded play ``softmax(g_t/τ)``). On bandits, whatever was saved,
    it samples ``a_t ~ (1 − γ) softmax(g_t/τ) + γ/d`` and feeds itself the importance-weighted
    estimates ``r̂_s = r_s e_{a_s}/p_s(a_s)`` (see :mod:`rmft_theory.bandit_rollout`); γ
    defaults to the saved filter's ``uniform_mix`` (0 for other runs).
    """
    from rmft_theory.bandit_rollout import BanditSampling, as_bandit_algorithm
    from rmft_theory.evaluate import FullInfoPolicy

    env = as_environment(env)
    module, params, meta = load_model(path, env.d)
    temperature = float(meta["temperature"])

    def apply_fn(p, rewards_TxD):
        return model_outputs(lambda q, r: module.apply({"params": q}, r), p, rewards_TxD)

    if env.feedback != "full":
        gamma = float(meta.get("uniform_mix", 0.0) if mix is None else mix)
        sampling = BanditSampling(temperature=temperature, mix=gamma)
        return as_bandit_algorithm(apply_fn, params, env.horizon, sampling)
    space = space or meta["space"]
    if space == "unconstrained":
        raise ValueError("space must be 'ball' or 'simplex' to evaluate a saved model's regret")
    radius = float(meta["radius"])

    projected = space == "simplex" and meta.get("simplex_policy", "softmax") == "projection"

    def policies(rewards_TxD):
        g_TxD = apply_fn(params, rewards_TxD)
        if projected:
            return jax.vmap(project, in_axes=(0, None, None))(g_TxD, "simplex", radius)
        return policy_head(g_TxD, space, radius, temperature)

    return FullInfoPolicy(policies, space, radius)
