"""Runs and resumes on real SQLite files: target totals, same-config checks, seeds, samplers, pruners."""

from __future__ import annotations

import hashlib

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpstudy.storage.engine import Heartbeat, open_storage
from hpstudy.storage.recovery import RetryStaleTrial, WorkerIdentity
from hpstudy.storage.stored_config import CONFIG_ATTR, VERSION_ATTR, stored_config
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study import trial_attrs
from hpstudy.study.errors import UserError
from hpstudy.study.optuna_parts import PRUNER_CLASSES, SAMPLER_CLASSES
from hpstudy.study.runner import epochs_run, resume_study, run_study, session_seed
from tests.conftest import QUICK_SPACE


def load(cfg):
    return optuna.load_study(study_name=cfg.study.name, storage=cfg.storage)


def finished(study):
    return len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))


def test_n_trials_is_a_target_total_across_runs(quick_config):
    cfg = quick_config(study__n_trials=2)
    first = run_study(cfg)
    assert first.finished == 2 and first.trials_this_run == 2 and first.stop_reason == "target reached"
    again = run_study(cfg)
    assert again.trials_this_run == 0 and finished(load(cfg)) == 2
    more = run_study(cfg.with_overrides({"study.n_trials": 4}))
    assert more.trials_this_run == 2 and finished(load(cfg)) == 4


def test_config_and_version_are_stored_and_read_back(quick_config):
    cfg = quick_config(study__n_trials=1)
    run_study(cfg)
    study = load(cfg)
    assert study.user_attrs[VERSION_ATTR]
    assert stored_config(study) == cfg
    assert study.user_attrs[CONFIG_ATTR]["search_space"] == cfg.search_space.to_dict()


def test_existing_study_with_another_config_is_refused_and_untouched(quick_config, tmp_path):
    cfg = quick_config(study__n_trials=1)
    run_study(cfg)
    path = tmp_path / "study.db"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    changed = cfg.with_overrides({"search_space.dropout": 0.4})
    with pytest.raises(UserError, match=r"exists with a different config \(search_space.dropout.*hpstudy resume"):
        run_study(changed)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_resume_rebuilds_sampler_and_pruner_from_the_stored_config(quick_config):
    cfg = quick_config(study__n_trials=2, study__sampler={"name": "random"},
                       study__pruner={"name": "percentile", "options": {"percentile": 30.0, "n_startup_trials": 1}})
    run_study(cfg)
    seen = {}

    class Spy:
        def started(self, study, **_):
            seen["sampler"], seen["pruner"] = study.sampler, study.pruner

        def trial_finished(self, study, trial):
            pass

    result = resume_study(storage_url=cfg.storage, study_name="quick", overrides={"study.n_trials": 4}, observer=Spy())
    assert result.finished == 4 and result.trials_this_run == 2
    assert isinstance(seen["sampler"], optuna.samplers.RandomSampler)
    assert isinstance(seen["pruner"], optuna.pruners.PercentilePruner)
    assert seen["pruner"]._percentile == 30.0


def test_seeded_resume_does_not_replay_samples(quick_config):
    cfg = quick_config(study__n_trials=3, study__sampler={"name": "random"}, study__seed=11)
    run_study(cfg)
    resume_study(storage_url=cfg.storage, study_name="quick", overrides={"study.n_trials": 6})
    params = [t.params for t in load(cfg).get_trials()]
    assert len(params) == 6
    assert all(p not in params[:3] for p in params[3:])


def test_same_seed_gives_same_params_and_values(quick_config, tmp_path):
    a = quick_config(study__n_trials=3, study__seed=4, train__deterministic=True)
    b = a.with_overrides({"storage": f"sqlite:///{tmp_path / 'other.db'}"})
    run_study(a)
    run_study(b)
    ta, tb = load(a).get_trials(), load(b).get_trials()
    assert [t.params for t in ta] == [t.params for t in tb]
    assert [t.value for t in ta] == [t.value for t in tb]


def test_session_seed():
    assert session_seed(5, 0) == 5
    assert session_seed(5, 3) != 5 and session_seed(5, 3) == session_seed(5, 3)
    assert session_seed(5, 3) != session_seed(5, 4)
    assert session_seed(5, 0, worker=1) != 5


@pytest.mark.parametrize("sampler", sorted(SAMPLER_CLASSES))
def test_every_sampler_runs(quick_config, sampler):
    space = {"lr": [1e-2, 3e-2], "epochs": {"low": 2, "high": 3}, "n_layers": 1, "hidden_units": [16, 32]}
    cfg = quick_config(study__n_trials=2, study__sampler={"name": sampler}, search_space=space)
    result = run_study(cfg)
    assert result.finished == 2
    assert type(load(cfg).sampler).__name__  # loadable
    assert stored_config(load(cfg)).study.sampler.name == sampler


@pytest.mark.parametrize("pruner", sorted(PRUNER_CLASSES))
def test_every_pruner_runs(quick_config, pruner):
    options = {"threshold": {"upper": 50.0}}.get(pruner, {})
    cfg = quick_config(study__n_trials=3, study__pruner={"name": pruner, "options": options})
    assert run_study(cfg).finished == 3


def test_grid_study_stops_when_the_grid_is_exhausted(quick_config):
    cfg = quick_config(study__n_trials=10, study__sampler={"name": "grid"},
                       search_space={"lr": [1e-2, 3e-2], "epochs": 2, "n_layers": 1, "hidden_units": 16})
    result = run_study(cfg)
    assert result.finished == 2
    assert sorted(t.params["lr"] for t in load(cfg).get_trials()) == [1e-2, 3e-2]


def test_missing_dataset_creates_no_storage_file(quick_config, tmp_path):
    cfg = quick_config(data__dataset="mnist", data__root=str(tmp_path / "nodata"), data__download=False,
                       data__train_subset=None, data__val_subset=None)
    with pytest.raises(UserError, match="MNIST"):
        run_study(cfg)
    assert not (tmp_path / "study.db").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_user_error(quick_config, tmp_path):
    with pytest.raises(UserError, match="no CUDA GPU is visible"):
        run_study(quick_config(train__device="cuda"))
    assert not (tmp_path / "study.db").exists()


@pytest.mark.parametrize(("dataset", "kind"), [("mnist", "mlp"), ("fashion_mnist", "cnn"), ("cifar10", "cnn"), ("cifar10", "mlp")])
def test_torchvision_datasets_run_end_to_end(quick_config, tmp_path, dataset, kind):
    from tests.helpers.datasets import write_cifar10_like, write_mnist_like

    root = tmp_path / "data"
    if dataset == "cifar10":
        write_cifar10_like(root, per_batch=40)
    else:
        write_mnist_like(root, {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[dataset], n_train=200)
    cfg = quick_config(
        study__n_trials=2, model__kind=kind, data__dataset=dataset, data__root=str(root), data__download=False,
        data__verify_checksums=False, data__train_subset=None, data__val_subset=None,
        search_space={"epochs": 2, "lr": {"low": 1e-3, "high": 1e-2, "log": True}, "channels": 4, "n_conv": 1,
                      "n_layers": 1, "hidden_units": 16, "batch_size": 32},
    )
    result = run_study(cfg)
    assert result.counts == {"COMPLETE": 2}
    for trial in load(cfg).get_trials():
        assert len(trial.user_attrs["curve"]["val_loss"]) == 2


def test_epoch_budget_stops_the_study(quick_config):
    cfg = quick_config(study__n_trials=50, study__budget_epochs=10, study__pruner={"name": "none"},
                       search_space={"epochs": {"low": 3, "high": 4}, "lr": 1e-2, "n_layers": 1, "hidden_units": 16})
    result = run_study(cfg)
    assert result.stop_reason == "epoch budget spent"
    trials = load(cfg).get_trials()
    spent = epochs_run(trials)
    assert 10 <= spent < 10 + 4, "stops at the first trial end past the budget"
    assert result.finished == len(trials) < 50
    again = run_study(cfg)
    assert again.trials_this_run == 0 and again.stop_reason == "epoch budget spent"


def test_budget_epochs_flag_reaches_the_config(tmp_path, capsys, monkeypatch):
    from hpstudy.study.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["run", "--budget-epochs", "6", "--no-report", "--set", "data.train_subset=200",
                 "--set", "search_space.epochs={low: 2, high: 3}", "--set", "study.name=b"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Stopped: epoch budget spent" in out


def test_the_command_a_spent_budget_suggests_trains_more(tmp_path, capsys, monkeypatch):
    """The hint after an epoch-budget stop raises the budget (it counts across runs): run as
    printed, it trains more trials instead of stopping again at once."""
    from hpstudy.study.cli import main

    monkeypatch.chdir(tmp_path)
    argv = ["--no-report", "--set", "data.train_subset=200", "--set", "search_space.epochs={low: 2, high: 3}",
            "--set", "study.name=b", "--set", "study.pruner.name=none"]
    assert main(["run", "--budget-epochs", "5", *argv]) == 0
    hint = capsys.readouterr().out.splitlines()[-1]
    spent = epochs_run(optuna.load_study(study_name="b", storage="sqlite:///hpstudy.db").trials)
    assert hint.startswith("Stopped: epoch budget spent; continue with: hpstudy resume --study-name b ")
    assert hint.endswith(f" --budget-epochs {spent + 5}")
    assert main(hint.split("continue with: hpstudy ")[1].split() + ["--no-report"]) == 0
    out = capsys.readouterr().out
    assert "0 trials this run" not in out and "Stopped: epoch budget spent" in out
    assert epochs_run(optuna.load_study(study_name="b", storage="sqlite:///hpstudy.db").trials) >= spent + 5


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # the remote trial is asked here
@pytest.mark.parametrize("pack", [1, 3])
def test_a_target_met_only_by_a_silent_remote_trial_waits_recovers_and_trains_its_replacement(quick_config, pack):
    """At the start of this run the target counts a trial another host is running. That host is
    dead: its heartbeat stops. The run waits past the grace period, recovers the trial and trains
    its retry, so the study ends with the target's number of finished trials, packed or not."""
    cfg = quick_config(study__n_trials=2, study__heartbeat_interval=1, study__grace_period=2, train__pack=pack,
                       search_space={**QUICK_SPACE, "epochs": 2})
    first = quick_config(study__n_trials=1, study__heartbeat_interval=1, study__grace_period=2, train__pack=pack,
                         search_space={**QUICK_SPACE, "epochs": 2})
    run_study(first)
    storage = open_storage(parse_storage_url(cfg.storage), mode="write", heartbeat=Heartbeat(1, 2, RetryStaleTrial()))
    study = optuna.load_study(study_name="quick", storage=storage)
    remote = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
    storage.set_trial_user_attr(remote._trial_id, trial_attrs.WORKER, WorkerIdentity("elsewhere.invalid", 1, None).to_dict())
    storage.record_heartbeat(remote._trial_id)

    result = run_study(cfg)
    trials = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
    assert result.finished == 2 and result.stop_reason == "target reached"
    assert [t.state for t in trials].count(TrialState.FAIL) == 1  # the remote trial, recovered
    retry = [t for t in trials if trial_attrs.lineage(t) == remote.number and t.number != remote.number]
    assert len(retry) == 1 and retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry[0].params["lr"] == remote.params["lr"]



class CtrlCWhileStarting(optuna.samplers.RandomSampler):
    """Optuna's random sampler; once armed, Ctrl-C comes while Optuna starts the next trial (in
    ``before_trial``, after the trial is stored as running, before any objective has it)."""

    armed = False

    def before_trial(self, study, trial):
        if self.armed:
            raise KeyboardInterrupt


class Trains:
    """An objective that trains nothing: it suggests ``lr`` and ends as ``outcome`` says."""

    def __init__(self, study, outcome):
        self.study, self.outcome = study, outcome

    def __call__(self, trial):
        trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize("window", ["starting the trial", "checking the target"])
def test_an_interrupt_before_the_objective_has_the_trial_still_queues_it_again(tmp_path, window):
    """Ctrl-C may come after Optuna has stored a trial as running but before the objective's first
    line: while Optuna starts it (the trial stays running), or while the target check reads the
    trials (Optuna fails it). Either way the interrupted run fails it and queues it again, and
    after a trial ends any other way nothing is left to queue."""
    from hpstudy.study.runner import _AdmitWithinTarget, _requeue_interrupted

    url = parse_storage_url(f"sqlite:///{tmp_path / 's.db'}")
    sampler = CtrlCWhileStarting(seed=1)
    backend = open_storage(url, mode="create")
    real = optuna.create_study(study_name="s", storage=backend, sampler=sampler)
    real.optimize(_AdmitWithinTarget(Trains(real, 0.5), target=10), n_trials=1)
    errs = _AdmitWithinTarget(Trains(real, ValueError("bad")), target=10)
    real.optimize(errs, n_trials=1, catch=(ValueError,))
    assert errs.current_trial is None and errs.calls == 1

    class CtrlCWhileReadingTrials:
        def get_trials(self, **kwargs):
            raise KeyboardInterrupt

    interrupted = _AdmitWithinTarget(Trains(real, 0.5), target=10)
    if window == "starting the trial":
        sampler.armed = True
    else:
        interrupted.objective.study = CtrlCWhileReadingTrials()
    with pytest.raises(KeyboardInterrupt):
        real.optimize(interrupted, n_trials=1)
    sampler.armed = False
    assert interrupted.shield.engaged == (window == "checking the target")  # the objective had the trial
    interrupted.shield.release()  # as the run does once it has queued the trial again
    assert real.trials[2].state == (TrialState.RUNNING if window == "starting the trial" else TrialState.FAIL)
    _requeue_interrupted(real, backend, interrupted.current_trial)
    states = [t.state for t in real.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL, TrialState.WAITING]
    assert trial_attrs.lineage(real.trials[3]) == 2


def test_a_pack_starts_no_trial_once_its_running_and_finished_epochs_reach_the_budget(quick_config):
    """Four queued trials of 1, 8, 8 and 8 epochs packed together with a budget of 4 epochs: when
    the 1-epoch trial ends, the other three have trained an epoch each, so the budget is spent and
    no fifth trial starts (counting finished trials only, the pack went on starting trials)."""
    from hpstudy.storage.enqueue import enqueue_params
    from hpstudy.study.runner import create_if_missing

    cfg = quick_config(study__n_trials=20, study__budget_epochs=4, train__pack=4, study__pruner={"name": "none"},
                       search_space={**QUICK_SPACE, "epochs": {"low": 1, "high": 8}})
    create_if_missing(open_storage(parse_storage_url(cfg.storage), mode="create"), cfg)
    enqueue_params(parse_storage_url(cfg.storage), "quick", [{"epochs": e} for e in (1, 8, 8, 8)])
    result = run_study(cfg)
    assert result.stop_reason == "epoch budget spent"
    finished = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
    assert sorted(t.user_attrs[trial_attrs.EPOCHS_RUN] for t in finished) == [1, 8, 8, 8]
