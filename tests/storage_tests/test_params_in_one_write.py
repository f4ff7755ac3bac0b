"""A trial's params written in one transaction: stored as Optuna stores them, checked as Optuna
checks them, and never lost when sampling fails; on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import optuna
import pytest

from hpstudy.storage.engine import open_storage, params_in_one_write
from hpstudy.storage.urls import parse_storage_url


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'params.db'}"
    return request.getfixturevalue("postgres_url")


def _suggest_all(trial: optuna.Trial) -> None:
    trial.suggest_float("lr", 1e-5, 1.0, log=True)
    trial.suggest_int("layers", 1, 4)
    trial.suggest_categorical("optimizer", ["adam", "sgd", None])
    trial.suggest_float("dropout", 0.0, 0.5, step=0.1)


def test_params_are_stored_when_the_block_ends_as_optuna_stores_them(storage_url):
    location = parse_storage_url(storage_url)
    storage = open_storage(location, mode="create")
    study = optuna.create_study(storage=storage, study_name="p", sampler=optuna.samplers.RandomSampler(seed=1))
    usual = study.ask()
    _suggest_all(usual)  # Optuna's own write, one transaction per param
    batched = study.ask()
    with params_in_one_write(storage, batched._trial_id):  # noqa: SLF001
        _suggest_all(batched)
        assert batched.params.keys() == {"lr", "layers", "optimizer", "dropout"}  # the trial knows them at once
        elsewhere = open_storage(location, mode="read")
        assert elsewhere.get_trial(batched._trial_id).params == {}  # noqa: SLF001 - not stored yet
    stored = open_storage(location, mode="read").get_trial(batched._trial_id)  # noqa: SLF001
    assert stored.params == batched.params
    assert stored.distributions == open_storage(location, mode="read").get_trial(usual._trial_id).distributions  # noqa: SLF001
    assert stored.params != usual.params  # two different random draws, both stored


def test_an_incompatible_param_fails_at_its_suggest_and_the_others_are_kept(storage_url):
    location = parse_storage_url(storage_url)
    optuna.create_study(storage=open_storage(location, mode="create"), study_name="p").optimize(
        lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1
    )
    storage = open_storage(location, mode="write")  # a new process: no distribution cached yet
    study = optuna.load_study(study_name="p", storage=storage)
    trial = study.ask()
    with pytest.raises(ValueError, match="different distribution kind"):
        with params_in_one_write(storage, trial._trial_id):  # noqa: SLF001
            trial.suggest_int("layers", 1, 3)
            trial.suggest_categorical("x", ["a", "b"])  # "x" is a float in this study
    assert open_storage(location, mode="read").get_trial(trial._trial_id).params.keys() == {"layers"}  # noqa: SLF001


def test_a_failing_block_still_stores_what_it_sampled_and_a_finished_trial_takes_none(tmp_path):
    location = parse_storage_url(f"sqlite:///{tmp_path / 'params.db'}")
    storage = open_storage(location, mode="create")
    study = optuna.create_study(storage=storage, study_name="p")
    trial = study.ask()
    with pytest.raises(RuntimeError, match="interrupted"):
        with params_in_one_write(storage, trial._trial_id):  # noqa: SLF001
            trial.suggest_float("lr", 1e-5, 1.0, log=True)
            raise RuntimeError("interrupted while sampling")
    assert set(storage.get_trial(trial._trial_id).params) == {"lr"}  # noqa: SLF001
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.store_params(trial._trial_id, {"late": (0.5, optuna.distributions.FloatDistribution(0, 1))})  # noqa: SLF001
    assert "late" not in storage.get_trial(trial._trial_id).params  # noqa: SLF001


def test_other_storages_sample_as_usual():
    study = optuna.create_study()
    trial = study.ask()
    with params_in_one_write(study._storage, trial._trial_id):  # noqa: SLF001 - in-memory: nothing to batch
        _suggest_all(trial)
    assert study.trials[0].params == trial.params
