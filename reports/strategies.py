"""Search strategies compared: studies of one search space that differ only in their sampler (and
its seed and the study name) grouped by sampler, with each group's best value so far against the
trial count and against wall time, averaged over its studies with a min-max band, and a finding per
sampler. "Grid, random or Bayesian?" answered with data."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hpstudy.reports.bands import Band, band_of, padded_frame
from hpstudy.reports.study_data import FINISHED_STATES, StudyData
from hpstudy.reports.sweep_findings import spread_text
from hpstudy.reports.sweeps import Spread
from hpstudy.storage.stored_config import first_difference
from hpstudy.study.config import StudyConfig

#: Config keys two studies of one strategy comparison may differ in.
STRATEGY_KEYS = ("sampler", "seed", "name")


@dataclass(frozen=True)
class BestSoFar:
    """One study's best value so far after each finished trial (in trial-number order) and at each
    moment a trial finished (seconds since the study's first trial started); NaN before the first
    completed trial."""

    study: str
    sampler: str
    by_trial: tuple[float, ...]
    seconds: tuple[float, ...]
    by_time: tuple[float, ...]

    @property
    def final(self) -> float:
        """The best value the study found, NaN when no trial completed."""
        return self.by_trial[-1] if self.by_trial else math.nan


@dataclass(frozen=True)
class StrategyGroup:
    """The studies of one sampler, with their best so far averaged against trials and seconds."""

    sampler: str
    runs: tuple[BestSoFar, ...]
    by_trial: Band
    by_time: Band

    @property
    def final(self) -> Spread:
        """The best value each study found."""
        return Spread(tuple(run.final for run in self.runs if math.isfinite(run.final)))


@dataclass(frozen=True)
class StrategyComparison:
    """Samplers compared on one search space: a group per sampler name, in name order."""

    studies: tuple[str, ...]
    objective: str
    maximize: bool
    groups: tuple[StrategyGroup, ...]

    @property
    def repeated(self) -> bool:
        """True when some sampler has more than one study (so a band to draw)."""
        return any(len(group.runs) > 1 for group in self.groups)


def strategy_comparisons(loaded: Sequence[StudyData]) -> tuple[StrategyComparison, ...]:
    """A comparison for each search space that two or more samplers searched, in the order the
    spaces first appear."""
    comparisons = []
    for members in _by_space(loaded).values():
        samplers = sorted({_sampler(data) for data in members})
        if len(samplers) < 2:
            continue
        groups = []
        for sampler in samplers:
            runs = tuple(best_so_far(data) for data in members if _sampler(data) == sampler)
            groups.append(StrategyGroup(sampler, runs, _by_trial_band(runs), _by_time_band(runs)))
        comparisons.append(
            StrategyComparison(
                studies=tuple(data.name for data in members),
                objective=members[0].objective,
                maximize=members[0].maximize,
                groups=tuple(groups),
            )
        )
    return tuple(comparisons)


def why_no_strategy_comparison(loaded: Sequence[StudyData]) -> str | None:
    """Why studies run with different samplers are not compared (they differ in more than the
    sampler), or None when there is nothing to explain."""
    configured = [(data, data.config) for data in loaded if data.config is not None]
    if len({config.study.sampler.name for _, config in configured}) < 2 or strategy_comparisons(loaded):
        return None
    (first, first_config), *rest = configured
    other, other_config = next(pair for pair in rest if pair[1].study.sampler.name != first_config.study.sampler.name)
    difference = first_difference(_space_identity(first_config), _space_identity(other_config))
    return (
        f"Search strategies are compared only between studies of one search space that differ in nothing but "
        f"their sampler, its seed and the study name; '{first.name}' ({_sampler(first)}) and '{other.name}' "
        f"({_sampler(other)}) differ in {difference}."
    )


def best_so_far(data: StudyData) -> BestSoFar:
    """The best value of ``data`` after each of its finished trials, by trial count and by time."""
    finished = data.trials[data.trials["state"].isin(FINISHED_STATES)].sort_values("number")
    values = pd.to_numeric(finished["value"], errors="coerce").astype(float)
    values = values.where((finished["state"] == "COMPLETE") & np.isfinite(values))
    by_trial = _running_best(values, maximize=data.maximize)
    starts = data.starts.dropna()
    ends = data.ends[finished.index]
    if starts.empty or ends.isna().all():
        return BestSoFar(data.name, _sampler(data), by_trial, (), ())
    order = ends.dropna().sort_values(kind="stable")
    seconds = tuple(float(s) for s in (order - starts.min()).dt.total_seconds())
    by_time = _running_best(values[order.index], maximize=data.maximize)
    return BestSoFar(data.name, _sampler(data), by_trial, seconds, by_time)


def strategy_findings(comparison: StrategyComparison) -> tuple[str, ...]:
    """A sentence per sampler: its final best (mean ± std over its studies), after how many trials
    and seconds it was found, and after how many trials it reached each other sampler's final best."""
    lines = []
    references = reference_values(comparison)
    for group in comparison.groups:
        final = group.final
        counts = sorted({len(run.by_trial) for run in group.runs})
        trials = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
        studies = f"{len(group.runs)} stud{'ies' if len(group.runs) != 1 else 'y'} of {trials} trials"
        if not final.count:
            lines.append(f"{group.sampler} ({studies}): no trial completed.")
            continue
        maximize = comparison.maximize
        found_trials = [k for run in group.runs if (k := _first_reaching(run.by_trial, run.final, maximize=maximize))]
        found_seconds = [  # by_time runs in the order trials finished, which parallel workers shuffle
            run.seconds[k - 1] for run in group.runs if (k := _first_reaching(run.by_time, run.final, maximize=maximize))
        ]
        line = (
            f"{group.sampler} ({studies}): best {comparison.objective} {spread_text(final)}, found after "
            f"{_trials_text(float(np.mean(found_trials)))}"
        )
        if found_seconds:
            line += f" and {np.mean(found_seconds):.3g} s"
        line += " on average" if len(group.runs) > 1 else ""
        reached = [
            _reached_text(group, other, value, maximize=comparison.maximize)
            for other, value in references.items()
            if other != group.sampler
        ]
        lines.append(line + ("; " + ", ".join(reached) if reached else "") + ".")
    return tuple(lines)


# ---------------------------------------------------------------- grouping


def _by_space(loaded: Sequence[StudyData]) -> dict[str, list[StudyData]]:
    """Studies with a stored config, keyed by their config minus sampler, seed and name."""
    groups: dict[str, list[StudyData]] = {}
    for data in loaded:
        if data.config is not None:
            key = json.dumps(_space_identity(data.config), sort_keys=True, default=str)
            groups.setdefault(key, []).append(data)
    return groups


def _space_identity(config: StudyConfig) -> dict[str, Any]:
    """The config's identity without the keys a strategy comparison lets differ."""
    identity = config.identity()
    for key in STRATEGY_KEYS:
        identity["study"].pop(key, None)
    return identity


def _sampler(data: StudyData) -> str:
    return data.config.study.sampler.name if data.config is not None else "unknown"


# ---------------------------------------------------------------- curves


def _running_best(values: pd.Series, *, maximize: bool) -> tuple[float, ...]:
    best = values.cummax() if maximize else values.cummin()
    return tuple(float(v) for v in best.ffill())


def _by_trial_band(runs: Sequence[BestSoFar]) -> Band:
    return band_of(padded_frame([run.by_trial for run in runs]))


def _by_time_band(runs: Sequence[BestSoFar]) -> Band:
    """The runs' step functions on the union of their moments; a study that ended keeps its final best."""
    moments = sorted({s for run in runs for s in run.seconds})
    rows = []
    for run in runs:
        index = np.searchsorted(np.array(run.seconds), moments, side="right") - 1
        rows.append([run.by_time[i] if i >= 0 else math.nan for i in index])
    frame = pd.DataFrame(rows, columns=moments, dtype=float)
    return band_of(frame)


# ---------------------------------------------------------------- findings


def _first_reaching(by_trial: Sequence[float], target: float, *, maximize: bool) -> int | None:
    """The trial count at which the best so far first reached ``target``, None when it never did."""
    for count, value in enumerate(by_trial, start=1):
        if math.isfinite(value) and (value >= target if maximize else value <= target):
            return count
    return None


def _reached_text(group: StrategyGroup, other: str, target: float, *, maximize: bool) -> str:
    reached = [k for run in group.runs if (k := _first_reaching(run.by_trial, target, maximize=maximize)) is not None]
    if not reached:
        return f"never reached {other}'s final best ({target:.3g})"
    share = f" ({len(reached)} of {len(group.runs)} studies)" if len(group.runs) > 1 else ""
    average = " on average" if len(reached) > 1 else ""
    return f"reached {other}'s final best ({target:.3g}) after {_trials_text(float(np.mean(reached)))}{average}{share}"


def _trials_text(count: float) -> str:
    return f"{count:.3g} trial{'' if count == 1 else 's'}"


def reference_values(comparison: StrategyComparison) -> Mapping[str, float]:
    """Each sampler's final best, mean over its studies (the targets the findings measure against)."""
    return {group.sampler: group.final.mean for group in comparison.groups if group.final.count}
