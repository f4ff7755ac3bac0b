"""`hpstudy compare`: the same search space run with several samplers and seeds, one study each,
so that one report can answer "grid, random or Bayesian?" with data (best so far against trials
and wall time, with bands over the seeds)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hpstudy.storage.stored_config import first_difference, stored_config
from hpstudy.storage.studies import find_study
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study.config import StudyConfig, load_config, parse_override
from hpstudy.study.errors import UserError
from hpstudy.study.optuna_parts import SAMPLER_CLASSES
from hpstudy.study.runner import RunResult, run_study


@dataclass(frozen=True)
class PlannedStudy:
    """One study of a comparison: a sampler and a seed on the shared space."""

    sampler: str
    seed: int
    cfg: StudyConfig


#: Keys each study of a comparison sets itself, with the option that sets them.
_SET_BY_COMPARE = {
    "study.name": "compare names each study <preset>-<sampler>-s<seed>",
    "study.seed": "compare seeds the studies 0 .. R-1 itself; use --repeats R",
    "study.sampler": "compare gives each study its sampler; use --samplers",
    "storage": "use --storage",
}


def plan_comparison(
    preset: str,
    *,
    samplers: Sequence[str],
    repeats: int,
    storage: str,
    n_trials: int | None = None,
    quick: bool = False,
    overrides: Sequence[str] = (),
) -> list[PlannedStudy]:
    """One config per sampler and seed, all validated before anything runs. Every study gets the
    same number of trials: ``n_trials``, else the preset's (after ``overrides``; a grid preset's is
    its grid), so no sampler is compared on more trials than another. Study names are
    ``<preset>-<sampler>-s<seed>`` (``-quick`` added for the smoke-run size, which then never blocks
    the full comparison), so a second run continues the same studies."""
    if not samplers:
        raise UserError("--samplers names no sampler; e.g. --samplers grid,random,tpe")
    for name in samplers:
        if name not in SAMPLER_CLASSES:
            raise UserError(f"--samplers: unknown sampler '{name}'; choose from {', '.join(SAMPLER_CLASSES)}")
    if repeats < 1:
        raise UserError(f"--repeats must be at least 1 (got {repeats})")
    for override in overrides:
        key = parse_override(override)[0]
        for taken, hint in _SET_BY_COMPARE.items():
            if key == taken or key.startswith(f"{taken}.") or taken.startswith(f"{key}."):
                raise UserError(f"--set {key}: {hint}")
    shared_trials = n_trials if n_trials is not None else load_config(
        preset=preset, overrides=overrides, quick=quick).study.n_trials
    plans = []
    for sampler in samplers:
        for seed in range(repeats):
            values = {"storage": storage, "study.name": f"{preset}-{sampler}-s{seed}{'-quick' if quick else ''}",
                      "study.seed": seed, "study.sampler": {"name": sampler}, "study.n_trials": shared_trials}
            plans.append(PlannedStudy(sampler, seed, load_config(preset=preset, overrides=overrides, values=values,
                                                                 quick=quick)))
    return plans


def check_comparison(plans: Sequence[PlannedStudy]) -> None:
    """Refuse, before any study runs, a comparison one of whose studies exists with another config
    (a continued comparison must run as it was started)."""
    for plan in plans:
        existing = find_study(parse_storage_url(plan.cfg.storage), plan.cfg.study.name)
        if existing is None:
            continue
        difference = first_difference(stored_config(existing).identity(), plan.cfg.identity())
        if difference:
            raise UserError(
                f"study '{plan.cfg.study.name}' of this comparison exists with a different config ({difference}); "
                "run compare with the options it was started with, another --storage, or "
                f"`hpstudy delete --study-name {plan.cfg.study.name}` first"
            )


def run_comparison(plans: Sequence[PlannedStudy], *, on_study: Callable[[RunResult], None] | None = None) -> list[RunResult]:
    """Run every planned study in turn (each continues if it exists); their results in order."""
    results = []
    for plan in plans:
        result = run_study(plan.cfg)
        if on_study is not None:
            on_study(result)
        results.append(result)
    return results
