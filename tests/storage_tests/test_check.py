"""`hpstudy check`: integrity, stuck trials, orphaned checkpoints; read-only unless --fix."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from hpstudy.storage.check import check_storage
from hpstudy.storage.recovery import WORKER_ATTR, WorkerIdentity
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study.checkpoints import atomic_save
from hpstudy.study.cli import main
from hpstudy.study.errors import UserError
from hpstudy.study.runner import run_study
from tests.helpers import checkpoint_store


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def damaged_study(quick_config, tmp_path):
    """A real study plus a trial stuck RUNNING under a dead local process and an orphaned checkpoint."""
    cfg = quick_config(study__n_trials=2)
    run_study(cfg)
    study = optuna.load_study(study_name="quick", storage=cfg.storage)
    stuck = study.ask()
    stuck.suggest_float("lr", 1e-3, 1e-1, log=True)
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    stuck.set_user_attr(WORKER_ATTR, WorkerIdentity(socket.gethostname(), process.pid, None).to_dict())
    store = checkpoint_store(cfg.storage, "quick")
    atomic_save({"epoch": 1}, store.path(0))  # trial 0 finished long ago: nobody will read this
    atomic_save({"epoch": 1}, store.path(stuck.number))  # the stuck trial's retry will
    return cfg, stuck.number, store


def test_check_reports_without_writing(damaged_study, tmp_path):
    cfg, stuck, store = damaged_study
    db = tmp_path / "study.db"
    before = digest(db)
    report = check_storage(parse_storage_url(cfg.storage))
    assert report.integrity == "ok"
    (health,) = report.studies
    assert health.stuck == [stuck] and health.running == []
    assert health.orphans == [store.path(0)]
    assert report.problems == 2
    assert digest(db) == before and store.path(0).exists()


def test_check_fix_requeues_and_deletes_orphans(damaged_study):
    cfg, stuck, store = damaged_study
    report = check_storage(parse_storage_url(cfg.storage), fix=True)
    (health,) = report.studies
    assert health.requeued == [stuck] and health.deleted == [store.path(0)]
    assert report.problems == 0
    assert not store.path(0).exists() and store.path(stuck).exists(), "the retry's checkpoint stays"
    states = [t.state for t in optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()]
    assert states.count(TrialState.RUNNING) == 0 and states.count(TrialState.WAITING) == 1
    assert check_storage(parse_storage_url(cfg.storage)).problems == 0


def test_cli_check_exit_codes(damaged_study, capsys):
    cfg, _, _ = damaged_study
    assert main(["check", "--storage", cfg.storage]) == 1
    assert "stuck RUNNING" in capsys.readouterr().out
    assert main(["check", "--storage", cfg.storage, "--fix"]) == 0
    assert main(["check", "--storage", cfg.storage]) == 0


def test_truncated_file_is_a_one_line_error_and_untouched(quick_config, tmp_path, capsys):
    cfg = quick_config(study__n_trials=1)
    run_study(cfg)
    db = tmp_path / "study.db"
    db.write_bytes(db.read_bytes()[: 3 * 4096 + 100])
    before = digest(db)
    assert main(["check", "--storage", cfg.storage]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corrupt" in err
    assert digest(db) == before


def test_corrupt_page_is_found_by_the_integrity_check(quick_config, tmp_path):
    cfg = quick_config(study__n_trials=2)
    run_study(cfg)
    db = tmp_path / "study.db"
    data = bytearray(db.read_bytes())
    page = 4096
    for start in range(page, len(data), page):  # scribble over every page but the header page
        data[start + 8 : start + 400] = b"\xa5" * 392
    db.write_bytes(bytes(data))
    before = digest(db)
    with pytest.raises(UserError, match="corrupt"):
        check_storage(parse_storage_url(cfg.storage))
    assert digest(db) == before


@pytest.mark.postgres
def test_check_on_postgres(postgres_url, quick_config):
    cfg = quick_config(study__n_trials=1, storage=postgres_url)
    run_study(cfg)
    report = check_storage(parse_storage_url(postgres_url))
    assert report.problems == 0 and "not checked" in report.integrity


def test_fix_never_deletes_the_checkpoints_of_a_study_with_a_name_alike(quick_config):
    """'exp/a' and 'exp_a' read the same as a path; checking 'exp_a' must not take the checkpoint
    of a queued 'exp/a' trial for an orphan of its own."""
    alike = [quick_config(**{"study__name": name, "study__n_trials": 1}) for name in ("exp/a", "exp_a")]
    for cfg in alike:
        run_study(cfg)
    queued = optuna.load_study(study_name="exp/a", storage=alike[0].storage)
    queued.enqueue_trial({"lr": 0.01})
    kept = checkpoint_store(alike[0].storage, "exp/a").path(1)  # the queued trial's retry reads it
    atomic_save({"epoch": 1}, kept)
    report = check_storage(parse_storage_url(alike[0].storage), fix=True)
    assert [health.deleted for health in report.studies] == [[], []]
    assert kept.exists()
