"""Trial tables: the export keeps int columns as ints even where a row has no value, and its
format follows the output file's name unless ``--format`` says otherwise."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from hpstudy.reports.tables import export_format, export_text, trials_frame
from hpstudy.study import trial_attrs
from hpstudy.study.errors import UserError


def _study(tmp_path) -> optuna.Study:
    """Two finished trials (one with a conditional int param), a running one with no attrs yet."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'tables.db'}", study_name="tables")
    lr, units = FloatDistribution(0.1, 2.0), IntDistribution(8, 256)
    attrs = {trial_attrs.EPOCHS_RUN: 3, trial_attrs.EPOCHS_REQUESTED: 5}
    study.add_trial(create_trial(value=0.5, params={"lr": 1.0, "units": 32},
                                 distributions={"lr": lr, "units": units}, user_attrs=attrs))
    study.add_trial(create_trial(value=0.7, params={"lr": 0.5}, distributions={"lr": lr}, user_attrs=attrs))
    study.add_trial(create_trial(state=TrialState.RUNNING))
    return study


def test_params_come_in_name_order_after_the_trial_columns_even_when_the_first_trial_lacks_one(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'order.db'}", study_name="order")
    lr, units = FloatDistribution(0.1, 2.0), IntDistribution(8, 256)
    study.add_trial(create_trial(value=0.7, params={"lr": 0.5}, distributions={"lr": lr}))
    study.add_trial(create_trial(value=0.5, params={"lr": 1.0, "a_units": 32}, distributions={"lr": lr, "a_units": units}))
    columns = list(trials_frame(study).columns)
    assert columns[-2:] == ["params_a_units", "params_lr"]
    assert columns[:2] == ["number", "state"]


def test_csv_writes_int_columns_with_gaps_as_ints_and_floats_as_floats(tmp_path):
    rows = list(csv.DictReader(io.StringIO(export_text(trials_frame(_study(tmp_path)), "csv"))))
    assert [row["params_units"] for row in rows] == ["32", "", ""]
    assert [row["epochs_run"] for row in rows] == ["3", "3", ""]
    assert [row["params_lr"] for row in rows] == ["1.0", "0.5", ""]  # a float param stays a float
    assert [row["number"] for row in rows] == ["0", "1", "2"]


def test_json_writes_ints_as_ints_and_gaps_as_null(tmp_path):
    records = json.loads(export_text(trials_frame(_study(tmp_path)), "json"))
    assert [record["params_units"] for record in records] == [32, None, None]
    assert all(isinstance(record["epochs_run"], int) for record in records[:2]) and records[2]["epochs_run"] is None
    assert [record["params_lr"] for record in records] == [1.0, 0.5, None]
    assert isinstance(records[0]["params_lr"], float)


@pytest.mark.parametrize(("requested", "output", "expected"), [
    (None, None, "csv"), ("json", None, "json"), (None, "t.json", "json"), (None, "T.JSON", "json"),
    (None, "t.csv", "csv"), (None, "trials.txt", "csv"), ("json", "trials.txt", "json"), ("json", "t.json", "json"),
    (None, "trials", "csv"), ("json", "trials", "json"), (None, "trials.v2", "csv"), ("json", "trials.2026-12", "json"),
])
def test_export_format_follows_the_flag_then_the_file_suffix(requested, output, expected):
    assert export_format(requested, Path(output) if output else None) == expected


@pytest.mark.parametrize("output", ["t.xlsx", "t.parquet", "hpstudy.db", "t.yaml"])
def test_a_suffix_naming_a_format_an_export_is_not_is_refused(output):
    with pytest.raises(UserError, match=r"an export is CSV or JSON, not [A-Z]+; name the file t?\w*\.csv"):
        export_format(None, Path(output))


def test_a_suffix_naming_the_other_format_is_refused():
    with pytest.raises(UserError, match=r"-o t.csv names CSV but --format is json; drop --format or name the file t.json"):
        export_format("json", Path("t.csv"))


def test_infinite_values_are_written_as_the_csv_writes_them_and_best_json_stays_json(tmp_path, capsys):
    from hpstudy.study.cli import main

    url = f"sqlite:///{tmp_path / 'inf.db'}"
    study = optuna.create_study(storage=url, study_name="inf")
    for value in (1.0, float("-inf"), float("inf")):
        study.add_trial(create_trial(value=value, params={"lr": 1.0}, distributions={"lr": FloatDistribution(0.1, 2.0)}))
    frame = trials_frame(study)
    assert [row["value"] for row in csv.DictReader(io.StringIO(export_text(frame, "csv")))] == ["1.0", "-inf", "inf"]
    assert [record["value"] for record in json.loads(export_text(frame, "json"))] == [1.0, "-inf", "inf"]
    assert main(["best", "--storage", url, "--json"]) == 0
    best = json.loads(capsys.readouterr().out, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
    assert (best["trial"], best["value"], best["params"]) == (1, "-inf", {"lr": 1.0})
