"""Studies and trials as tables (pandas): the data behind `list`, `best` and `export`."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from hpstudy.reports.files import write_text_atomically
from hpstudy.study import trial_attrs
from hpstudy.study.errors import UserError

EXPORT_FORMATS = ("csv", "json")
#: Output suffixes that name no format, so the export is ``--format``'s, else CSV.
PLAIN_SUFFIXES = ("", "txt")
INTEGER_COLUMNS = "integer_columns"  # the key of ``trials_frame``'s attrs naming its int columns


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


TRIAL_COLUMNS = (
    "number",
    "state",
    "value",
    "duration_s",
    "epochs_run",
    "epochs_requested",
    "best_epoch",
    "val_accuracy",
    "end_reason",
    "device",
    "datetime_start",
    "datetime_complete",
)
CURVE_COLUMNS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds")


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: ``TRIAL_COLUMNS`` (times as ISO strings), then ``params_*`` by name."""
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
            "best_epoch": attrs.get(trial_attrs.BEST_EPOCH),
            "val_accuracy": attrs.get(trial_attrs.VAL_ACCURACY),
            "end_reason": attrs.get(trial_attrs.END_REASON),
            "device": attrs.get(trial_attrs.DEVICE),
            "datetime_start": _iso(trial.datetime_start),
            "datetime_complete": _iso(trial.datetime_complete),
        }
        row.update({f"params_{name}": value for name, value in sorted(trial.params.items())})
        rows.append(row)
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(TRIAL_COLUMNS))
    frame = frame[[*TRIAL_COLUMNS, *sorted(c for c in frame.columns if c not in TRIAL_COLUMNS)]]  # a param the
    # first trials did not use (a conditional width, a variant's param) still comes in name order
    # pandas stores an int column with a gap (a running trial's epochs, a param a trial did not
    # use) as floats; the export writes these back as ints (``export_text``)
    frame.attrs[INTEGER_COLUMNS] = [
        column for column in frame.columns
        if any(row.get(column) is not None for row in rows)
        and all(_is_int(row.get(column)) for row in rows if row.get(column) is not None)
    ]
    return frame


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def curves_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial and recorded epoch: ``trial``, ``state``, ``epoch`` (from 1), then
    ``CURVE_COLUMNS`` (NaN where a value was not finite or not recorded)."""
    columns: dict[str, list[Any]] = {name: [] for name in ("trial", "state", "epoch", *CURVE_COLUMNS)}
    for trial in study.get_trials(deepcopy=False):
        curve = trial.user_attrs.get(trial_attrs.CURVE)
        if not isinstance(curve, dict):
            continue
        length = len(curve.get("val_loss") or ())
        columns["trial"] += [trial.number] * length
        columns["state"] += [trial.state.name] * length
        columns["epoch"] += range(1, length + 1)
        for name in CURVE_COLUMNS:
            values = list(curve.get(name) or ())[:length]
            columns[name] += values + [None] * (length - len(values))
    frame = pd.DataFrame(columns)
    for name in CURVE_COLUMNS:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame


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
    """The table as CSV, or as a JSON list of records (NaN as null, infinities as "inf" and "-inf"
    as the CSV writes them); int columns as ints."""
    integers = [column for column in frame.attrs.get(INTEGER_COLUMNS, ()) if column in frame.columns]
    frame = frame.astype({column: "Int64" for column in integers})
    if fmt == "csv":
        return frame.to_csv(index=False)
    records = [
        {key: json_value(value) for key, value in record.items()}
        for record in frame.to_dict(orient="records")
    ]
    return json.dumps(records, indent=2, allow_nan=False) + "\n"


def export_format(requested: str | None, output: Path | None) -> str:
    """The export's format: ``requested`` (``--format``) when given, else the one ``output``'s
    suffix names (``trials.json``), else CSV. A suffix naming the other format, or one that names
    neither (``.xlsx``, ``.db``), is refused."""
    named = output.suffix.lower().lstrip(".") if output is not None else ""
    if named in PLAIN_SUFFIXES or not named.isalpha():  # trials.txt, trials, trials.2026-12
        return requested or "csv"
    if named not in EXPORT_FORMATS:
        raise UserError(f"-o {output}: an export is CSV or JSON, not {named.upper()}; name the file "
                        f"{output.with_suffix('.csv').name} (spreadsheets open it) or {output.with_suffix('.json').name}")
    if requested is not None and requested != named:
        raise UserError(f"-o {output} names {named.upper()} but --format is {requested}; "
                        f"drop --format or name the file {output.with_suffix('.' + requested).name}")
    return named


def write_export(frame: pd.DataFrame, fmt: str, path: Path) -> None:
    """Write the export atomically (``write_text_atomically``)."""
    write_text_atomically(path, export_text(frame, fmt))


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def json_ready(value: Any) -> Any:
    """``value`` as a plain Python value: numpy scalars unwrapped, NaN and infinities as None."""
    if value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return json_ready(value.item())
    return value


def json_value(value: Any) -> Any:
    """``value`` for a JSON file: as ``json_ready``, but an infinity as the string "inf" or "-inf"
    (JSON has no number for it, and it is a value, not a missing one)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    return json_ready(value)


def is_missing(value: Any) -> bool:
    """True for None, NaN and pandas' NA: a cell with no value."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def same_choice(value: Any, choice: Any) -> bool:
    """Equal as param values: True is not 1, but 32.0 (an int column with gaps) is 32."""
    if isinstance(value, bool) or isinstance(choice, bool):
        return isinstance(value, bool) and isinstance(choice, bool) and value == choice
    return value is not None and value == choice

