"""Several worker processes on one SQLite file or one PostgreSQL database: exact totals, queued
trials run once, no lock errors, passwords never shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpstudy.storage.stored_config import recorded_runs
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SMALL = """
study: {{name: {name}, n_trials: {n_trials}, pruner: {{name: median, options: {{n_startup_trials: 3, n_warmup_steps: 1}}}}}}
data: {{train_subset: 300, val_subset: 150}}
train: {{device: cpu}}
search_space: {{epochs: {{low: 2, high: 3}}, n_layers: 1, hidden_units: {{low: 16, high: 32}}, lr: {{low: 0.001, high: 0.05, log: true}}, batch_size: [32, 64]}}
"""


def write_config(folder, name, n_trials):
    path = folder / f"{name}.yaml"
    path.write_text(SMALL.format(name=name, n_trials=n_trials))
    return path


def check_exact_run(url, name, n_trials, result):
    assert result.returncode == 0, result.stderr
    assert "database is locked" not in result.stderr + result.stdout
    study = optuna.load_study(study_name=name, storage=url)
    states = Counter(t.state for t in study.get_trials())
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == n_trials
    assert states[TrialState.RUNNING] == 0
    runs = recorded_runs(study)  # one record per worker process
    assert len(runs) == 4, runs
    assert len({r["sampler_seed"] for r in runs}) == 4, "each worker samples with its own seed"
    assert sum(r["trials"] for r in runs) >= n_trials
    # the four share this machine's threads: one PyTorch thread per core each would oversubscribe it
    threads = max(1, torch.get_num_threads() // 4)
    assert {r["device"] for r in runs} == {f"cpu ({threads} thread{'s' if threads != 1 else ''})"}, runs
    return study


def test_four_workers_on_one_sqlite_file(tmp_path):
    """run --workers 4 meets its target exactly (resume --workers: see the budget-and-pack test)."""
    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    result = run_cli("run", str(write_config(tmp_path, "w4", 8)), "--workers", "4", "--no-report",
                     cwd=tmp_path, timeout=400)
    check_exact_run(url, "w4", 8, result)
    assert "8 of 8 finished" in result.stdout


@pytest.mark.postgres
def test_four_workers_on_postgres_and_no_password_is_shown(tmp_path, postgres_url):
    secret_url = postgres_url.replace("postgres@", "postgres:hunter2secret@")  # trust auth ignores it
    result = run_cli("run", str(write_config(tmp_path, "pg4", 8)), "--workers", "4", "--storage", secret_url,
                     cwd=tmp_path, timeout=400)
    study = check_exact_run(postgres_url, "pg4", 8, result)
    assert "hunter2secret" not in result.stdout + result.stderr
    assert "***" in result.stdout
    assert "hunter2secret" not in json.dumps(study.user_attrs)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".json", ".csv", ".log", ".txt"):
            assert "hunter2secret" not in path.read_text(errors="ignore"), path


def test_queued_trials_run_exactly_once_with_four_processes_on_sqlite(tmp_path, monkeypatch, capsys):
    from hpstudy.study.cli import main

    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    config = write_config(tmp_path, "queue", 24)
    monkeypatch.chdir(tmp_path)  # the study and its queue made in process; the workers are real processes
    assert main(["run", str(config), "--n-trials", "1", "--no-report"]) == 0
    queued = [{"lr": round(0.001 + 0.001 * i, 6), "hidden_units": 16 + (i % 17), "batch_size": 32, "epochs": 2}
              for i in range(24)]
    capsys.readouterr()
    assert main(["enqueue", "--study-name", "queue", "--params", json.dumps(queued)]) == 0
    assert "Queued 24" in capsys.readouterr().out
    env = {**os.environ, "HPSTUDY_STORAGE": url}
    workers = [subprocess.Popen([sys.executable, "-m", "hpstudy.study.cli", "worker", "--study-name", "queue",
                                 "--n-trials", "25", "--quiet"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [w.communicate(timeout=400) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
        assert "Cannot tell" not in err and "database is locked" not in err
    study = optuna.load_study(study_name="queue", storage=url)
    runs = Counter(
        (t.params["lr"], t.params["hidden_units"]) for t in study.get_trials() if t.user_attrs.get("enqueued")
        and t.state in FINISHED
    )
    assert len(runs) == 24 and set(runs.values()) == {1}, "every queued trial ran exactly once"
    states = Counter(t.state for t in study.get_trials())
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == 25
    assert states[TrialState.WAITING] == 0 and states[TrialState.RUNNING] == 0


def test_enqueue_refuses_params_outside_the_space(tmp_path, monkeypatch, capsys):
    from hpstudy.study.cli import main

    config = write_config(tmp_path, "q", 2)
    monkeypatch.chdir(tmp_path)  # in process: each case is one line on stderr and exit 2, nothing queued
    assert main(["run", str(config), "--n-trials", "1", "--no-report"]) == 0
    for params, message in [('{"lr": 5.0}', "outside the study's space"), ('{"lrr": 0.01}', "did you mean 'lr'"),
                            ('{"n_layers": 2}', "fixed at 1"), ("[1, 2]", "JSON object"), ("{", "not valid YAML")]:
        capsys.readouterr()
        assert main(["enqueue", "--study-name", "q", "--params", params]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (params, err)
    study = optuna.load_study(study_name="q", storage=f"sqlite:///{tmp_path / 'hpstudy.db'}")
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_resume_with_workers_passes_on_budget_and_pack_and_shows_the_queued_trials_it_trains(tmp_path):
    """resume --workers 2 --budget-epochs N --pack 2 on a study stopped by its budget, with two
    trials queued: the workers train to the new budget, packed (they read both from the stored
    config: 0 trials, unpacked), and the queued trials show as they end and count as this run's
    (they were taken as seen at the start)."""
    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    first = run_cli("run", str(write_config(tmp_path, "wb", 40)), "--budget-epochs", "3", "--no-report", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = optuna.load_study(study_name="wb", storage=url).get_trials()
    queued = run_cli("enqueue", "--study-name", "wb", "--storage", url, "--params",
                     '[{"lr": 0.01, "batch_size": 32}, {"lr": 0.02, "batch_size": 64}]', cwd=tmp_path)
    assert queued.returncode == 0, queued.stderr
    result = run_cli("resume", "--study-name", "wb", "--storage", url, "--workers", "2", "--budget-epochs", "12",
                     "--pack", "2", "--no-report", cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="wb", storage=url)
    assert sum(t.user_attrs["epochs_run"] for t in study.get_trials() if t.state in FINISHED) >= 12 > sum(
        t.user_attrs["epochs_run"] for t in before)
    workers = recorded_runs(study)[1:]  # from the stored config, with this run's budget and pack
    assert len(workers) == 2 and {run["pack"] for run in workers} == {2}
    assert {run["sampler"] for run in workers} == {"TPESampler"} and {run["pruner"] for run in workers} == {"MedianPruner"}
    ended = [t for t in study.get_trials() if t.state in FINISHED and t.number >= len(before)]
    lines = result.stdout.splitlines()
    for number in (len(before), len(before) + 1):  # the queued two
        assert any(line.startswith(f"trial {number} ") for line in lines), number
    assert f"{len(ended)} trials this run" in result.stdout


def test_hints_leave_out_a_storage_url_that_comes_from_the_environment(tmp_path, postgres_url, monkeypatch, capsys):
    """With the URL (and its password) in $HPSTUDY_STORAGE, a printed command names no --storage:
    with the password masked, the URL it would name cannot log in, and the command finds the
    storage in the environment anyway. Run as printed, it runs the queued trial."""
    from hpstudy.study.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPSTUDY_STORAGE", postgres_url.replace("postgres@", "postgres:hunter2secret@"))
    assert main(["run", str(write_config(tmp_path, "pgenv", 1)), "--no-report"]) == 0
    capsys.readouterr()
    assert main(["enqueue", "--study-name", "pgenv", "--params", '{"lr": 0.02}']) == 0
    hint = capsys.readouterr().out.split("raise the target to run them all: ")[1].strip()
    assert hint == "hpstudy resume --study-name pgenv --n-trials 2"
    assert main([*hint.split()[1:], "--no-report"]) == 0
    assert len(optuna.load_study(study_name="pgenv", storage=postgres_url).get_trials()) == 2
