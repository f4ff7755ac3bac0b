"""Trials -> the small frozen records behind the report's tables and figures (pandas does the work).

Each function takes a ``StudyData`` and returns one record. A record that cannot be drawn carries
``note``: a sentence saying why, shown on the page in place of the figure.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.distributions import CategoricalDistribution
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

from hpstudy.reports.study_data import FINISHED_STATES, StudyData
from hpstudy.reports.tables import is_missing, json_ready, same_choice

STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
IMPORTANCE_EVALUATOR = "PED-ANOVA (PedAnovaImportanceEvaluator, Optuna's default)"
#: PED-ANOVA compares the best 10% of completed trials with all of them: below this many the
#: "best 10%" is a single trial and the ranking is noise.
MIN_TRIALS_FOR_IMPORTANCE = 10
#: Above this many trials the timeline draws dots, not bars.
MAX_TIMELINE_BARS = 200


@dataclass(frozen=True)
class BestTrial:
    """The best completed trial of a study."""

    number: int
    value: float
    params: Mapping[str, Any]
    val_accuracy: float | None
    best_epoch: int | None
    epochs_run: int | None


@dataclass(frozen=True)
class StudySummary:
    """What a study is and how it went: the report's summary table, one column per study."""

    name: str
    direction: str
    objective: str
    states: Mapping[str, int]
    n_trials: int
    best: BestTrial | None
    wall_seconds: float | None
    trial_seconds: float | None
    devices: tuple[str, ...]
    sampler: str
    pruner: str
    runs: int
    search_space: Mapping[str, str]
    config_text: str | None
    infinite: tuple[int, ...] = ()
    cut_by_a_crash: int = 0  # trials whose time is not counted: their end is when a later run recovered them


@dataclass(frozen=True)
class PruningSavings:
    """Epochs the trials asked for against epochs they ran, and the seconds the difference saved
    (each trial's unrun epochs times its own mean measured epoch time)."""

    study: str
    trials_measured: int
    pruned_trials: int
    early_stopped_trials: int
    epochs_requested: int
    epochs_run: int
    saved_by_pruning: int
    saved_by_early_stopping: int
    not_run_other: int
    seconds_run: float
    seconds_saved_by_pruning: float
    seconds_saved_by_early_stopping: float
    note: str | None = None

    @property
    def share_saved_by_pruning(self) -> float:
        """Fraction of the requested epochs that pruning did not run."""
        return self.saved_by_pruning / self.epochs_requested if self.epochs_requested else 0.0


@dataclass(frozen=True)
class Importances:
    """Parameter importances, most important first, and the evaluator that computed them."""

    study: str
    evaluator: str
    values: Mapping[str, float]
    note: str | None = None


@dataclass(frozen=True)
class ChoiceValues:
    """One categorical parameter: per choice, the values of the completed trials and how many
    trials with that choice were pruned."""

    param: str
    choices: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    trials: tuple[tuple[int, ...], ...]
    pruned: tuple[int, ...]


@dataclass(frozen=True)
class CategoricalValues:
    """Every categorical parameter of a study, as values per choice."""

    study: str
    objective: str
    params: tuple[ChoiceValues, ...]
    note: str | None = None


@dataclass(frozen=True)
class Timeline:
    """When each trial ran: start, end, seconds and state per trial, in trial order. ``points``:
    too many trials for bars to be seen, so each is a dot at its end."""

    study: str
    numbers: tuple[int, ...]
    starts: tuple[str, ...]
    ends: tuple[str, ...]
    seconds: tuple[float, ...]
    states: tuple[str, ...]
    points: bool = False
    note: str | None = None


@dataclass(frozen=True)
class PlotChoice:
    """Whether an Optuna plot of a study can be drawn, and of which params."""

    study: str
    params: tuple[str, ...]
    note: str | None = None


# ---------------------------------------------------------------- summary


def summarize(data: StudyData) -> StudySummary:
    """The summary of one study."""
    counts = data.trials["state"].value_counts().to_dict()
    states = {state: int(counts.pop(state, 0)) for state in STATE_ORDER}
    states.update({str(state): int(n) for state, n in counts.items()})
    durations = pd.to_numeric(data.trials["duration_s"], errors="coerce")
    devices = sorted({str(run["device"]) for run in data.runs if run.get("device")}) or sorted(
        {str(device) for device in data.trials["device"].dropna()}
    )
    return StudySummary(
        name=data.name,
        direction="maximize" if data.maximize else "minimize",
        objective=data.objective,
        states=states,
        n_trials=len(data.trials),
        best=best_trial(data),
        wall_seconds=_wall_seconds(data),
        trial_seconds=float(durations[~data.cut_by_a_crash].sum()) if durations.notna().any() else None,
        devices=tuple(devices),
        sampler=_sampler_text(data),
        pruner=_pruner_text(data),
        runs=len(data.runs),
        search_space=_space_text(data),
        config_text=yaml.safe_dump(data.config.to_dict(), sort_keys=False) if data.config else None,
        infinite=data.infinite,
        cut_by_a_crash=int(data.cut_by_a_crash.sum()),
    )


def best_trial(data: StudyData) -> BestTrial | None:
    """The best completed trial as Optuna ranks them (an infinite value included), or None when
    no trial completed with a value."""
    if data.completed.empty:
        return None
    row = data.completed.iloc[0]
    params = {name: row[f"params_{name}"] for name in sorted(data.distributions) if f"params_{name}" in row}
    return BestTrial(
        number=int(row["number"]),
        value=float(row["value"]),
        params={name: json_ready(value) for name, value in params.items() if not is_missing(value)},
        val_accuracy=None if is_missing(row["val_accuracy"]) else float(row["val_accuracy"]),
        best_epoch=None if is_missing(row["best_epoch"]) else int(row["best_epoch"]),
        epochs_run=None if is_missing(row["epochs_run"]) else int(row["epochs_run"]),
    )


def _wall_seconds(data: StudyData) -> float | None:
    """Seconds in which some process worked on the study: the union of the runs that recorded
    their end and of the trials that ended normally. A run killed by kill -9 left no end, and its
    last trial ends only when a later run recovers it: counting either would add the downtime."""
    spans = [(_utc(run["started"]), _utc(run["ended"])) for run in data.runs if run.get("ended")]
    normal = ~data.cut_by_a_crash
    spans += [(_utc(start), _utc(end)) for start, end in zip(data.starts[normal], data.ends[normal])
              if not (pd.isna(start) or pd.isna(end))]
    if not spans:
        return None
    total, reach = 0.0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            total, reach = total + (end - start).total_seconds(), end
        elif end > reach:
            total, reach = total + (end - reach).total_seconds(), end
    return total


def _utc(moment: Any) -> pd.Timestamp:
    """``moment`` as a UTC timestamp: run records carry their zone, Optuna's trial times are the
    local time without one."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(dt.datetime.now().astimezone().tzinfo)
    return stamp.tz_convert("UTC")


def _sampler_text(data: StudyData) -> str:
    if data.config is not None:
        return _named_with_options(data.config.study.sampler.name, data.config.study.sampler.options)
    classes = sorted({str(run.get("sampler")) for run in data.runs if run.get("sampler")})
    return ", ".join(classes) if classes else "not recorded (the study was not created by hpstudy)"


def _pruner_text(data: StudyData) -> str:
    if data.config is not None:
        return _named_with_options(data.config.study.pruner.name, data.config.study.pruner.options)
    classes = sorted({str(run.get("pruner")) for run in data.runs if run.get("pruner")})
    return ", ".join(classes) if classes else "not recorded (the study was not created by hpstudy)"


def _named_with_options(name: str, options: Mapping[str, Any]) -> str:
    if not options:
        return name
    return f"{name} ({', '.join(f'{key}={value}' for key, value in options.items())})"


def _space_text(data: StudyData) -> dict[str, str]:
    if data.config is not None:
        return dict(data.config.search_space.describe())
    return {name: _describe_distribution(dist) for name, dist in sorted(data.distributions.items())}


def _describe_distribution(dist: optuna.distributions.BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return "{" + ", ".join(str(choice) for choice in dist.choices) + "}"
    low, high = getattr(dist, "low", None), getattr(dist, "high", None)
    return f"{low:g} .. {high:g}{' (log)' if getattr(dist, 'log', False) else ''}"


# ---------------------------------------------------------------- pruning


def pruning_savings(data: StudyData) -> PruningSavings:
    """Epochs run against epochs requested, and the seconds pruning and early stopping saved."""
    finished = data.trials[data.trials["state"].isin(FINISHED_STATES)]
    frame = finished[["number", "state", "epochs_run", "epochs_requested"]].copy()
    frame["epochs_run"] = pd.to_numeric(frame["epochs_run"], errors="coerce")
    frame["epochs_requested"] = pd.to_numeric(frame["epochs_requested"], errors="coerce")
    frame = frame.dropna(subset=["epochs_run", "epochs_requested"])
    empty = PruningSavings(data.name, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0)
    if data.trials.empty:
        return _with_note(empty, "The study has no trials yet.")
    if frame.empty:
        return _with_note(
            empty, "The trials record no epoch counts (they were not run by hpstudy), so the saving cannot be measured."
        )
    epoch_seconds = data.curves.groupby("trial")["epoch_seconds"].agg(["mean", "sum"])
    typical = float(epoch_seconds["mean"].median()) if not epoch_seconds.empty else math.nan
    frame = frame.join(epoch_seconds, on="number")
    frame["mean"] = frame["mean"].fillna(typical if math.isfinite(typical) else 0.0)
    frame["unrun"] = (frame["epochs_requested"] - frame["epochs_run"]).clip(lower=0)
    pruned = frame["state"] == "PRUNED"
    early = (frame["state"] == "COMPLETE") & (frame["unrun"] > 0)
    return PruningSavings(
        study=data.name,
        trials_measured=len(frame),
        pruned_trials=int(pruned.sum()),
        early_stopped_trials=int(early.sum()),
        epochs_requested=int(frame["epochs_requested"].sum()),
        epochs_run=int(frame["epochs_run"].sum()),
        saved_by_pruning=int(frame.loc[pruned, "unrun"].sum()),
        saved_by_early_stopping=int(frame.loc[early, "unrun"].sum()),
        not_run_other=int(frame.loc[~pruned & ~early, "unrun"].sum()),
        seconds_run=float(frame["sum"].fillna(0.0).sum()),
        seconds_saved_by_pruning=float((frame["unrun"] * frame["mean"])[pruned].sum()),
        seconds_saved_by_early_stopping=float((frame["unrun"] * frame["mean"])[early].sum()),
        note=None if data.state_count("PRUNED") else "No trial was pruned.",
    )


def _with_note(record: PruningSavings, note: str) -> PruningSavings:
    return PruningSavings(**{**record.__dict__, "note": note})


# ---------------------------------------------------------------- comparable plots


def why_no_values(data: StudyData) -> str | None:
    """Why no figure of objective values can be drawn for the study, or None when one can."""
    if data.trials.empty:
        if data.config is None:
            return "The study has no trials yet (it was not created by hpstudy, which trains only studies it created)."
        return "The study has no trials yet: run it with `hpstudy run`, or continue it with `hpstudy resume`."
    if data.complete.empty:
        pruned, failed = data.state_count("PRUNED"), data.state_count("FAIL")
        return (
            f"No trial completed ({pruned} pruned, {failed} failed, {len(data.trials)} in all), so there is no "
            "objective value to compare; the learning curves show how far the trials got."
        )
    return None


def why_no_params(data: StudyData) -> str | None:
    """Why no figure of params against values can be drawn, or None when one can."""
    reason = why_no_values(data)
    if reason:
        return reason
    if not data.searched:
        return (
            "No parameter was searched: every trial used the same fixed values, so there is nothing to "
            "compare across parameters. Give a parameter a range or a list of choices in search_space."
        )
    return None


def plot_choice(data: StudyData, *, min_params: int = 1) -> PlotChoice:
    """The searched params an Optuna plot of the study can use, or a note saying why none."""
    reason = why_no_params(data)
    if reason:
        return PlotChoice(data.name, (), reason)
    if len(data.searched) < min_params:
        return PlotChoice(
            data.name,
            (),
            f"Only one parameter ({data.searched[0]}) is searched; this plot needs {min_params}.",
        )
    return PlotChoice(data.name, data.searched)


def contour_choice(data: StudyData, importances: Importances) -> PlotChoice:
    """The two most important searched params (the first two by name when importances are not
    available), or a note saying why no contour can be drawn."""
    choice = plot_choice(data, min_params=2)
    if choice.note:
        return choice
    if len(data.complete) < 3:
        return PlotChoice(data.name, (), f"A contour needs at least 3 completed trials; the study has {len(data.complete)}.")
    ranked = [name for name in importances.values if name in data.searched]
    if len(ranked) >= 2:
        return PlotChoice(data.name, tuple(ranked[:2]))
    return PlotChoice(
        data.name,
        data.searched[:2],
        "Importances are not available, so the contour shows the first two searched parameters by name.",
    )


def comparable(studies: Sequence[StudyData]) -> tuple[list[StudyData], str | None]:
    """The studies one overlaid figure can show (those with values, optimizing the objective most
    of them share, in the same direction; on a tie, the first one's), and a note naming any left
    out and why."""
    with_values = [data for data in studies if why_no_values(data) is None]
    left_out = [f"'{data.name}' (no completed trial)" for data in studies if data not in with_values]
    if not with_values:
        return [], "No study has a completed trial yet, so there are no values to show."
    kinds = [(d.objective, d.maximize) for d in with_values]
    shared = max(kinds, key=kinds.count)  # max keeps the first of equally common kinds
    same = [d for d in with_values if (d.objective, d.maximize) == shared]
    left_out += [
        f"'{d.name}' ({'maximizes' if d.maximize else 'minimizes'} {d.objective})" for d in with_values if d not in same
    ]
    note = f"Not shown: {', '.join(left_out)}." if left_out else None
    return same, note


# ---------------------------------------------------------------- importances


def importances(data: StudyData) -> Importances:
    """Importances of the searched params by PED-ANOVA, or a note saying why they are not shown."""
    reason = why_no_params(data)
    if reason:
        return Importances(data.name, IMPORTANCE_EVALUATOR, {}, reason)
    if len(data.complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return Importances(
            data.name,
            IMPORTANCE_EVALUATOR,
            {},
            f"Importances need at least {MIN_TRIALS_FOR_IMPORTANCE} completed trials (PED-ANOVA compares the best "
            f"10% of them with all of them); the study has {len(data.complete)}.",
        )
    if len(data.searched) == 1:
        return Importances(
            data.name,
            IMPORTANCE_EVALUATOR,
            {data.searched[0]: 1.0},
            f"Only one parameter ({data.searched[0]}) is searched: it carries all the importance by definition.",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = get_param_importances(
            data.optuna_study, evaluator=PedAnovaImportanceEvaluator(), params=list(data.searched)
        )
    return Importances(data.name, IMPORTANCE_EVALUATOR, dict(values))


# ---------------------------------------------------------------- categorical


def categorical_values(data: StudyData) -> CategoricalValues:
    """The objective value per choice of every searched categorical param."""
    names = [name for name in data.searched if isinstance(data.distributions[name], CategoricalDistribution)]
    if not names:
        note = why_no_params(data) or "No categorical parameter (initializer, optimizer, activation...) is searched."
        return CategoricalValues(data.name, data.objective, (), note)
    reason = why_no_values(data)
    pruned = data.trials[data.trials["state"] == "PRUNED"]
    params = []
    for name in names:
        column = f"params_{name}"
        choices = data.distributions[name].choices  # type: ignore[attr-defined]
        values, numbers, n_pruned = [], [], []
        for choice in choices:
            picked = data.complete[_equals(data.complete, column, choice)]
            values.append(tuple(float(v) for v in picked["value"]))
            numbers.append(tuple(int(n) for n in picked["number"]))
            n_pruned.append(int(_equals(pruned, column, choice).sum()))
        params.append(ChoiceValues(name, tuple(str(c) for c in choices), tuple(values), tuple(numbers), tuple(n_pruned)))
    return CategoricalValues(data.name, data.objective, tuple(params), reason)


def _equals(frame: pd.DataFrame, column: str, choice: Any) -> pd.Series:
    if column not in frame:
        return pd.Series(False, index=frame.index)
    return frame[column].map(lambda value: same_choice(json_ready(value), choice)).astype(bool)


# ---------------------------------------------------------------- timeline


def timeline(data: StudyData, *, max_bars: int = MAX_TIMELINE_BARS) -> Timeline:
    """Start, end and length of every trial that started (a running trial ends now); past
    ``max_bars`` trials, dots at their ends instead of bars."""
    started = data.starts.notna()
    if not started.any():
        note = "The study has no trials yet." if data.trials.empty else "No trial has started yet."
        return Timeline(data.name, (), (), (), (), (), note=note)
    starts = data.starts[started]
    ends = data.ends[started].fillna(pd.Timestamp.now())
    points = int(started.sum()) > max_bars
    return Timeline(
        study=data.name,
        numbers=tuple(int(n) for n in data.trials.loc[started, "number"]),
        starts=tuple(moment.isoformat() for moment in starts),
        ends=tuple(moment.isoformat() for moment in ends),
        seconds=tuple(float(s) for s in (ends - starts).dt.total_seconds().clip(lower=0.0)),
        states=tuple(str(s) for s in data.trials.loc[started, "state"]),
        points=points,
        note=(
            f"With {int(started.sum())} trials a bar per trial would be thinner than a pixel, so each trial is a dot "
            "at the time it ended; hover a dot for its length."
        )
        if points
        else None,
    )
