"""Optuna samplers and pruners built by name from the config, with their options checked."""

from __future__ import annotations

import inspect
import re
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

from hpstudy.study.errors import UserError, did_you_mean

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
    if name == "grid":
        if "search_space" in options:
            raise UserError("study.sampler.options.search_space: the grid comes from search_space")
        grid = cfg.search_space.grid(per_layer_units=cfg.model.per_layer_units)
        if not grid:
            raise UserError("the grid sampler needs at least one searched parameter in search_space")
        options["search_space"] = grid
    return _construct(SAMPLER_CLASSES[name], options, where="study.sampler", seed=seed)


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


def _construct(factory: Callable[..., Any], options: dict[str, Any], *, where: str, **fixed: Any) -> Any:
    accepted = set(inspect.signature(factory).parameters) - {"self"}
    for key in options:
        if key not in accepted or key in fixed:
            raise UserError(
                f"{where}.options: unknown option '{key}' for {factory.__name__}"
                f"{did_you_mean(key, accepted - set(fixed))}"
            )
    kwargs = {**options, **{k: v for k, v in fixed.items() if k in accepted}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factory(**kwargs)
    except (TypeError, ValueError) as exc:
        text = re.sub(r"\s+", " ", str(exc)).strip()
        raise UserError(f"{where}.options: {text}") from None
