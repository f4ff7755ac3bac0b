"""Real processes killed for real: SIGTERM, SIGINT and repeated SIGKILL, then resumed; nothing lost."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpstudy.study import trial_attrs
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def slow_config(folder: Path, *, name: str, n_trials: int, epochs: int) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"study: {{name: {name}, n_trials: {n_trials}, heartbeat_interval: 1, grace_period: 3, "
        "pruner: {name: median, options: {n_startup_trials: 100}}}\n"
        "train: {device: cpu, checkpoint_every: 1}\n"
        f"search_space: {{epochs: {epochs}, n_layers: 1, hidden_units: 32, batch_size: 32, "
        "lr: {low: 0.001, high: 0.01, log: true}}\n"
    )
    return path


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials()
    except Exception:  # the file or the study does not exist yet
        return []


def start(config: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hpstudy.study.cli", "run", str(config), "--no-report"],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def checkpoint_files(cwd: Path, name: str) -> list[Path]:
    return list((cwd / "hpstudy.db.checkpoints").glob(f"{name}-*/trial-*.pt"))  # <study>-<its id>


def test_sigterm_fails_and_requeues_the_running_trial_with_exit_143(tmp_path, monkeypatch):
    from hpstudy.study.cli import main

    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    process = start(slow_config(tmp_path, name="term", n_trials=3, epochs=60), tmp_path)
    wait_until(lambda: checkpoint_files(tmp_path, "term"))
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Terminated (SIGTERM)" in out and "hpstudy resume --study-name term" in out
    states = [t.state for t in trials(url, "term")]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.WAITING) == 1
    monkeypatch.chdir(tmp_path)  # the resume in process: the terminated run was the real process
    assert main(["resume", "--study-name", "term", "--no-report"]) == 0
    final = trials(url, "term")
    assert sum(t.state in FINISHED for t in final) == 3
    retried = [t for t in final if t.user_attrs.get(trial_attrs.RESUMED_FROM)]
    assert retried and retried[0].user_attrs[trial_attrs.RESUMED_FROM]["epoch"] >= 1
    assert not checkpoint_files(tmp_path, "term"), "finished trials leave no checkpoint"


def test_ctrl_c_stops_every_worker_even_when_started_with_sigint_ignored(tmp_path):
    """``hpstudy run --workers 2 &`` in a script starts with SIGINT ignored; the workers must not
    inherit that, or the Ctrl-C the parent passes on would be lost and the run go on to its end."""
    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    config = slow_config(tmp_path, name="ign", n_trials=8, epochs=400)
    process = subprocess.Popen(
        [sys.executable, "-m", "hpstudy.study.cli", "run", str(config), "--workers", "2", "--no-report"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as a shell starts `cmd &`
    )
    try:
        wait_until(lambda: sum(t.state == TrialState.RUNNING for t in trials(url, "ign")) == 2, timeout=180)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:  # the workers go on: SIGTERM reaches them through the parent
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=90)
    assert process.returncode == 130, err
    assert "Interrupted" in out
    states = [t.state for t in trials(url, "ign")]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.FAIL) == 2 and states.count(TrialState.WAITING) == 2
    assert sum(state in FINISHED for state in states) == 0  # stopped in the first trials, not at the end


def test_chaos_repeated_sigkill_then_resume_loses_nothing(tmp_path):
    """At least 10 kill -9 at random moments: finished trials never go down, the target is met
    exactly, nothing stays RUNNING, the file passes SQLite's integrity check, and a killed trial
    continues from its checkpoint epoch."""
    rng = random.Random(20261123)
    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    # More trials than ten killed runs can finish on a fast machine: each run is killed within a
    # trial or two of its first one, so the kills, not the machine's speed, decide the rounds.
    target = 18
    config = slow_config(tmp_path, name="chaos", n_trials=target, epochs=10)
    finished_counts = [0]
    kills = 0
    for round_ in range(16):
        finished_before = sum(t.state in FINISHED for t in trials(url, "chaos"))
        if finished_before >= target or kills >= 10:
            break
        process = start(config, tmp_path)
        if round_ == 1:  # during start-up
            time.sleep(rng.uniform(0.2, 1.5))
        else:
            try:
                wait_until(lambda: process.poll() is not None or any(
                    t.state == TrialState.RUNNING and t.user_attrs.get("worker", {}).get("pid") == process.pid
                    for t in trials(url, "chaos")), timeout=60)
            except AssertionError:
                pass
            seen = time.time()
            if round_ % 2 == 0:  # once this process has a checkpoint on disk: that trial resumes from it
                try:
                    wait_until(lambda: process.poll() is not None or any(
                        p.stat().st_mtime > seen for p in checkpoint_files(tmp_path, "chaos")), timeout=30)
                except AssertionError:
                    pass
                time.sleep(rng.uniform(0.0, 0.2))
            else:  # any moment: mid-epoch, just after a trial ends, during a write
                if rng.random() < 0.5:
                    try:
                        wait_until(lambda: process.poll() is not None or sum(
                            t.state in FINISHED for t in trials(url, "chaos")) > finished_before, timeout=30)
                    except AssertionError:
                        pass
                time.sleep(rng.uniform(0.0, 0.15))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.communicate()
        finished_now = sum(t.state in FINISHED for t in trials(url, "chaos"))
        assert finished_now >= finished_counts[-1], "a finished trial was lost"
        finished_counts.append(finished_now)
    assert kills >= 10, f"only {kills} kills landed"

    final_run = run_cli("resume", "--study-name", "chaos", "--no-report", cwd=tmp_path, timeout=400)
    assert final_run.returncode == 0, final_run.stderr
    final = trials(url, "chaos")
    assert sum(t.state in FINISHED for t in final) == target
    assert not [t for t in final if t.state == TrialState.RUNNING]
    with sqlite3.connect(f"file:{tmp_path / 'hpstudy.db'}?mode=ro", uri=True) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    resumed = [t for t in final if t.state in FINISHED and t.user_attrs.get(trial_attrs.RESUMED_FROM)]
    assert resumed, "a killed trial continued from its checkpoint"
    for trial in resumed:
        origin = trial.user_attrs[trial_attrs.RESUMED_FROM]
        assert origin["epoch"] >= 1 and trial_attrs.lineage(trial) == origin["trial"]
        assert len(trial.user_attrs[trial_attrs.CURVE]["val_loss"]) == 10
    print(f"chaos: {kills} kills, finished per round {finished_counts}, {len(resumed)} trials resumed "
          f"from checkpoints, {sum(t.state == TrialState.FAIL for t in final)} failed attempts, lost 0")


@pytest.mark.parametrize("worker_host", ["this host", "another host"])
def test_killed_pack_resumes_its_trials_from_their_checkpoints(tmp_path, worker_host):
    """kill -9 of a packed run mid-training: the resume recovers the dead pack's trials (at once
    when they ran on this host; once their heartbeats are older than the grace period when they
    ran on another host, which they still look alive to at its start), and continues each from
    its checkpoint, packed; the target is met exactly."""
    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    # two full packs: a kill in either, whichever the polling below sees first, finds three trials held
    config = slow_config(tmp_path, name="packed", n_trials=6, epochs=30)
    # a grace period longer than the resume's start-up: the dead pack's trials still look alive then
    config.write_text(config.read_text().replace("train: {device: cpu,", "train: {device: cpu, pack: 3,")
                      .replace("grace_period: 3", "grace_period: 8"))
    process = start(config, tmp_path)
    wait_until(lambda: process.poll() is not None or len(checkpoint_files(tmp_path, "packed")) >= 3)
    time.sleep(0.3)
    assert process.poll() is None, "the run ended before its pack was seen with three checkpoints"
    process.kill()
    process.communicate()
    killed = [t for t in trials(url, "packed") if t.state == TrialState.RUNNING]
    assert len(killed) == 3, "the pack held three trials when it was killed"
    if worker_host == "another host":  # its pid cannot be checked from here: only heartbeats tell
        storage = optuna.storages.RDBStorage(url)
        for trial in killed:
            worker = {**trial.user_attrs[trial_attrs.WORKER], "host": "elsewhere.invalid"}
            storage.set_trial_user_attr(trial._trial_id, trial_attrs.WORKER, worker)
        storage.remove_session()

    resumed_run = run_cli("resume", "--study-name", "packed", "--no-report", cwd=tmp_path, timeout=300)
    assert resumed_run.returncode == 0, resumed_run.stderr
    final = trials(url, "packed")
    assert sum(t.state in FINISHED for t in final) == 6
    assert not [t for t in final if t.state == TrialState.RUNNING]
    resumed = {t.user_attrs[trial_attrs.RESUMED_FROM]["trial"]: t for t in final
               if t.state in FINISHED and t.user_attrs.get(trial_attrs.RESUMED_FROM)}
    assert sorted(resumed) == sorted(t.number for t in killed)
    for trial in resumed.values():
        assert trial.user_attrs[trial_attrs.RESUMED_FROM]["epoch"] >= 1
        assert len(trial.user_attrs[trial_attrs.CURVE]["val_loss"]) == 30


def test_the_resume_an_interrupted_run_prints_keeps_its_own_target_and_budget(tmp_path, monkeypatch):
    """SIGTERM a `resume --n-trials 3 --budget-epochs 500` of a 1-trial study: the printed resume
    (one line even in a log) carries both, so run as printed it trains to 3 trials, not to the
    stored 1 (which left the queued retry waiting for ever)."""
    from hpstudy.study.cli import main

    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    monkeypatch.chdir(tmp_path)  # the first run in process; the one interrupted is a real process
    assert main(["run", str(slow_config(tmp_path, name="more", n_trials=1, epochs=40)), "--no-report"]) == 0
    process = subprocess.Popen([sys.executable, "-m", "hpstudy.study.cli", "resume", "--study-name", "more",
                                "--n-trials", "3", "--budget-epochs", "500", "--no-report"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: checkpoint_files(tmp_path, "more"))
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    hint = next(line for line in out.splitlines() if "Continue with: " in line).split("Continue with: ")[1]
    assert hint == f"hpstudy resume --study-name more --storage {url} --n-trials 3 --budget-epochs 500"
    resumed = run_cli(*hint.split()[1:], "--no-report", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert sum(t.state in FINISHED for t in trials(url, "more")) == 3


def test_kill_9_on_run_workers_ends_its_workers_too(tmp_path):
    """kill -9 on `run --workers 2` (no chance to pass anything on): its workers are sent SIGTERM
    by the kernel, end their trials as failed and queue them again; none trains on unseen."""
    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    config = slow_config(tmp_path, name="orphan", n_trials=8, epochs=400)
    process = subprocess.Popen(
        [sys.executable, "-m", "hpstudy.study.cli", "run", str(config), "--workers", "2", "--no-report"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: sum(t.state == TrialState.RUNNING for t in trials(url, "orphan")) == 2, timeout=180)
    workers = {t.user_attrs[trial_attrs.WORKER]["pid"] for t in trials(url, "orphan") if t.state == TrialState.RUNNING}
    process.kill()
    process.wait()
    wait_until(lambda: TrialState.RUNNING not in [t.state for t in trials(url, "orphan")], timeout=90)
    states = [t.state for t in trials(url, "orphan")]
    assert states.count(TrialState.FAIL) == 2 and states.count(TrialState.WAITING) == 2

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # exited, not yet reaped

    wait_until(lambda: all(gone(pid) for pid in workers), timeout=60)


def test_chaos_damaged_checkpoints_and_a_full_disk_lose_nothing(tmp_path, monkeypatch, capsys):
    """kill -9, then the checkpoint it left is damaged (bit flips, then a cut); then the disk under
    the checkpoints (a real 1 MB file system) fills up. Each retry says which file it could not use
    and starts that trial again from epoch 0; the full disk ends its run with one line (exit 2) and
    queues the trial again; once there is room the study completes: no finished trial lost, every
    cut trial retried, no traceback."""
    from hpstudy.storage.recovery import has_retry
    from hpstudy.study.cli import main
    from tests.helpers.tmpfs import fill, small_tmpfs
    from tests.study_tests.test_checkpoint_integrity import DAMAGE

    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    with small_tmpfs(tmp_path / "ck") as folder:
        config = slow_config(tmp_path, name="rot", n_trials=2, epochs=8)
        config.write_text(config.read_text().replace("checkpoint_every: 1}", f"checkpoint_every: 1, checkpoint_dir: {folder}}}"))
        outputs, finished, kills = [], [0], 0
        for kind in ("bit flips", "truncated"):
            process = start(config, tmp_path)
            began = time.time()
            wait_until(lambda: process.poll() is not None or any(
                p.stat().st_mtime > began for p in folder.glob("rot-*/trial-*.pt")), timeout=60)
            if process.poll() is None:
                process.kill()
                kills += 1
            outputs.append(process.communicate()[1])
            for path in folder.glob("rot-*/trial-*.pt"):
                DAMAGE[kind](path)
            finished.append(sum(t.state in FINISHED for t in trials(url, "rot")))
            assert finished[-1] >= finished[-2], "a finished trial was lost"
        monkeypatch.chdir(tmp_path)  # the last two runs in process: the kills needed real processes
        capsys.readouterr()
        filler = fill(folder)
        assert main(["resume", "--study-name", "rot", "--no-report"]) == 2
        outputs.append(capsys.readouterr().err)
        assert outputs[-1].strip().splitlines()[-1].startswith("hpstudy: error: disk full at "), outputs[-1]
        filler.unlink()
        assert main(["resume", "--study-name", "rot", "--no-report"]) == 0
        outputs.append(capsys.readouterr().err)
    final = trials(url, "rot")
    assert sum(t.state in FINISHED for t in final) == 2 >= max(finished)
    assert not [t for t in final if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    study = optuna.load_study(study_name="rot", storage=url)
    cut = [t.number for t in final if t.state == TrialState.FAIL]
    assert cut and all(has_retry(study, number) for number in cut), "every cut trial retried"
    assert not [text for text in outputs if "Traceback" in text]
    warned = sum(text.count("starts again from epoch 0") for text in outputs)
    assert warned >= 1
    print(f"chaos (checkpoints): {kills} kills, 2 damaged checkpoints, 1 full disk, {len(cut)} cut trials all "
          f"retried, {warned} damaged checkpoints refused, finished per round {finished}, lost 0, tracebacks 0")
