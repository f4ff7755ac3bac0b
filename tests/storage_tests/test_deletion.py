"""`hpstudy delete`: the study and its checkpoints go, nothing else; never a study being trained."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys

import optuna
import pytest

from hpstudy.storage.deletion import plan_deletion
from hpstudy.storage.recovery import WORKER_ATTR, WorkerIdentity
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study.cli import main
from hpstudy.study.errors import UserError
from hpstudy.study.runner import run_study
from tests.helpers import checkpoint_store


def names(url):
    return sorted(optuna.get_all_study_names(url))


@pytest.fixture
def two_studies(quick_config):
    """Two real studies in one SQLite file, each with its checkpoint folder."""
    keep = quick_config(study__name="keep", study__n_trials=2)
    gone = quick_config(study__name="gone", study__n_trials=3)
    run_study(keep)
    run_study(gone)
    kept_trials = [(t.number, t.params, t.value) for t in optuna.load_study(study_name="keep", storage=keep.storage).trials]
    return gone.storage, checkpoint_store(keep.storage, "keep"), checkpoint_store(gone.storage, "gone"), kept_trials


def test_delete_removes_the_study_and_its_checkpoints_only(two_studies, capsys):
    url, kept_store, gone_store, kept_trials = two_studies
    assert kept_store.folder.is_dir() and gone_store.folder.is_dir()
    assert main(["delete", "--study-name", "gone", "--storage", url, "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"Deleted study 'gone' (3 trials) from {url} and its checkpoints in {gone_store.folder}" in out.replace("\n", "")
    assert names(url) == ["keep"]
    assert not gone_store.folder.exists() and kept_store.folder.is_dir()
    keep = optuna.load_study(study_name="keep", storage=url)
    assert [(t.number, t.params, t.value) for t in keep.trials] == kept_trials
    # the name is free again: a run with another config starts a new study under it
    assert main(["run", "--quick", "--storage", url, "--study-name", "gone", "--no-report", "--n-trials", "1"]) == 0
    assert names(url) == ["gone", "keep"] and len(optuna.load_study(study_name="gone", storage=url).trials) == 1


def test_without_yes_and_no_one_to_ask_nothing_is_deleted(two_studies, tmp_path, capsys):
    url, _, gone_store, _ = two_studies
    before = hashlib.sha256((tmp_path / "study.db").read_bytes()).hexdigest()
    assert not sys.stdin.isatty()  # pytest's stdin, as in CI
    assert main(["delete", "--study-name", "gone", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing can be undone and no one is here to confirm; add --yes" in err
    assert hashlib.sha256((tmp_path / "study.db").read_bytes()).hexdigest() == before
    assert names(url) == ["gone", "keep"] and gone_store.folder.is_dir()


def test_the_prompt_deletes_only_on_yes(two_studies, tmp_path):
    """A real terminal answers the prompt (a pseudo-terminal as stdin)."""
    url, _, gone_store, _ = two_studies
    for answer, code, left in (("\n", 1, ["gone", "keep"]), ("y\n", 0, ["keep"])):  # no is the default
        primary, secondary = os.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "hpstudy.study.cli", "delete", "--study-name", "gone", "--storage", url],
            stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )
        os.close(secondary)
        os.write(primary, answer.encode())
        out, err = process.communicate(timeout=120)
        os.close(primary)
        assert process.returncode == code, err
        assert names(url) == left
        assert ("Nothing deleted" in out) == (code == 1)
    assert not gone_store.folder.exists()


def test_a_study_being_trained_is_not_deleted(quick_config):
    cfg = quick_config(study__n_trials=1)
    run_study(cfg)
    study = optuna.load_study(study_name="quick", storage=cfg.storage)
    live = study.ask()  # held by this very process, alive
    live.set_user_attr(WORKER_ATTR, WorkerIdentity.current().to_dict())
    location = parse_storage_url(cfg.storage)
    with pytest.raises(UserError, match=rf"study 'quick' is being trained \(trial {live.number} running\); stop its run first"):
        plan_deletion(location, "quick")
    assert names(cfg.storage) == ["quick"]

    # a trial left running by a dead worker is no obstacle
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    study._storage.set_trial_user_attr(live._trial_id, WORKER_ATTR,
                                       WorkerIdentity(socket.gethostname(), process.pid, None).to_dict())
    assert plan_deletion(location, "quick").trials == 2


def test_delete_needs_an_existing_study_and_an_explicit_name(two_studies, capsys):
    url, *_ = two_studies
    assert main(["delete", "--study-name", "gon", "--storage", url, "--yes"]) == 2
    assert "no study 'gon'" in capsys.readouterr().err
    assert main(["delete", "--storage", url, "--yes"]) == 2  # never "the only study" by default
    assert names(url) == ["gone", "keep"]


def test_delete_on_postgresql(postgres_url, quick_config, tmp_path):
    cfg = quick_config(storage=postgres_url, study__n_trials=2, train__checkpoint_dir=str(tmp_path / "ckpt"))
    run_study(cfg)
    folder = tmp_path / "ckpt"
    assert any(folder.iterdir())
    assert main(["delete", "--study-name", "quick", "--storage", postgres_url, "--yes"]) == 0
    assert names(postgres_url) == [] and not any(folder.iterdir())
