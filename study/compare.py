"""`hpstudy compare`: the same search space run with several samplers and seeds, one study each,
so that one report can answer "grid, random or Bayesian?" with data (best so far against trials
and wall time, with bands over the seeds)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hpstudy.study.config import StudyConfig, load_config
from hpstudy.study.errors import UserError
from hpstudy.study.optuna_parts import SAMPLER_CLASSES
from hpstudy.study.runner import RunResult, run_study


@dataclass(frozen=True)
class PlannedStudy:
    """One study of a comparison: a sampler and a seed on the shared space."""

    sampler: str
    seed: int
    cfg: StudyConfig


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
    """One config per sampler and seed, all validated before anything runs. Study names are
    ``<preset>-<sampler>-s<seed>`` (``-quick`` added for the smoke-run size, which then never blocks
the full comparison), so a second run continues the same studies."""
    if not samplers:
        raise UserError("--samplers names no sampler; e.g. --samplers grid,random,tpe")
    for name in samplers:
        if name not in SAMPLER_CLASSES:
            raise UserError(f"--samplers: unknown sampler '{name}'; choose from {', '.join(SAMPLER_CLASSES)}")
    if repeats < 1:
        raise UserError(f"--repeats must be at least 1 (got {repeats})")
    plans = []
    for sampler in samplers:
        for seed in range(repeats):
            values = {"storage": storage, "study.name": f"{preset}-{sampler}-s{seed}{'-quick' if quick else ''}", "study.seed": seed,
                      "study.sampler": {"name": sampler}}
            if n_trials is not None:
                values["study.n_trials"] = n_trials
            cfg = load_config(preset=preset, overrides=overrides, values=values, quick=quick)
            if sampler == "grid" and n_trials is None:  # as many trials as the others, not the whole grid
                cfg = cfg.with_overrides({"study.n_trials": load_config(preset=preset, quick=quick).study.n_trials})
            plans.append(PlannedStudy(sampler, seed, cfg))
    return plans


def run_comparison(plans: Sequence[PlannedStudy], *, on_study: Callable[[RunResult], None] | None = None) -> list[RunResult]:
    """Run every planned study in turn (each continues if it exists); their results in order."""
    results = []
    for plan in plans:
        result = run_study(plan.cfg)
        if on_study is not None:
            on_study(result)
        results.append(result)
    return results
