"""Reporting each epoch to Optuna without paying a database round trip per epoch.

Optuna's ``trial.report`` is one transaction and ``trial.should_prune`` re-reads the running
trials from the database: together several milliseconds, which on a small model is a large share
of an epoch. For pruners that only compare this trial with *completed* trials (median,
percentile, threshold, none), ``EpochReporter`` asks the pruner itself, handing it this trial as
known in memory and a snapshot of the completed trials (refreshed at each trial's start and
every few seconds), and writes the intermediate values in one transaction when the trial ends
(and every few seconds while it runs, for anyone watching). The decision is Optuna's own pruner
code on the same data. Other pruners (successive halving, hyperband keep per-trial rung state in
the database) go through ``trial.report`` and ``trial.should_prune`` unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.pruners import NopPruner, PercentilePruner, ThresholdPruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

#: Pruners whose decision depends only on the trial and the completed trials.
LOCAL_PRUNERS = (PercentilePruner, ThresholdPruner, NopPruner)  # MedianPruner is a PercentilePruner
SNAPSHOT_MAX_AGE_S = 5.0
FLUSH_EVERY_S = 10.0


class CompletedTrials:
    """A snapshot of a study's completed trials, re-read when older than ``max_age`` seconds."""

    def __init__(self, study: optuna.Study, *, max_age: float = SNAPSHOT_MAX_AGE_S) -> None:
        self.study = study
        self.max_age = max_age
        self._trials: list[FrozenTrial] = []
        self._read_at = -float("inf")

    def refresh(self) -> None:
        """Read the completed trials now."""
        self._trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        self._read_at = time.monotonic()

    def get(self) -> list[FrozenTrial]:
        """The completed trials, re-read first if the snapshot is stale."""
        if time.monotonic() - self._read_at > self.max_age:
            self.refresh()
        return self._trials


class _CompletedView:
    """What a percentile-family pruner reads of a study: its direction and completed trials."""

    def __init__(self, direction: StudyDirection, completed: Sequence[FrozenTrial]) -> None:
        self.direction = direction
        self.directions = [direction]
        self._completed = list(completed)

    def get_trials(self, deepcopy: bool = False, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return [t for t in self._completed if states is None or t.state in states]


class EpochReporter:
    """Per-epoch ``report`` and ``should_prune`` for one trial; ``flush`` before the trial ends."""

    def __init__(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        *,
        trial_id: int,
        backend: Any,
        completed: CompletedTrials,
    ) -> None:
        self.study = study
        self.trial = trial
        self.trial_id = trial_id
        self.backend = backend
        self.completed = completed
        self.local = isinstance(study.pruner, LOCAL_PRUNERS) and hasattr(backend, "set_trial_intermediate_values")
        self.values: dict[int, float] = {}
        self._pending: dict[int, float] = {}
        self._flushed_at = time.monotonic()

    def report(self, value: float, step: int) -> None:
        """Record this epoch's value (written at once for database-backed pruners)."""
        if not self.local:
            self.trial.report(value, step)
            return
        self.values[step] = float(value)
        self._pending[step] = float(value)
        if time.monotonic() - self._flushed_at > FLUSH_EVERY_S:
            self.flush()

    def should_prune(self) -> bool:
        """The pruner's verdict on this trial as it stands."""
        if not self.local:
            return bool(self.trial.should_prune())
        view = _CompletedView(self.study.direction, self.completed.get())
        return bool(self.study.pruner.prune(view, self._as_frozen()))  # type: ignore[arg-type]

    def flush(self) -> None:
        """Write the values not yet stored, in one transaction."""
        if self._pending:
            self.backend.set_trial_intermediate_values(self.trial_id, dict(self._pending))
            self._pending.clear()
        self._flushed_at = time.monotonic()

    def _as_frozen(self) -> FrozenTrial:
        return FrozenTrial(
            number=self.trial.number,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=self.trial.datetime_start,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={},
            intermediate_values=dict(self.values),
            trial_id=self.trial_id,
        )
