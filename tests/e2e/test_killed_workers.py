"""kill -9 of the workers of `run --workers 2`: the parent says in one line which workers ended how,
exits 1 without a traceback, and leaves their trials queued again, so the next run retries them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpstudy.study.cli import main

pytestmark = pytest.mark.slow

CONFIG = """
study: {name: killed, n_trials: 40, pruner: {name: none}}
data: {train_subset: 256, val_subset: 64}
train: {device: cpu, early_stopping: {patience: null}}
search_space: {epochs: 20, n_layers: 1, hidden_units: 32, lr: {low: 0.001, high: 0.05, log: true}, batch_size: [32]}
"""


RUNNING_WORKERS = ("SELECT t.number, a.value_json FROM trials t JOIN trial_user_attributes a "
                   "ON a.trial_id = t.trial_id WHERE t.state = 'RUNNING' AND a.key = 'worker' "
                   "AND EXISTS (SELECT 1 FROM trial_params p WHERE p.trial_id = t.trial_id)")  # training by then


def _kill_each_worker_in_a_trial(database: Path, killed: dict[int, int], stop: threading.Event) -> None:
    """Kill -9 each worker process once it holds a running trial (``killed``: pid -> trial number).
    Reads the file read-only: opening a missing one through Optuna would create it."""
    while not stop.is_set() and len(killed) < 2:
        time.sleep(0.05)
        try:
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as connection:
                rows = connection.execute(RUNNING_WORKERS).fetchall()
        except sqlite3.Error:  # not there yet, or no tables yet
            continue
        for number, worker in rows:
            pid = json.loads(worker).get("pid")
            if pid and pid != os.getpid() and pid not in killed:
                killed[pid] = number
                os.kill(pid, signal.SIGKILL)


def test_killed_workers_are_named_in_one_line_and_their_trials_are_retried(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSTUDY_STORAGE", raising=False)
    (tmp_path / "killed.yaml").write_text(CONFIG)
    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    killed: dict[int, int] = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_each_worker_in_a_trial, args=(tmp_path / "hpstudy.db", killed, stop),
                              daemon=True)
    killer.start()
    try:
        code = main(["run", "killed.yaml", "--workers", "2", "--no-report"])
    finally:
        stop.set()
        killer.join()
    err = capsys.readouterr().err
    assert len(killed) == 2, killed
    assert code == 1, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for number, pid in enumerate(sorted(killed), start=1):  # started in order, so numbered by pid
        assert f"worker {number} (pid {pid}) was killed by SIGKILL" in err, err
    assert "queued again" in err and "hpstudy resume --study-name killed" in err, err

    study = optuna.load_study(study_name="killed", storage=url)
    trials = {t.number: t for t in study.get_trials()}
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]
    waiting = [t for t in trials.values() if t.state == TrialState.WAITING]
    for number in killed.values():
        assert trials[number].state == TrialState.FAIL
        assert any(t.params == trials[number].params for t in waiting), number

    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials.values())
    assert main(["resume", "--n-trials", str(finished + len(waiting)), "--no-report"]) == 0  # the next run retries them
    retried = optuna.load_study(study_name="killed", storage=url).get_trials()
    assert Counter(t.state for t in retried)[TrialState.WAITING] == 0
    for number in killed.values():
        assert any(t.state == TrialState.COMPLETE and t.params == trials[number].params for t in retried), number
