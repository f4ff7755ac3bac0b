"""`hpstudy check` on what kills leave: damaged checkpoints of live trials, temporary files of
killed writers, a half-made study (and `hpstudy run` adopting it)."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from hpstudy.storage.check import check_storage
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study.checkpoints import host_tag
from hpstudy.study.cli import main
from hpstudy.study.runner import run_study
from tests.helpers import checkpoint_store
from tests.study_tests.test_checkpoint_integrity import flip
from tests.study_tests.test_checkpoints import InterruptAt


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def killed_leftovers(quick_config, tmp_path):
    """A study whose queued retry has a flipped checkpoint, plus the temporary files killed
    processes leave (and one of a live writer, which is no leftover)."""
    cfg = quick_config(study__n_trials=1, study__pruner={"name": "none"}, train__checkpoint_every=1,
                       search_space={"lr": 0.01, "epochs": 4, "n_layers": 1, "hidden_units": 32, "batch_size": 128})
    assert run_study(cfg, model_factory=InterruptAt(KeyboardInterrupt(), step=10)).interrupted
    store = checkpoint_store(cfg.storage, "quick")
    flip(store.path(0))
    pid = dead_pid()
    dead = [store.folder / f".trial-0.pt.{host_tag()}.{pid}.1.tmp", store.folder / f".trial-0.pt.{pid}.2.tmp",
            tmp_path / f".study.db.building-{pid}-journal"]
    alive = [store.folder / f".trial-0.pt.{host_tag()}.1.3.tmp",  # pid 1 is alive
             store.folder / f".trial-0.pt.elsewhere.{pid}.4.tmp"]  # another host's: not ours to judge
    for path in (*dead, *alive):
        path.write_bytes(b"x" * 1000)
    return cfg, store, dead, alive


def test_check_reports_damaged_checkpoints_and_leftovers_and_fix_deletes_them(killed_leftovers, capsys):
    cfg, store, dead, alive = killed_leftovers
    location = parse_storage_url(cfg.storage)
    report = check_storage(location)
    (health,) = report.studies
    assert [d.path for d in health.damaged] == [store.path(0)] and "checksum" in health.damaged[0].reason
    assert sorted([*health.leftovers, *report.leftovers]) == sorted(dead)
    assert report.problems == 4 and all(p.exists() for p in (*dead, store.path(0)))

    assert main(["check", "--storage", cfg.storage]) == 1
    out = capsys.readouterr().out
    assert "damaged checkpoints: 1" in out and "temporary files of killed writers: 2" in out
    assert "leftover files of a killed database build: 1" in out and "4 problem(s) left" in out

    fixed = check_storage(location, fix=True)
    assert fixed.problems == 0
    assert not any(p.exists() for p in (*dead, store.path(0))) and all(p.exists() for p in alive)
    assert main(["resume", "--study-name", "quick", "--storage", cfg.storage, "--no-report"]) == 0
    states = [t.state for t in optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE], "the retry ran from epoch 0 and completed"


def test_a_half_made_study_is_reported_and_adopted_by_the_run_that_makes_it(quick_config, tmp_path, monkeypatch, capsys):
    """Optuna's study row without hpstudy's config (a kill between the two writes): `check` says
    what it is, `resume` says how to go on, and `hpstudy run` with that name adopts it."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    optuna.create_study(storage=url, study_name="half")  # the state the kill leaves
    (health,) = check_storage(parse_storage_url(url)).studies
    assert health.half_made and health.problems == 1
    assert main(["check", "--storage", url]) == 1
    assert "half-made" in capsys.readouterr().out

    assert main(["resume", "--study-name", "half", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "half-made" in err and len(err.strip().splitlines()) == 1
    assert main(["run", "--preset", "default", "--quick", "--study-name", "half", "--storage", url,
                 "--set", "study.n_trials=1", "--set", "train.device=cpu", "--no-report"]) == 0
    assert main(["resume", "--study-name", "half", "--storage", url, "--no-report"]) == 0
    assert check_storage(parse_storage_url(url)).problems == 0


def test_a_half_made_study_of_the_other_direction_is_refused_unchanged(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    optuna.create_study(storage=url, study_name="half", direction="maximize")
    code = main(["run", "--preset", "default", "--quick", "--study-name", "half", "--storage", url, "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and "made to maximize" in err and len(err.strip().splitlines()) == 1
    assert optuna.load_study(study_name="half", storage=url).user_attrs == {}
