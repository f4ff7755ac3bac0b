"""Learning curves as records: validation loss per epoch of (a sample of) every trial, and the best
trial's train and validation curves with a sentence on over- or underfitting."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpstudy.reports.study_data import StudyData

#: Above this many trials the figure shows the best ``BEST_CURVES`` and an even sample of the rest,
#: over a band of the 10-90% range of all trials.
MAX_CURVES = 150
BEST_CURVES = 50
#: Validation loss rising this much above its minimum by the last epoch counts as overfitting.
OVERFIT_RISE = 0.10
#: Validation loss lowest at the end and this much lower than a quarter of the run earlier counts
#: as still improving.
STILL_FALLING = 0.05
GAP_RATIO = 1.5


@dataclass(frozen=True)
class CurveLine:
    """One trial's validation loss per epoch (epoch 1 first; NaN where not finite)."""

    number: int
    state: str
    val_loss: tuple[float, ...]


@dataclass(frozen=True)
class CurveBand:
    """Per epoch, the 10%, 50% and 90% quantiles of validation loss over the trials reaching it."""

    epochs: tuple[int, ...]
    low: tuple[float, ...]
    median: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class LearningCurves:
    """The validation-loss curves a figure shows, the best trial's among them, and how they were
    chosen when there were too many to draw."""

    study: str
    lines: tuple[CurveLine, ...]
    best: CurveLine | None
    total: int
    band: CurveBand | None = None
    note: str | None = None


@dataclass(frozen=True)
class BestTrialCurves:
    """Train and validation loss and accuracy per epoch of the best trial, and what they say."""

    study: str
    number: int
    epochs: tuple[int, ...]
    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    train_accuracy: tuple[float, ...]
    val_accuracy: tuple[float, ...]
    best_epoch: int | None
    verdict: str


def learning_curves(data: StudyData, *, max_curves: int = MAX_CURVES, best_curves: int = BEST_CURVES) -> LearningCurves:
    """Validation loss per epoch of every trial, or of a sample when there are more than ``max_curves``."""
    curves = data.curves.dropna(subset=["val_loss"])
    if curves.empty:
        if data.trials.empty:
            note = "The study has no trials yet."
        elif not data.curves.empty:
            note = ("No curve to draw: every epoch the trials recorded ended with a validation loss that is not a "
                    "finite number (they diverged).")
        else:
            note = "No trial recorded a learning curve (the trials were not run by hpstudy, or ended before their first epoch)."
        return LearningCurves(data.name, (), None, 0, note=note)
    by_trial = curves.pivot_table(index="trial", columns="epoch", values="val_loss", aggfunc="first")
    states = data.curves.groupby("trial")["state"].first()
    best_number = None if data.complete.empty else int(data.complete.iloc[0]["number"])
    total = len(by_trial)
    shown = _chosen(by_trial, max_curves=max_curves, best_curves=best_curves, keep=best_number)
    lines = tuple(_line(by_trial, states, number) for number in shown if number != best_number)
    best = _line(by_trial, states, best_number) if best_number in by_trial.index else None
    if total <= max_curves:
        return LearningCurves(data.name, lines, best, total)
    quantiles = curves.groupby("epoch")["val_loss"].quantile([0.1, 0.5, 0.9]).unstack()
    band = CurveBand(
        epochs=tuple(int(e) for e in quantiles.index),
        low=tuple(float(v) for v in quantiles[0.1]),
        median=tuple(float(v) for v in quantiles[0.5]),
        high=tuple(float(v) for v in quantiles[0.9]),
    )
    note = (
        f"Showing {len(shown)} of {total} trials: the {min(best_curves, total)} with the lowest validation loss "
        f"and {len(shown) - min(best_curves, total)} more spread evenly over the trial numbers. The shaded band is "
        "the 10-90% range of all trials that reached each epoch, the dotted line their median."
    )
    return LearningCurves(data.name, lines, best, total, band, note)


def _chosen(by_trial: pd.DataFrame, *, max_curves: int, best_curves: int, keep: int | None) -> list[int]:
    numbers = [int(n) for n in by_trial.index]
    if len(numbers) <= max_curves:
        return numbers
    lowest = by_trial.min(axis=1, skipna=True).sort_values(kind="stable")
    chosen = {int(n) for n in lowest.index[:best_curves]}
    if keep is not None:
        chosen.add(keep)
    rest = [n for n in numbers if n not in chosen]
    picks = np.linspace(0, len(rest) - 1, num=min(len(rest), max_curves - len(chosen))).round().astype(int)
    chosen.update(rest[i] for i in picks)
    return sorted(chosen)


def _line(by_trial: pd.DataFrame, states: pd.Series, number: int) -> CurveLine:
    row = by_trial.loc[number].dropna()
    epochs = int(row.index.max()) if not row.empty else 0
    values = by_trial.loc[number].reindex(range(1, epochs + 1))
    return CurveLine(number, str(states.get(number, "")), tuple(float(v) for v in values))


def best_trial_curves(data: StudyData) -> BestTrialCurves | None:
    """Curves of the best completed trial, or None when there is none or it recorded no curve."""
    if data.complete.empty:
        return None
    number = int(data.complete.iloc[0]["number"])
    curve = data.curves[data.curves["trial"] == number].sort_values("epoch")
    if curve["val_loss"].isna().all():
        return None
    best_epoch = data.complete.iloc[0]["best_epoch"]
    return BestTrialCurves(
        study=data.name,
        number=number,
        epochs=tuple(int(e) for e in curve["epoch"]),
        train_loss=tuple(float(v) for v in curve["train_loss"]),
        val_loss=tuple(float(v) for v in curve["val_loss"]),
        train_accuracy=tuple(float(v) for v in curve["train_accuracy"]),
        val_accuracy=tuple(float(v) for v in curve["val_accuracy"]),
        best_epoch=None if pd.isna(best_epoch) else int(best_epoch),
        verdict=fit_verdict(list(curve["train_loss"]), list(curve["val_loss"])),
    )


def fit_verdict(train_loss: list[float], val_loss: list[float]) -> str:
    """One or two sentences on over- or underfitting, read from the loss curves of a trial."""
    val = np.array(val_loss, dtype=float)
    train = np.array(train_loss, dtype=float)
    if len(val) < 3 or not np.isfinite(val).any():
        return "Too few epochs to judge over- or underfitting."
    lowest = int(np.nanargmin(val))
    last = len(val) - 1
    rise = (val[last] - val[lowest]) / abs(val[lowest]) if val[lowest] else 0.0
    if lowest < last and rise > OVERFIT_RISE:
        if _falling(train, lowest, last):
            return (
                f"Validation loss was lowest at epoch {lowest + 1} and rose {rise:.0%} by epoch {last + 1} while "
                f"training loss kept falling: the model overfits after epoch {lowest + 1}. More dropout or weight "
                "decay, or fewer epochs, may help."
            )
        return (
            f"Validation loss was lowest at epoch {lowest + 1} and ended {rise:.0%} higher at epoch {last + 1}, and "
            "training loss stopped improving too: training became unstable. A smaller learning rate, or the "
            "plateau scheduler, may help."
        )
    earlier = val[last - max(2, len(val) // 4)]
    if lowest >= last - 1 and math.isfinite(earlier) and val[last] < earlier * (1 - STILL_FALLING):
        return (
            f"Validation loss was still falling at the last epoch ({last + 1}): the model is probably undertrained. "
            "Allow more epochs or a larger learning rate."
        )
    ratio = val[lowest] / train[lowest] if math.isfinite(train[lowest]) and train[lowest] > 0 else math.nan
    if math.isfinite(ratio) and ratio > GAP_RATIO:
        return (
            f"At its best epoch validation loss is {ratio:.1f} times the training loss: a generalization gap. "
            "More regularization (dropout, weight decay) or more data may help."
        )
    return "Training and validation loss level off together: no clear sign of over- or underfitting."


def _falling(train: np.ndarray, start: int, end: int) -> bool:
    return bool(math.isfinite(train[start]) and math.isfinite(train[end]) and train[end] < train[start])
