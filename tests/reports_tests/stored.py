"""What the trials of a real study stored, read straight from Optuna (not through the reports), so
tests compute the numbers a report must show independently of the code that shows them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpstudy.study import trial_attrs

#: Chance accuracy on digits (10 classes) and the highest accuracy that still counts as chance.
CHANCE = 0.1
CHANCE_LIMIT = 0.15


def finished(optuna_study: optuna.Study, **params: Any) -> list[FrozenTrial]:
    """The study's finished trials whose params equal ``params``."""
    return [
        t for t in optuna_study.get_trials(deepcopy=False)
        if t.state.is_finished() and all(t.params.get(k) == v for k, v in params.items())
    ]


def diverged(trial: FrozenTrial) -> bool:
    """True when the trial stored an end reason saying it diverged."""
    return str(trial.user_attrs.get(trial_attrs.END_REASON, "")).startswith("diverged")


def curve(trial: FrozenTrial, name: str) -> list[float]:
    """One stored curve, NaN where the trial stored None."""
    return [math.nan if v is None else float(v) for v in trial.user_attrs[trial_attrs.CURVE][name]]


def at_best_epoch(trial: FrozenTrial, name: str) -> float:
    """Curve ``name`` at the trial's stored best epoch."""
    return curve(trial, name)[trial.user_attrs[trial_attrs.BEST_EPOCH] - 1]


def at_chance(trial: FrozenTrial) -> bool:
    """A trial that did not diverge whose validation accuracy never rose above ``CHANCE_LIMIT``."""
    finite = [v for v in curve(trial, "val_accuracy") if math.isfinite(v)]
    return not diverged(trial) and bool(finite) and max(finite) <= CHANCE_LIMIT


def completed(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The COMPLETE ones."""
    return [t for t in trials if t.state == TrialState.COMPLETE]


def spread_text(values: Sequence[float]) -> str:
    """How the findings write a mean and sample std: ``0.712 ± 0.18``, the value alone for one."""
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.mean(values):.3g} ± {statistics.stdev(values):.2g}"


def per_epoch(trials: Sequence[FrozenTrial], name: str, how: str) -> list[float]:
    """Curve ``name`` per epoch over ``trials`` (those reaching each epoch): "mean", "min" or "max"."""
    curves = [curve(t, name) for t in trials]
    out = []
    for epoch in range(max(len(c) for c in curves)):
        values = [c[epoch] for c in curves if epoch < len(c) and math.isfinite(c[epoch])]
        out.append({"mean": statistics.mean, "min": min, "max": max}[how](values))
    return out
