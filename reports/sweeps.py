"""Sweeps as records: a study that varies one or two params besides the repeat index ``seed``, read
per value (per pair of values for two): the learning curves averaged over the repeats with their
min-max band, the final validation loss and accuracy, and which repeats diverged or stayed at
chance accuracy. ``sweep_findings`` (in ``sweep_findings``) puts a ``Sweep`` into sentences."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from hpstudy.reports.bands import Band, band_of, padded_frame
from hpstudy.reports.formatting import choice_text
from hpstudy.reports.study_data import FINISHED_STATES, SEED_PARAM, StudyData
from hpstudy.reports.tables import is_missing, json_ready, same_choice

#: The categorical param whose values name bundles of params (the config's ``variants``).
VARIANT_PARAM = "variant"
#: The most values the x axis of a sweep takes, and the most series drawn beside each other.
MAX_VALUES = 16
MAX_SERIES = 8
#: A repeat whose best validation accuracy stays at or below chance x (1 + CHANCE_MARGIN) did not learn.
CHANCE_MARGIN = 0.5
DATASET_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10}
#: Swept params that make a study about early stopping.
EARLY_STOPPING_PARAMS = frozenset({"patience", "min_delta"})
CURVE_NAMES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
#: Positive numeric values spanning more than this factor get a log axis.
LOG_SPAN = 20
_DIVERGED_AT = re.compile(r"^diverged at epoch (\d+)")

Moment = Literal["best", "last"]


@dataclass(frozen=True)
class Spread:
    """Values over repeats (finite ones only): their mean, sample standard deviation, min and max."""

    values: tuple[float, ...]

    @property
    def count(self) -> int:
        """How many values there are."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """The mean, NaN when there is no value."""
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        """The sample standard deviation (ddof 1), NaN below two values."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan

    @property
    def low(self) -> float:
        """The smallest value, NaN when there is none."""
        return min(self.values) if self.values else math.nan

    @property
    def high(self) -> float:
        """The largest value, NaN when there is none."""
        return max(self.values) if self.values else math.nan


@dataclass(frozen=True)
class Repeat:
    """One finished trial of a sweep point: its curves (NaN where not finite) and how it ended."""

    number: int
    state: str
    end_reason: str
    curves: Mapping[str, tuple[float, ...]]
    best_epoch: int | None
    epochs_run: int | None
    epochs_requested: int | None

    @property
    def diverged(self) -> bool:
        """True when training stopped on a NaN or infinite loss."""
        return self.end_reason.startswith("diverged")

    @property
    def diverged_at(self) -> int | None:
        """The epoch the loss stopped being finite, None when the trial did not diverge."""
        if not self.diverged:
            return None
        found = _DIVERGED_AT.match(self.end_reason)
        return int(found.group(1)) if found else self.epochs_run

    @property
    def early_stopped(self) -> bool:
        """True when early stopping ended the trial before its requested epochs."""
        return self.end_reason.startswith("early stopped")

    @property
    def peak_val_accuracy(self) -> float:
        """The highest validation accuracy of any epoch, NaN when none was finite."""
        finite = [v for v in self.curves["val_accuracy"] if math.isfinite(v)]
        return max(finite) if finite else math.nan

    def value_at(self, name: str, moment: Moment) -> float:
        """Curve ``name`` at the best epoch (the one the objective picked) or the last epoch run."""
        values = self.curves[name]
        epoch = self.best_epoch if moment == "best" else len(values)
        if epoch is None or not 1 <= epoch <= len(values):
            return math.nan
        return values[epoch - 1]


@dataclass(frozen=True)
class SweepPoint:
    """One value of the swept param (with one value of the series param, for two): its repeats."""

    x: Any
    series: Any
    repeats: tuple[Repeat, ...]
    chance_limit: float | None

    @property
    def diverged(self) -> tuple[Repeat, ...]:
        """Repeats that stopped on a NaN or infinite loss."""
        return tuple(r for r in self.repeats if r.diverged)

    @property
    def at_chance(self) -> tuple[Repeat, ...]:
        """Repeats that did not diverge but never rose above chance accuracy (plus the margin)."""
        if self.chance_limit is None:
            return ()
        return tuple(r for r in self.repeats if not r.diverged and r.peak_val_accuracy <= self.chance_limit)

    @property
    def completed(self) -> tuple[Repeat, ...]:
        """Repeats that ran to their end (all their epochs, or until early stopping)."""
        return tuple(r for r in self.repeats if r.state == "COMPLETE")

    @property
    def pruned(self) -> tuple[Repeat, ...]:
        """Repeats the pruner stopped (not counting diverged ones)."""
        return tuple(r for r in self.repeats if r.state == "PRUNED" and not r.diverged)

    @property
    def failed(self) -> tuple[Repeat, ...]:
        """Repeats that failed (an error, out of memory, an interruption)."""
        return tuple(r for r in self.repeats if r.state == "FAIL")

    @property
    def early_stopped(self) -> tuple[Repeat, ...]:
        """Completed repeats that early stopping ended before their requested epochs."""
        return tuple(r for r in self.completed if r.early_stopped)

    def final(self, name: str, moment: Moment) -> Spread:
        """Curve ``name`` at the best or last epoch, over the completed repeats."""
        return Spread(tuple(v for r in self.completed if math.isfinite(v := r.value_at(name, moment))))

    def epochs(self, kind: Literal["run", "requested"]) -> Spread:
        """Epochs run or requested, over the completed repeats."""
        values = (r.epochs_run if kind == "run" else r.epochs_requested for r in self.completed)
        return Spread(tuple(float(v) for v in values if v is not None))

    @cached_property
    def curves(self) -> Mapping[str, Band]:
        """Each curve over the repeats that did not diverge, epoch by epoch (x is the epoch)."""
        kept = [r for r in self.repeats if not r.diverged]
        return {name: band_of(padded_frame([r.curves[name] for r in kept])) for name in CURVE_NAMES}


@dataclass(frozen=True)
class Sweep:
    """A study read as a sweep of ``param`` (one point per value and, with ``series_param``, per
    value of that one too), or a ``note`` saying why it is not one."""

    study: str
    param: str | None = None
    series_param: str | None = None
    x_values: tuple[Any, ...] = ()
    series_values: tuple[Any, ...] = (None,)
    points: tuple[SweepPoint, ...] = ()
    categorical: bool = False
    log: bool = False
    maximize: bool = False
    metric: str = "val_loss"
    chance_accuracy: float | None = None
    early_stopping: bool = False
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    note: str | None = None

    @property
    def has_curves(self) -> bool:
        """True when some repeat recorded a finite validation loss (a curve to draw)."""
        return any(math.isfinite(v) for p in self.points for r in p.repeats for v in r.curves["val_loss"])

    def label(self, point: SweepPoint) -> str:
        """``lr = 0.1``, or ``lr = 0.1 with activation = relu`` for two swept params."""
        text = f"{self.param} = {choice_text(point.x)}"
        if self.series_param is None:
            return text
        return f"{text} with {self.series_param} = {choice_text(point.series)}"

    def series_label(self, series: Any) -> str:
        """``activation = relu``; empty for a sweep of one param."""
        return "" if self.series_param is None else f"{self.series_param} = {choice_text(series)}"

    def position(self, point: SweepPoint) -> int:
        """The index of the point's value among ``x_values``."""
        return next(i for i, value in enumerate(self.x_values) if _matches(value, point.x))

    def in_series(self, series: Any) -> tuple[SweepPoint, ...]:
        """The points of one series value, in the order of the x values."""
        return tuple(p for p in self.points if _matches(p.series, series))

    def bundle_text(self, value: Any) -> str | None:
        """What a variant name stands for (``optimizer = sgd, momentum = 0.9``), None for other values."""
        bundle = self.variants.get(value) if isinstance(value, str) else None
        if bundle is None:
            return None
        return ", ".join(f"{key} = {choice_text(item)}" for key, item in bundle.items())


def sweep_view(data: StudyData) -> Sweep:
    """The sweep of a study that varies one or two params besides ``seed``, or a note saying why
    the study is not read as one."""
    finished = data.trials[data.trials["state"].isin(FINISHED_STATES)]
    note = _why_not_a_sweep(data, finished)
    if note:
        return Sweep(data.name, note=note)
    values = {name: _values_of(data, finished, name) for name in data.swept}
    param, series_param = _axes(data, values)
    chance = _chance_accuracy(data)
    limit = None if chance is None else chance * (1 + CHANCE_MARGIN)
    rows = finished.to_dict(orient="records")
    repeats = _repeats(data, rows)
    series_values = values[series_param] if series_param else (None,)
    points = []
    for series in series_values:
        for x in values[param]:
            chosen = tuple(
                repeat
                for repeat, row in zip(repeats, rows)
                if repeat is not None
                and _matches(_param(row, param), x)
                and (series_param is None or _matches(_param(row, series_param), series))
            )
            if chosen:
                points.append(SweepPoint(x, series, chosen, limit))
    numeric = _numeric(values[param]) and param != VARIANT_PARAM
    return Sweep(
        study=data.name,
        param=param,
        series_param=series_param,
        x_values=values[param],
        series_values=series_values,
        points=tuple(points),
        categorical=not numeric,
        log=numeric and _log_scale(data, param, values[param]),
        maximize=data.maximize,
        metric=data.config.study.metric if data.config is not None else "val_loss",
        chance_accuracy=chance,
        early_stopping=bool(
            EARLY_STOPPING_PARAMS & set(data.swept)
            or (data.config is not None and data.config.train.early_stopping.patience is not None)
        ),
        variants=data.variants,
    )


# ---------------------------------------------------------------- what is swept


def _why_not_a_sweep(data: StudyData, finished: pd.DataFrame) -> str | None:
    if data.trials.empty:
        return "The study has no trials yet."
    if not data.swept:
        varied = "only the repeat index seed varies" if SEED_PARAM in data.searched else "no parameter varies"
        return f"Not a sweep: {varied} between trials."
    if len(data.swept) > 2:
        return (
            f"Not a sweep: the study searches {len(data.swept)} parameters ({', '.join(data.swept)}); the sweep view "
            "is drawn for studies that vary one or two (besides the repeat index seed). The slice plots show each "
            "parameter."
        )
    continuous = [name for name in data.swept if _continuous(data.distributions[name])]
    if continuous:
        return (
            f"Not a sweep: {' and '.join(continuous)} {'is' if len(continuous) == 1 else 'are'} drawn from a continuous "
            "range, so no two trials share a value to average over (a grid sweeps a list of values, or a range with a "
            "step). The slice plots show each trial."
        )
    counts = {name: len(_values_of(data, finished, name)) for name in data.swept}
    fewest = min(counts.values())
    most = max(counts.values())
    if most > MAX_VALUES or (len(counts) == 2 and fewest > MAX_SERIES):
        shown = " and ".join(f"{name} {count}" for name, count in counts.items())
        return (
            f"Not drawn as a sweep: the trials took too many different values ({shown}) to average repeats per "
            f"value. The sweep view needs at most {MAX_VALUES} values"
            + (f", and at most {MAX_SERIES} of the second parameter" if len(counts) == 2 else "")
            + "; the slice plots show each trial."
        )
    if data.curves.dropna(subset=["val_loss"]).empty and not _any_diverged(finished):
        return "No trial recorded a learning curve (the trials were not run by hpstudy, or ended before their first epoch)."
    return None


def _values_of(data: StudyData, finished: pd.DataFrame, name: str) -> tuple[Any, ...]:
    """The values of ``name`` the finished trials took: in the order of the choices for a
    categorical param, ascending for numbers."""
    column = f"params_{name}"
    if column not in finished:
        return ()
    seen: list[Any] = []
    for cell in finished[column]:
        value = None if is_missing(cell) else json_ready(cell)
        if not any(_matches(value, known) for known in seen):
            seen.append(value)
    dist = data.distributions.get(name)
    if isinstance(dist, CategoricalDistribution) and not (_numeric(seen) and name != VARIANT_PARAM):
        ordered = [choice for choice in dist.choices if any(_matches(choice, value) for value in seen)]
        return tuple(ordered + [value for value in seen if not any(_matches(value, c) for c in ordered)])
    if _numeric(seen):
        return tuple(sorted(seen))
    return tuple(sorted(seen, key=str))


def _axes(data: StudyData, values: Mapping[str, tuple[Any, ...]]) -> tuple[str, str | None]:
    """(x param, series param): for two, the one with fewer values is the series; on a tie the
    categorical one, else the second by name."""
    if len(data.swept) == 1:
        return data.swept[0], None
    first, second = data.swept
    if len(values[first]) != len(values[second]):
        return (first, second) if len(values[first]) > len(values[second]) else (second, first)
    if _numeric(values[second]) and not _numeric(values[first]):
        return second, first
    return first, second


def _chance_accuracy(data: StudyData) -> float | None:
    if data.config is None or data.config.data.dataset not in DATASET_CLASSES:
        return None
    return 1 / DATASET_CLASSES[data.config.data.dataset]


def _log_scale(data: StudyData, name: str, values: Sequence[Any]) -> bool:
    if getattr(data.distributions.get(name), "log", False):
        return True
    numbers = [float(v) for v in values]
    return bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) > LOG_SPAN


# ---------------------------------------------------------------- repeats


def _repeats(data: StudyData, rows: Sequence[Mapping[str, Any]]) -> list[Repeat | None]:
    """A ``Repeat`` per trial row (None for a trial without a curve that did not diverge)."""
    by_trial = {int(number): frame.sort_values("epoch") for number, frame in data.curves.groupby("trial")}
    repeats: list[Repeat | None] = []
    for row in rows:
        number = int(row["number"])
        reason = "" if is_missing(row["end_reason"]) else str(row["end_reason"])
        frame = by_trial.get(number)
        if frame is None and not reason.startswith("diverged"):
            repeats.append(None)
            continue
        curves = {
            name: tuple(float(v) for v in frame[name]) if frame is not None else () for name in CURVE_NAMES
        }
        repeats.append(
            Repeat(
                number=number,
                state=str(row["state"]),
                end_reason=reason,
                curves=curves,
                best_epoch=_best_epoch(row["best_epoch"], curves["val_loss"]),
                epochs_run=None if is_missing(row["epochs_run"]) else int(row["epochs_run"]),
                epochs_requested=None if is_missing(row["epochs_requested"]) else int(row["epochs_requested"]),
            )
        )
    return repeats


def _best_epoch(stored: Any, val_loss: Sequence[float]) -> int | None:
    """The best epoch the trial recorded; the epoch of lowest validation loss when it recorded none."""
    if not is_missing(stored):
        return int(stored)
    finite = [(v, epoch) for epoch, v in enumerate(val_loss, start=1) if math.isfinite(v)]
    return min(finite)[1] if finite else None


# ---------------------------------------------------------------- helpers


def _any_diverged(finished: pd.DataFrame) -> bool:
    return bool(finished["end_reason"].astype(str).str.startswith("diverged").any())


def _param(row: Mapping[str, Any], name: str) -> Any:
    value = row.get(f"params_{name}")
    return None if is_missing(value) else json_ready(value)


def _continuous(dist: BaseDistribution) -> bool:
    return isinstance(dist, FloatDistribution) and dist.step is None


def _matches(value: Any, other: Any) -> bool:
    """Equal as param values, None (a choice of ``none``) included."""
    return (value is None and other is None) or same_choice(value, other)


def _numeric(values: Sequence[Any]) -> bool:
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
