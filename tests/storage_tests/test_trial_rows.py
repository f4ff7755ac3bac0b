"""The Core reader returns exactly what Optuna's ORM reader returns, and the batched attr write
stores what Optuna's per-attr write stores: on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import math
import time
from typing import Any

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpstudy.storage import trial_rows
from hpstudy.storage.engine import RetryingRDBStorage, open_storage
from hpstudy.storage.urls import parse_storage_url


def _comparable(trial: FrozenTrial) -> dict[str, Any]:
    """Every field of a frozen trial, NaN made comparable and dict order ignored."""

    def plain(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if isinstance(value, dict):
            return sorted((key, plain(item)) for key, item in value.items())
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    return {key: plain(value) for key, value in vars(trial).items()}


def _rich_study(storage: RetryingRDBStorage, *, directions: list[str]) -> optuna.Study:
    """Trials in every state, with every kind of param, value, attr and intermediate value."""
    study = optuna.create_study(storage=storage, study_name=f"rich-{len(directions)}", directions=directions)

    def objective(trial: optuna.Trial) -> Any:
        trial.suggest_float("lr", 1e-5, 1.0, log=True)
        trial.suggest_float("stepped", 0.0, 1.0, step=0.25)
        trial.suggest_int("layers", 1, 4)
        trial.suggest_int("width", 16, 256, log=True)
        trial.suggest_categorical("choice", [None, True, "adam", 2.5])
        trial.set_user_attr("nested", {"a": [1, 2, {"b": None}], "c": "text"})
        trial.set_user_attr("number", trial.number)
        trial.storage.set_trial_system_attr(trial._trial_id, "system", [trial.number, "x"])  # noqa: SLF001
        if len(directions) == 1:  # Optuna reports single-objective trials only
            for step, value in enumerate([0.5, float("inf"), float("-inf"), float("nan"), 0.25]):
                trial.report(value, step)
        if trial.number % 4 == 1:
            raise optuna.TrialPruned()
        if trial.number % 4 == 2:
            raise ValueError("a failed trial")
        values = [float(trial.number), float("inf") if trial.number == 3 else -1.5]
        return values[0] if len(directions) == 1 else values

    study.optimize(objective, n_trials=9, catch=(ValueError,))
    running = study.ask()
    running.suggest_float("lr", 1e-5, 1.0, log=True)
    running.set_user_attr("worker", {"host": "h", "pid": 1})
    study.enqueue_trial({"lr": 0.01, "layers": 2}, user_attrs={"queued": True})  # WAITING, no start time
    return study


@pytest.fixture
def away_from_utc(monkeypatch):
    """Local time 5 h 30 min ahead of UTC, so that stored (UTC) and returned (local) times differ."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rows.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.parametrize("directions", [["minimize"], ["minimize", "maximize"]])
def test_reads_equal_optunas_own_for_every_filter(storage_url, directions, away_from_utc):
    storage = open_storage(parse_storage_url(storage_url), mode="create")
    study = _rich_study(storage, directions=directions)
    study_id = study._study_id  # noqa: SLF001
    trials = study.get_trials()
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                         TrialState.WAITING, TrialState.RUNNING}
    ids = [t._trial_id for t in trials]  # noqa: SLF001
    filters = [
        (None, set(), -1),
        ((TrialState.COMPLETE,), set(), -1),
        ((TrialState.WAITING, TrialState.RUNNING), set(), -1),
        (None, {ids[1], ids[3], ids[-1]}, ids[5]),  # the cache's refresh: some older ids and all newer
        (None, set(), ids[6]),
        ((TrialState.PRUNED,), {ids[1]}, ids[2]),
    ]
    for states, included, greater_than in filters:
        ours = storage._get_trials(study_id, states, included, greater_than)  # noqa: SLF001
        theirs = RDBStorage._get_trials(storage, study_id, states, included, greater_than)  # noqa: SLF001
        assert [t.number for t in ours] == [t.number for t in theirs]
        assert len(ours) > 0
        assert [_comparable(t) for t in ours] == [_comparable(t) for t in theirs]
    for trial_id in ids:
        assert _comparable(storage.get_trial(trial_id)) == _comparable(RDBStorage.get_trial(storage, trial_id))


def test_reads_in_chunks_and_reports_missing_rows(tmp_path):
    storage = open_storage(parse_storage_url(f"sqlite:///{tmp_path / 'rows.db'}"), mode="create")
    study = _rich_study(storage, directions=["minimize"])
    condition = trial_rows.trial_condition(study_id=study._study_id)  # noqa: SLF001
    with storage.scoped_session() as session:
        chunked = trial_rows.read_trials(session, condition, chunk=2)
    assert [_comparable(t) for t in chunked] == [_comparable(t) for t in study.get_trials()]
    with pytest.raises(KeyError):
        storage.get_trial(10_000)
    with pytest.raises(KeyError):
        storage._get_trials(10_000, None, set(), -1)  # noqa: SLF001


def test_batched_attrs_insert_replace_and_refuse_finished_trials(storage_url):
    storage = open_storage(parse_storage_url(storage_url), mode="create")
    study = optuna.create_study(storage=storage, study_name="attrs")
    trial = study.ask()
    trial_id = trial._trial_id  # noqa: SLF001
    storage.set_trial_user_attrs(trial_id, {"a": 1, "b": {"nested": [1, None]}})
    storage.set_trial_user_attrs(trial_id, {"b": "replaced", "c": [float("inf")]})
    assert storage.get_trial(trial_id).user_attrs == {"a": 1, "b": "replaced", "c": [float("inf")]}
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_user_attrs(trial_id, {"a": 2, "d": 4})
    assert storage.get_trial(trial_id).user_attrs["a"] == 1
    assert "d" not in storage.get_trial(trial_id).user_attrs
    with pytest.raises(KeyError):
        storage.set_trial_user_attrs(10_000, {"a": 1})


def test_batched_intermediate_values_add_replace_and_refuse_finished_trials(storage_url):
    storage = open_storage(parse_storage_url(storage_url), mode="create")
    study = optuna.create_study(storage=storage, study_name="values")
    trial = study.ask()
    trial_id = trial._trial_id  # noqa: SLF001
    storage.set_trial_intermediate_values(trial_id, {0: 1.0, 1: 0.5})
    storage.set_trial_intermediate_values(trial_id, {1: 0.25, 2: float("inf")})
    assert storage.get_trial(trial_id).intermediate_values == {0: 1.0, 1: 0.25, 2: float("inf")}
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_intermediate_values(trial_id, {3: 0.1})
    assert 3 not in storage.get_trial(trial_id).intermediate_values
    with pytest.raises(KeyError):
        storage.set_trial_intermediate_values(10_000, {0: 1.0})
