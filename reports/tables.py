"""Studies and trials as tables (pandas): the data behind `list`, `best` and `export`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from hpstudy.study import trial_attrs

EXPORT_FORMATS = ("csv", "json")


@dataclass(frozen=True)
class StudyRow:
    """One study in a storage: its name, direction, trials by state and best value."""

    name: str
    direction: str
    counts: dict[str, int]
    best_value: float | None
    best_trial: int | None


def study_rows(storage: optuna.storages.BaseStorage) -> list[StudyRow]:
    """A row per study in ``storage``, sorted by name."""
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=True):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        counts: dict[str, int] = {}
        for trial in study.get_trials(deepcopy=False):
            counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
        best = summary.best_trial
        rows.append(
            StudyRow(
                name=summary.study_name,
                direction=summary.direction.name.lower(),
                counts=counts,
                best_value=best.value if best is not None else None,
                best_trial=best.number if best is not None else None,
            )
        )
    return sorted(rows, key=lambda row: row.name)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, duration, epochs, best accuracy, then ``params_*``."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        row: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "duration_s": trial.duration.total_seconds() if trial.duration else None,
            "epochs_run": attrs.get(trial_attrs.EPOCHS_RUN),
            "epochs_requested": attrs.get(trial_attrs.EPOCHS_REQUESTED),
            "val_accuracy": attrs.get(trial_attrs.VAL_ACCURACY),
            "end_reason": attrs.get(trial_attrs.END_REASON),
            "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        }
        row.update({f"params_{name}": value for name, value in sorted(trial.params.items())})
        rows.append(row)
    return pd.DataFrame(rows)


def best_record(study: optuna.Study) -> dict[str, Any] | None:
    """The best trial as a JSON-ready dict (number, value, params, accuracy, epochs), or None."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    return {
        "study": study.study_name,
        "trial": best.number,
        "value": best.value,
        "direction": study.direction.name.lower(),
        "params": best.params,
        "val_accuracy": best.user_attrs.get(trial_attrs.VAL_ACCURACY),
        "best_epoch": best.user_attrs.get(trial_attrs.BEST_EPOCH),
        "epochs_run": best.user_attrs.get(trial_attrs.EPOCHS_RUN),
        "hyperparams": best.user_attrs.get(trial_attrs.HYPERPARAMS),
    }


def export_text(frame: pd.DataFrame, fmt: str) -> str:
    """The table as CSV, or as a JSON list of records (NaN as null)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    records = [
        {key: _plain(value) for key, value in record.items()}
        for record in frame.to_dict(orient="records")
    ]
    return json.dumps(records, indent=2) + "\n"


def write_export(frame: pd.DataFrame, fmt: str, path: Path) -> None:
    """Write the export atomically: a temporary file next to ``path``, then a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(export_text(frame, fmt), encoding="utf-8")
    tmp.replace(path)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    return value
