"""One study, read once: its trials and learning curves as pandas frames, plus what hpstudy stored.

Every record in ``info``, ``curves`` and ``boundaries`` is computed from a ``StudyData``, so a
report reads each study's trials from the storage once (Optuna caches finished trials after that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution
from pydantic import ValidationError

from hpstudy.reports.tables import curves_frame, trials_frame
from hpstudy.storage.stored_config import has_stored_config, recorded_runs, stored_config
from hpstudy.study.config import StudyConfig
from hpstudy.study.errors import UserError

#: Trials whose user attrs describe work that happened. A WAITING retry carries a stale copy of
#: the failed attempt's attrs, and a RUNNING trial has not written its own yet.
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
#: The searched param that numbers repeats: trials differing only in it are repeats of one point.
SEED_PARAM = "seed"
OBJECTIVE_LABELS = {"val_loss": "validation loss", "val_accuracy": "validation accuracy"}
GENERIC_OBJECTIVE = "objective value"


@dataclass(frozen=True, eq=False)
class StudyData:
    """A study with its trials (``trials_frame``), curves (``curves_frame``, finished trials only), stored config
    (None when hpstudy did not create it, or it no longer validates) and run records."""

    optuna_study: optuna.Study
    trials: pd.DataFrame
    curves: pd.DataFrame
    config: StudyConfig | None
    runs: tuple[Mapping[str, Any], ...]
    distributions: Mapping[str, BaseDistribution]

    @property
    def name(self) -> str:
        """The study's name."""
        return self.optuna_study.study_name

    @property
    def maximize(self) -> bool:
        """True when larger objective values are better."""
        return self.optuna_study.direction == optuna.study.StudyDirection.MAXIMIZE

    @property
    def objective(self) -> str:
        """What the objective value is, in words: "validation loss", "validation accuracy"..."""
        if self.config is None:
            return GENERIC_OBJECTIVE
        return OBJECTIVE_LABELS.get(self.config.study.metric, self.config.study.metric)

    @cached_property
    def completed(self) -> pd.DataFrame:
        """COMPLETE trials with a value, infinite ones included, best first (as Optuna ranks them)."""
        frame = self.trials[(self.trials["state"] == "COMPLETE")].copy()
        frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
        frame = frame[frame["value"].notna()]
        return frame.sort_values(["value", "number"], ascending=[not self.maximize, True])

    @cached_property
    def complete(self) -> pd.DataFrame:
        """COMPLETE trials with a finite value, best first: what the figures draw."""
        return self.completed[np.isfinite(self.completed["value"])]

    @property
    def infinite(self) -> tuple[int, ...]:
        """Numbers of the COMPLETE trials whose value is infinite (left out of the figures)."""
        return tuple(sorted(int(n) for n in self.completed.loc[~np.isfinite(self.completed["value"]), "number"]))

    @cached_property
    def cut_by_a_crash(self) -> pd.Series:
        """Failed trials that record no end reason, aligned with ``trials``: their process died
        (kill -9, a crash) and a later run failed them, so their end is when it did that, not when
        they stopped. All False for a study another tool made, whose failed trials end when they fail."""
        if self.config is None or "end_reason" not in self.trials:
            return pd.Series(False, index=self.trials.index)
        return (self.trials["state"] == "FAIL") & self.trials["end_reason"].isna()

    @cached_property
    def starts(self) -> pd.Series:
        """When each trial started (NaT when it has not), aligned with ``trials``."""
        return _moments(self.trials["datetime_start"])

    @cached_property
    def ends(self) -> pd.Series:
        """When each trial finished (NaT while it runs), aligned with ``trials``."""
        return _moments(self.trials["datetime_complete"])

    @cached_property
    def searched(self) -> tuple[str, ...]:
        """Params that vary between trials (a one-value distribution counts as fixed), by name."""
        return tuple(sorted(name for name, dist in self.distributions.items() if not dist.single()))

    @cached_property
    def swept(self) -> tuple[str, ...]:
        """The searched params that are not the repeat index ``seed``: what the study compares."""
        return tuple(name for name in self.searched if name != SEED_PARAM)

    @property
    def variants(self) -> Mapping[str, Mapping[str, Any]]:
        """The named bundles of params the stored config defines (empty when it defines none)."""
        return getattr(self.config, "variants", None) or {}

    def state_count(self, state: str) -> int:
        """How many trials are in ``state`` (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
        return int((self.trials["state"] == state).sum())


def load_study_data(optuna_study: optuna.Study) -> StudyData:
    """Read ``optuna_study`` once into a ``StudyData``."""
    config = None
    if has_stored_config(optuna_study):
        try:
            config = stored_config(optuna_study)
        except (UserError, ValidationError):
            config = None  # written by another hpstudy version: report the trials without it
    distributions: dict[str, BaseDistribution] = {}
    for trial in optuna_study.get_trials(deepcopy=False):
        distributions.update(trial.distributions)
    curves = curves_frame(optuna_study)
    return StudyData(
        optuna_study=optuna_study,
        trials=trials_frame(optuna_study),
        curves=curves[curves["state"].isin(FINISHED_STATES)].reset_index(drop=True),
        config=config,
        runs=tuple(recorded_runs(optuna_study)),
        distributions=distributions,
    )


def _moments(column: pd.Series) -> pd.Series:
    # ISO 8601 throughout: with and without microseconds in one column
    return pd.to_datetime(column, format="ISO8601", errors="coerce")
