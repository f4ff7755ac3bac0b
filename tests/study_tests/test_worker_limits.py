"""Worker counts, device names and flags that contradict each other: one line, exit 2, nothing
written; a finished study starts no worker; a worker's index is bounded."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from hpstudy.storage.stored_config import recorded_runs
from hpstudy.study.cli import main
from hpstudy.study.errors import UserError
from hpstudy.study.workers import WorkerPlan, most_workers, worker_failures, workers_with_work

CONFIG = """
study: {name: lim, n_trials: 2, pruner: {name: none}}
data: {train_subset: 200, val_subset: 100}
train: {device: cpu}
search_space: {epochs: 2, n_layers: 1, hidden_units: 16, lr: {low: 0.001, high: 0.05, log: true}, batch_size: [64]}
"""

REFUSED_RUNS = [
    (["--workers", "0"], "--workers must be at least 1"),
    (["--workers", "-3"], "--workers must be at least 1"),
    (["--workers", "100000"], "at most"),
    (["--devices", "tpu9,cpu"], "'tpu9' is not a device"),
    (["--workers", "1", "--devices", "meta"], "'meta' is not a device"),
    (["--device", "cpu\n"], "'cpu\\n'"),
    (["--devices", "cpu\n,cuda\t:0"], "'cuda\\t:0' is not a device"),
    (["--devices", ",,,"], "names no device"),
    (["--devices", "cpu,,auto"], "empty entry"),
    (["--devices", "cpu,cpu"], "lists 'cpu' twice"),
    (["--devices", "cuda:99"], "cuda:99"),
    (["--workers", "1", "--devices", "cpu,auto"], "--workers 2"),
    (["--device", "cpu", "--devices", "cpu"], "give --device or --devices"),
    (["--no-report", "--report", "out.html"], "give --no-report or --report PATH"),
    (["--print-config", "--workers", "2"], "--print-config runs nothing, so --workers"),
    (["--print-config", "--no-report"], "--print-config runs nothing, so --no-report"),
    (["--n-trials", "3", "--set", "study.n_trials=4"], "both set study.n_trials"),
    (["--seed", "1", "--set", "study.seed=2"], "both set study.seed"),
    (["--pack", "2", "--set", " train.pack =3"], "both set train.pack"),
    (["--pack", "0"], "train.pack"),
    (["--n-trials", "-1"], "study.n_trials"),
    (["--timeout", "-5"], "study.timeout"),
]


def _refused(argv: list[str], message: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``hpstudy ARGV`` exits 2 with one line holding ``message``, and leaves ``folder`` as it was."""
    before = {path: path.stat().st_mtime_ns for path in folder.rglob("*")}
    capsys.readouterr()
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*")} == before, argv


def test_bad_worker_device_and_flag_values_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSTUDY_STORAGE", raising=False)
    (tmp_path / "lim.yaml").write_text(CONFIG)
    for flags, message in REFUSED_RUNS:
        _refused(["run", "lim.yaml", *flags], message, tmp_path, capsys)
    assert main(["run", "lim.yaml", "--no-report"]) == 0  # a study to resume and join
    for flags, message in [*REFUSED_RUNS[:3], (["--devices", "meta"], "'meta' is not a device"),
                           (["--report", "out.html", "--no-report"], "give --no-report or --report PATH"),
                           (["--print-config", "--devices", "cpu"], "--print-config runs nothing")]:
        _refused(["resume", *flags], message, tmp_path, capsys)
    for index in ("-5", str(10**30)):
        _refused(["worker", "--worker-index", index], "--worker-index", tmp_path, capsys)


def test_a_finished_study_starts_no_worker(tmp_path, monkeypatch, capsys):
    """resume --workers N on a study at its target says so and exits 0, as a plain resume does,
    and starts no worker (each would record a run in the study)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSTUDY_STORAGE", raising=False)
    (tmp_path / "lim.yaml").write_text(CONFIG)
    assert main(["run", "lim.yaml", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["resume", "--workers", str(min(4, most_workers())), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "nothing left to run" in out and "reached its target" in out
    study = optuna.load_study(study_name="lim", storage=f"sqlite:///{tmp_path / 'hpstudy.db'}")
    assert len(recorded_runs(study)) == 1, "no worker was started"
    cfg_more = _config(tmp_path, n_trials=5)
    assert workers_with_work(cfg_more, study) == 3  # one per trial left
    assert workers_with_work(_config(tmp_path, n_trials=2), study) == 0
    assert workers_with_work(_config(tmp_path, n_trials=5, budget_epochs=4), study) == 0  # 2 x 2 epochs spent


def _config(folder: Path, **study: int):
    from hpstudy.study.config import load_config

    (folder / "more.yaml").write_text(CONFIG)
    values = {f"study.{key}": value for key, value in study.items()}
    return load_config(folder / "more.yaml", values={"storage": f"sqlite:///{folder / 'hpstudy.db'}", **values})


def test_workers_are_bounded_and_fewer_start_when_fewer_trials_are_left():
    with pytest.raises(UserError, match=rf"at most {most_workers()} \(4 per CPU core"):
        WorkerPlan.make(most_workers() + 1, None, "cpu")
    plan = WorkerPlan.make(4, ["cpu"], "cpu", cpu_threads=4)
    fewer = plan.limited_to(2)
    assert (fewer.count, fewer.devices, fewer.threads) == (2, ("cpu", "cpu"), 2)
    assert fewer.describe(asked=4) == "cpu, 2 workers (not 4: 2 trials are left)"
    assert plan.limited_to(0).count == 0 and plan.limited_to(9) == plan


def test_a_worker_that_failed_is_named_with_how_it_ended():
    processes = [subprocess.Popen([sys.executable, "-c", code]) for code in (
        "pass", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "raise SystemExit(2)")]
    for process in processes:
        process.wait()
    assert worker_failures(processes) == (
        f"worker 2 (pid {processes[1].pid}) was killed by {signal.SIGKILL.name}",
        f"worker 3 (pid {processes[2].pid}) stopped with exit code 2 (its one-line error is above)",
    )
