"""Recovery of trials whose process died: dead local workers at once, silent remote ones by heartbeat."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from hpstudy.storage.engine import Heartbeat, open_storage
from hpstudy.storage.recovery import (
    WORKER_ATTR,
    RetryStaleTrial,
    WorkerIdentity,
    fail_and_retry,
    process_alive,
    recover_abandoned_trials,
)
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study import trial_attrs


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_identity_of_this_process_is_alive():
    me = WorkerIdentity.current()
    assert me.pid == os.getpid() and me.host == socket.gethostname()
    assert not me.is_dead_here()
    assert WorkerIdentity.from_attr(me.to_dict()) == me


def test_dead_pid_reused_pid_and_other_host():
    assert WorkerIdentity(socket.gethostname(), dead_pid(), None).is_dead_here()
    me = WorkerIdentity.current()
    assert WorkerIdentity(me.host, me.pid, (me.started or 0) + 12345).is_dead_here(), "same pid, other process"
    assert not WorkerIdentity("another-machine", dead_pid(), None).is_dead_here(), "never judge other hosts"


def test_zombie_counts_as_dead():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while process_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # exited but not reaped: a zombie
    assert not process_alive(process.pid)
    process.wait()


def running_trial(study, worker):
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr(trial_attrs.TRIAL_SEED, 7)
    trial.set_user_attr(WORKER_ATTR, worker)
    trial.set_user_attr(trial_attrs.DEVICE, "cuda:1")  # where this attempt ran, not where its retry will
    return trial


def test_trials_of_dead_local_workers_are_failed_and_requeued(tmp_path):
    storage = open_storage(parse_storage_url(f"sqlite:///{tmp_path / 's.db'}"), mode="create")
    study = optuna.create_study(storage=storage, study_name="s")
    dead = running_trial(study, WorkerIdentity(socket.gethostname(), dead_pid(), None).to_dict())
    alive = running_trial(study, WorkerIdentity.current().to_dict())
    remote = running_trial(study, WorkerIdentity("elsewhere", 1, None).to_dict())

    assert recover_abandoned_trials(study, grace_seconds=2) == [dead.number]
    trials = {t.number: t for t in study.get_trials()}
    assert trials[dead.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING
    assert trials[remote.number].state == TrialState.RUNNING
    (retry,) = [t for t in trials.values() if t.state == TrialState.WAITING]
    assert retry.params == trials[dead.number].params
    assert retry.system_attrs["failed_trial"] == dead.number
    assert trial_attrs.lineage(retry) == dead.number
    assert retry.user_attrs == {trial_attrs.TRIAL_SEED: 7}, "the dead attempt's worker and device are not inherited"
    assert recover_abandoned_trials(study, grace_seconds=2) == [], "nothing twice"


def test_a_trial_is_recovered_by_only_one_caller(tmp_path):
    storage = open_storage(parse_storage_url(f"sqlite:///{tmp_path / 's.db'}"), mode="create")
    study = optuna.create_study(storage=storage, study_name="s")
    running_trial(study, {})
    frozen = study.get_trials(states=(TrialState.RUNNING,))[0]
    assert fail_and_retry(study, frozen) is True
    assert fail_and_retry(study, frozen) is False
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_silent_remote_worker_is_recovered_after_the_grace_period(tmp_path):
    location = parse_storage_url(f"sqlite:///{tmp_path / 's.db'}")
    storage = open_storage(location, mode="create", heartbeat=Heartbeat(1, 2, RetryStaleTrial()))
    study = optuna.create_study(storage=storage, study_name="s")
    trial = running_trial(study, WorkerIdentity("elsewhere", 1, None).to_dict())
    storage.record_heartbeat(trial._trial_id)
    assert recover_abandoned_trials(study, grace_seconds=2) == [], "within the grace period the worker may be alive"
    time.sleep(3.2)
    assert recover_abandoned_trials(study, grace_seconds=2) == [trial.number]


def test_retry_callback_keeps_retry_history(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    running_trial(study, {})
    first = study.get_trials(states=(TrialState.RUNNING,))[0]
    fail_and_retry(study, first)
    second = study.ask()
    assert second.number == 1
    frozen = study.get_trials(states=(TrialState.RUNNING,))[0]
    fail_and_retry(study, frozen)
    third = study.get_trials(states=(TrialState.WAITING,))[0]
    assert third.system_attrs["retry_history"] == [0, 1]
    assert trial_attrs.lineage(third) == 0


@pytest.mark.postgres
def test_recovery_on_postgres(postgres_url):
    storage = open_storage(parse_storage_url(postgres_url), mode="create")
    study = optuna.create_study(storage=storage, study_name="pg")
    dead = running_trial(study, WorkerIdentity(socket.gethostname(), dead_pid(), None).to_dict())
    assert recover_abandoned_trials(study, grace_seconds=2) == [dead.number]
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]


def test_a_trial_killed_before_it_claimed_a_worker_is_recovered_after_the_grace_period(tmp_path):
    storage = open_storage(parse_storage_url(f"sqlite:///{tmp_path / 's.db'}"), mode="create")
    study = optuna.create_study(storage=storage, study_name="s")
    orphan = study.ask()  # created by Optuna; its process died before writing anything
    orphan.suggest_float("x", 0, 1)
    claimed = running_trial(study, WorkerIdentity("elsewhere", 1, None).to_dict())
    assert recover_abandoned_trials(study, grace_seconds=1.0) == []
    time.sleep(1.5)
    assert recover_abandoned_trials(study, grace_seconds=1.0) == [orphan.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[claimed.number] == TrialState.RUNNING, "a claimed trial is left to its worker"
