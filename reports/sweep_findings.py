"""A sweep's findings: one sentence each, every number computed from its trials. Per value the
repeats, how many diverged or stayed at chance accuracy, and the final validation loss and
accuracy (mean ± sample standard deviation); the best value; for an epochs sweep where validation
loss is lowest and whether it rises after; for early stopping the epochs run against requested."""

from __future__ import annotations

import math

import numpy as np

from hpstudy.reports.curves import OVERFIT_RISE
from hpstudy.reports.formatting import choice_text
from hpstudy.reports.bands import Band
from hpstudy.reports.sweeps import Spread, Sweep, SweepPoint
from hpstudy.search_spaces.catalog import PARAMETERS

EPOCHS_PARAM = "epochs"
METRIC_WORDS = {"val_loss": "validation loss", "val_accuracy": "validation accuracy"}


def sweep_findings(sweep: Sweep) -> tuple[str, ...]:
    """The findings of ``sweep``, one sentence each: per point, then the best, then what an epochs
    or early-stopping sweep shows. Empty when the study is not a sweep."""
    if sweep.note or not sweep.points:
        return ()
    lines = [point_finding(sweep, point) for point in sweep.points]
    lines += best_findings(sweep)
    if EPOCHS_PARAM in (sweep.param, sweep.series_param):
        lines += epochs_findings(sweep)
    if sweep.early_stopping or any(p.early_stopped for p in sweep.points):
        lines += [early_stopping_finding(sweep, point) for point in sweep.points if point.completed]
    return tuple(lines)


def point_finding(sweep: Sweep, point: SweepPoint) -> str:
    """``lr = 1: diverged in 3 of 3 repeats (at epoch 2).``, or the problems of the point followed by
    its validation loss and accuracy at the best epoch, mean ± std over the completed repeats."""
    total = len(point.repeats)
    problems = []
    if point.diverged:
        epochs = sorted({r.diverged_at for r in point.diverged if r.diverged_at is not None})
        at = f" (at epoch {_span(epochs)})" if epochs else ""
        problems.append(f"diverged in {len(point.diverged)} of {total} repeats{at}")
    if point.at_chance and sweep.chance_accuracy is not None:
        peak = max(r.peak_val_accuracy for r in point.at_chance)
        problems.append(
            f"stuck at chance accuracy ({sweep.chance_accuracy:.2f}) in {len(point.at_chance)} of {total} repeats "
            f"(validation accuracy at most {peak:.3f})"
        )
    if point.pruned:
        problems.append(f"pruned in {len(point.pruned)} of {total} repeats")
    if point.failed:
        problems.append(f"failed in {len(point.failed)} of {total} repeats")
    loss, accuracy = point.final("val_loss", "best"), point.final("val_accuracy", "best")
    measured = []
    if loss.count:
        measured.append(
            f"at the best epoch validation loss {spread_text(loss)}, accuracy {spread_text(accuracy)} over "
            f"{_repeats(loss.count, 'completed ')}"
        )
    return f"{sweep.label(point)}: {'; '.join(problems + measured) or 'no completed repeat'}."


def best_findings(sweep: Sweep) -> list[str]:
    """The best point by the study's metric at the best epoch; with a series, the best x per series."""
    ranked = _ranked(sweep, sweep.points)
    if not ranked:
        return [f"No {sweep.param} value completed a repeat without diverging: there is no best value."]
    word = METRIC_WORDS.get(sweep.metric, sweep.metric)
    best = ranked[0]
    spread = best.final(sweep.metric, "best")
    line = f"Best: {sweep.label(best)}, {word} {spread_text(spread)} at the best epoch over {_repeats(spread.count)}"
    if len(ranked) > 1:
        runner_up = ranked[1]
        line += f"; next {sweep.label(runner_up)} ({spread_text(runner_up.final(sweep.metric, 'best'))})"
    lines = [line + "." + _edge_text(sweep, best)]
    if sweep.series_param is not None:
        for series in sweep.series_values:
            in_series = _ranked(sweep, sweep.in_series(series))
            if in_series:
                top = in_series[0]
                lines.append(
                    f"With {sweep.series_label(series)} the best {sweep.param} is {choice_text(top.x)} "
                    f"({word} {spread_text(top.final(sweep.metric, 'best'))})."
                )
    return lines


def epochs_findings(sweep: Sweep) -> list[str]:
    """Per series, where the mean validation loss of the longest-trained point is lowest and whether
    it rises after while training loss keeps falling; and which epoch count ends lowest."""
    lines = []
    for series in sweep.series_values:
        points = sweep.in_series(series)
        if not points:
            continue
        longest = max(points, key=lambda p: len(p.curves["val_loss"].x))
        lines.append(f"{sweep.label(longest)}: {_trend_text(longest)}")
        ended = [p for p in points if p.final("val_loss", "last").count]
        if sweep.param == EPOCHS_PARAM and ended:
            lowest = min(ended, key=lambda p: p.final("val_loss", "last").mean)
            within = f" with {sweep.series_label(series)}" if sweep.series_param else ""
            lines.append(
                f"Validation loss at the last epoch{within} is lowest for epochs = {choice_text(lowest.x)} "
                f"({spread_text(lowest.final('val_loss', 'last'))})."
            )
    return lines


def early_stopping_finding(sweep: Sweep, point: SweepPoint) -> str:
    """``patience = 3: ran 17.5 of 30 epochs on average (early stopped in 2 of 2 repeats); validation
    loss at the stop 0.121 ± 0.002, at the best epoch 0.119 ± 0.003.``"""
    run, requested = point.epochs("run"), point.epochs("requested")
    completed = len(point.completed)
    return (
        f"{sweep.label(point)}: ran {run.mean:.3g} of {requested.mean:.3g} epochs on average (early stopped in "
        f"{len(point.early_stopped)} of {completed} completed repeats); validation loss at the stop "
        f"{spread_text(point.final('val_loss', 'last'))}, at the best epoch {spread_text(point.final('val_loss', 'best'))}."
    )


def spread_text(spread: Spread) -> str:
    """``0.123 ± 0.0045`` (3 significant digits, std to 2), the value alone for one repeat, "none" for none."""
    if not spread.count:
        return "none"
    if spread.count == 1:
        return f"{spread.mean:.3g}"
    return f"{spread.mean:.3g} ± {spread.std:.2g}"


# ---------------------------------------------------------------- helpers


def _ranked(sweep: Sweep, points: tuple[SweepPoint, ...]) -> list[SweepPoint]:
    """Points with a completed repeat, best first by the mean of the study's metric at the best epoch."""
    scored = [p for p in points if p.final(sweep.metric, "best").count]
    sign = -1 if sweep.maximize else 1
    return sorted(scored, key=lambda p: sign * p.final(sweep.metric, "best").mean)


def _edge_text(sweep: Sweep, best: SweepPoint) -> str:
    """A note when the best value is the smallest or largest of three or more numeric values swept
    (unless it is the least or most the parameter allows)."""
    if sweep.categorical or len(sweep.x_values) < 3:
        return ""
    allowed = PARAMETERS.get(str(sweep.param))
    if best.x == sweep.x_values[-1] and (allowed is None or allowed.maximum is None or best.x < allowed.maximum):
        return f" It is the largest {sweep.param} swept: a larger one may do better."
    if best.x == sweep.x_values[0] and (allowed is None or allowed.minimum is None or best.x > allowed.minimum):
        return f" It is the smallest {sweep.param} swept: a smaller one may do better."
    return ""


def _trend_text(point: SweepPoint) -> str:
    """Where the mean validation loss of ``point`` is lowest, and what it does after."""
    val, train = point.curves["val_loss"], point.curves["train_loss"]
    if len(val.x) < 3:
        return f"with {len(val.x)} epochs there is too little of a curve to read a trend."
    values = np.array(val.mean)
    lowest = int(np.nanargmin(values))
    epoch, last = val.x[lowest], val.x[-1]
    rise = (values[-1] - values[lowest]) / abs(values[lowest]) if values[lowest] else 0.0
    where = f"mean validation loss over the repeats is lowest at epoch {epoch} ({values[lowest]:.3g})"
    if lowest == len(values) - 1:
        return f"{where}, the last one run: still falling, so more epochs may help."
    if rise <= OVERFIT_RISE:
        return f"{where} and stays within {OVERFIT_RISE:.0%} of that up to epoch {last} ({values[-1]:.3g})."
    first_train, last_train = _at(train, epoch), _at(train, last)
    trend = (
        f"while training loss keeps falling ({first_train:.3g} to {last_train:.3g}): overfitting after epoch {epoch}"
        if math.isfinite(first_train) and math.isfinite(last_train) and last_train < first_train
        else "and training loss stops falling too"
    )
    return f"{where}, rising {rise:.0%} by epoch {last} ({values[-1]:.3g}) {trend}."


def _at(curve: Band, epoch: int) -> float:
    return curve.mean[curve.x.index(epoch)] if epoch in curve.x else math.nan


def _repeats(count: int, kind: str = "") -> str:
    return f"{count} {kind}repeat{'' if count == 1 else 's'}"


def _span(epochs: list[int]) -> str:
    return str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]} to {epochs[-1]}"
