"""The objective inside real studies on real SQLite files: what each trial stores, pruning, divergence."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from hpstudy.study import trial_attrs
from hpstudy.study.objective import trial_seed
from hpstudy.study.runner import run_study


def load(cfg):
    return optuna.load_study(study_name=cfg.study.name, storage=cfg.storage)


def test_each_trial_stores_its_curve_and_value(quick_config):
    cfg = quick_config(study__n_trials=3, study__pruner={"name": "none"})
    run_study(cfg)
    trials = load(cfg).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for trial in trials:
        curve = trial.user_attrs[trial_attrs.CURVE]
        n = trial.params["epochs"]
        assert trial.user_attrs[trial_attrs.EPOCHS_RUN] == n == trial.user_attrs[trial_attrs.EPOCHS_REQUESTED]
        assert all(len(curve[key]) == n for key in ("train_loss", "val_loss", "val_accuracy", "epoch_seconds"))
        assert trial.value == pytest.approx(min(curve["val_loss"]))
        assert [trial.intermediate_values[e] for e in range(1, n + 1)] == pytest.approx(curve["val_loss"])
        best_epoch = trial.user_attrs[trial_attrs.BEST_EPOCH]
        assert curve["val_loss"][best_epoch - 1] == pytest.approx(trial.value)
        assert trial.user_attrs[trial_attrs.VAL_ACCURACY] == curve["val_accuracy"][best_epoch - 1]
        assert trial.user_attrs[trial_attrs.HYPERPARAMS]["lr"] == trial.params["lr"]
        assert trial.user_attrs[trial_attrs.END_REASON] == "completed"


def test_diverging_trial_is_pruned_with_its_reason_and_the_study_goes_on(quick_config):
    space = {"lr": [1e5, 1e-2], "optimizer": "sgd", "epochs": 3, "n_layers": 1, "hidden_units": 32}
    cfg = quick_config(study__n_trials=4, search_space=space, study__sampler={"name": "grid"},
                       study__pruner={"name": "none"})
    run_study(cfg)
    trials = load(cfg).get_trials()
    diverged = [t for t in trials if t.params["lr"] == 1e5]
    healthy = [t for t in trials if t.params["lr"] == 1e-2]
    assert diverged and all(t.state == TrialState.PRUNED for t in diverged)
    assert all("diverged" in t.user_attrs[trial_attrs.END_REASON] for t in diverged)
    assert all(t.value is None for t in diverged)  # never ranked
    assert healthy and all(t.state == TrialState.COMPLETE for t in healthy)


def test_median_pruner_prunes_weak_trials(quick_config):
    space = {"lr": {"low": 1e-6, "high": 1e-1, "log": True}, "epochs": 6, "n_layers": 1, "hidden_units": 32}
    cfg = quick_config(study__n_trials=12, search_space=space, study__sampler={"name": "random"},
                       study__pruner={"name": "median", "options": {"n_startup_trials": 3, "n_warmup_steps": 1}})
    run_study(cfg)
    trials = load(cfg).get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the weakest learning rates are pruned"
    for trial in pruned:
        run = trial.user_attrs[trial_attrs.EPOCHS_RUN]
        assert run < 6 and trial.user_attrs[trial_attrs.END_REASON] == f"pruned at epoch {run}"
        assert len(trial.user_attrs[trial_attrs.CURVE]["val_loss"]) == run


def test_accuracy_metric_maximizes_the_best_epoch_accuracy(quick_config):
    cfg = quick_config(study__n_trials=2, study__metric="val_accuracy", study__pruner={"name": "none"})
    run_study(cfg)
    study = load(cfg)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    for trial in study.get_trials():
        assert trial.value == pytest.approx(max(trial.user_attrs[trial_attrs.CURVE]["val_accuracy"]))


def test_early_stopping_is_recorded(quick_config):
    cfg = quick_config(study__n_trials=1, search_space={"epochs": 30, "lr": 1e-2},
                       train__early_stopping={"patience": 1, "min_delta": 5.0}, study__pruner={"name": "none"})
    run_study(cfg)
    trial = load(cfg).get_trials()[0]
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs[trial_attrs.EPOCHS_RUN] == 2
    assert trial.user_attrs[trial_attrs.END_REASON] == "early stopped at epoch 2"


def test_trial_seeds_differ_by_number_and_repeat():
    assert trial_seed(0, 1) != trial_seed(0, 2)
    assert trial_seed(0, 1) == trial_seed(0, 1)
    assert trial_seed(0, 1, repeat=0) == trial_seed(0, 7, repeat=0)
    assert trial_seed(0, 1, repeat=0) != trial_seed(0, 1, repeat=1)
    assert all(0 <= trial_seed(s, n) < 2**32 for s in range(3) for n in range(3))
    assert not math.isnan(trial_seed(1, 1))
