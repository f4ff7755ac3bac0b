"""Optuna samplers and pruners built by name from the config, with their options checked."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
    ThresholdPruner,
)
from optuna.samplers import (
    BaseSampler,
    CmaEsSampler,
    GridSampler,
    QMCSampler,
    RandomSampler,
    TPESampler,
)

from hpstudy.study.errors import UserError, did_you_mean, quote, shorten

if TYPE_CHECKING:
    from hpstudy.study.config import PrunerConfig, StudyConfig

SAMPLER_CLASSES: Mapping[str, type[BaseSampler]] = {
    "tpe": TPESampler,
    "random": RandomSampler,
    "grid": GridSampler,
    "cmaes": CmaEsSampler,
    "qmc": QMCSampler,
}
PRUNER_CLASSES: Mapping[str, type[BasePruner]] = {
    "median": MedianPruner,
    "percentile": PercentilePruner,
    "successive_halving": SuccessiveHalvingPruner,
    "hyperband": HyperbandPruner,
    "threshold": ThresholdPruner,
    "none": NopPruner,
}
#: hpstudy's values for the options a config leaves out: the median pruner as benchmark 2 tuned it
#: (bench/README.md: it saves over half the epochs and still wins at equal compute); a percentile.
MAX_OPTION_INT = 2**31 - 1
PRUNER_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "median": {"n_startup_trials": 3, "n_warmup_steps": 5},
    "percentile": {"percentile": 25.0},
}


def build_sampler(cfg: StudyConfig, *, seed: int | None) -> BaseSampler:
    """The sampler the config names, seeded with ``seed``; the grid sampler gets the space's grid."""
    name = cfg.study.sampler.name
    options = dict(cfg.study.sampler.options)
    if "seed" in options:
        raise UserError("study.sampler.options.seed: set study.seed instead (or --seed N)")
    if name != "grid":
        return _construct(SAMPLER_CLASSES[name], options, where="study.sampler", seed=seed)
    if "search_space" in options:
        raise UserError("study.sampler.options.search_space: the grid comes from search_space")
    grid = cfg.search_space.grid(per_layer_units=cfg.model.per_layer_units)
    if not grid:
        raise UserError("the grid sampler needs at least one searched parameter in search_space")
    return _construct(SAMPLER_CLASSES[name], options, where="study.sampler", seed=seed, search_space=grid)


def build_pruner(pruner_cfg: PrunerConfig) -> BasePruner:
    """The pruner the config names, with its options (and hpstudy's defaults where Optuna has none)."""
    name = pruner_cfg.name
    options = {**PRUNER_DEFAULTS.get(name, {}), **pruner_cfg.options}
    if name == "threshold" and "lower" not in options and "upper" not in options:
        raise UserError(
            "study.pruner: the threshold pruner needs a bound, "
            "e.g. --set study.pruner.options.upper=2.5"
        )
    return _construct(PRUNER_CLASSES[name], options, where="study.pruner")


#: Numeric options that Optuna's constructors take unchecked, where a value out of these bounds
#: fails only later, inside a trial (``n_ei_candidates: 0``, ``popsize: 0``, ``max_resource: 0``),
#: or allocates without end: (class, option) -> (least, most).
OPTION_BOUNDS: Mapping[tuple[str, str], tuple[float, float]] = {
    ("TPESampler", "n_startup_trials"): (0, MAX_OPTION_INT),
    ("TPESampler", "n_ei_candidates"): (1, 10_000),
    ("TPESampler", "prior_weight"): (0.0, 1e6),
    ("CmaEsSampler", "n_startup_trials"): (0, MAX_OPTION_INT),
    ("CmaEsSampler", "sigma0"): (1e-12, 1e6),
    ("CmaEsSampler", "popsize"): (1, 10_000),
    ("HyperbandPruner", "min_resource"): (1, MAX_OPTION_INT),
    ("HyperbandPruner", "max_resource"): (1, MAX_OPTION_INT),
    ("HyperbandPruner", "reduction_factor"): (2, MAX_OPTION_INT),
    ("HyperbandPruner", "bootstrap_count"): (0, MAX_OPTION_INT),
}
#: Options a config cannot give, and why (besides those Optuna types as Python objects).
NOT_FROM_A_CONFIG: Mapping[str, str] = {
    "gamma": "TPE's gamma is a Python function of the number of trials, which a config cannot give; leave it out "
             "(Optuna's default takes the best 10 % of the trials, at most 25)",
    "weights": "TPE's weights is a Python function, which a config cannot give; leave it out",
    "restart_strategy": "Optuna ignores it since version 4.4; leave it out",
    "inc_popsize": "Optuna ignores it since version 4.4; leave it out",
}
_SCALARS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a name", "None": "null"}


def _construct(factory: Callable[..., Any], options: dict[str, Any], *, where: str, **fixed: Any) -> Any:
    """``factory(**options, **fixed)``, every option checked first; an error names the option and the fix."""
    parameters = {name: p for name, p in inspect.signature(factory).parameters.items() if name != "self"}
    for key, value in options.items():
        if key not in parameters or key in fixed:
            raise UserError(
                f"{where}.options: unknown option {quote(key)} for {factory.__name__}"
                f"{did_you_mean(str(key), _settable(parameters, exclude=fixed))}"
            )
        _check_option(factory.__name__, key, value, parameters[key], where=f"{where}.options.{key}")
    kwargs = {**options, **{k: v for k, v in fixed.items() if k in parameters}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factory(**kwargs)
    except (TypeError, ValueError) as exc:
        text = shorten(str(exc), limit=160)
        named = next((key for key in options if key in text), None)
        raise UserError(f"{where}.options{'.' + named if named else ''}: {text}") from None


def _settable(parameters: Mapping[str, inspect.Parameter], *, exclude: Mapping[str, Any]) -> list[str]:
    """The options of ``parameters`` that a config may give."""
    return [name for name, parameter in parameters.items()
            if name not in exclude and name not in NOT_FROM_A_CONFIG and _scalar_kinds(parameter)]


def _check_option(owner: str, key: str, value: Any, parameter: inspect.Parameter, *, where: str) -> None:
    """Refuse an option whose value is not of a type its Optuna parameter takes, or out of its bounds."""
    if key in NOT_FROM_A_CONFIG:
        raise UserError(f"{where}: {NOT_FROM_A_CONFIG[key]}")
    kinds = _scalar_kinds(parameter)
    if not kinds:
        raise UserError(f"{where}: {owner} takes a Python object here, which a config cannot give; leave it out")
    if _kind_of(value) not in kinds:
        wanted = " or ".join(_SCALARS[kind] for kind in kinds if kind != "None" and (kind, "float") != ("int", kinds[0]))
        raise UserError(f"{where}: must be {wanted} (got {quote(value)})")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        least, most = OPTION_BOUNDS.get((owner, key), (-MAX_OPTION_INT, MAX_OPTION_INT))
        if not least <= value <= most:
            raise UserError(f"{where}: must be from {least} to {most} (got {quote(value)})")


def _kind_of(value: Any) -> str | None:
    """The scalar kind of a config value as ``_SCALARS`` names it; a whole float counts as a number only."""
    if value is None:
        return "None"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    for kind, python_type in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if isinstance(value, python_type):
            return kind
    return None


def _scalar_kinds(parameter: inspect.Parameter) -> tuple[str, ...]:
    """The scalar kinds (``_SCALARS``) an Optuna parameter takes, read from its annotation; empty
    when it takes anything else (a function, a sampler, a mapping), which a config cannot give.
    A float parameter takes ints too."""
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        annotation = type(parameter.default).__name__
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    kinds = tuple(part.strip() for part in text.split("|"))
    if not all(kind in _SCALARS for kind in kinds):
        return ()
    return (*kinds, "int") if "float" in kinds and "int" not in kinds else kinds
