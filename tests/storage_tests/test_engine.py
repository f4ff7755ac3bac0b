"""Transient storage failures are retried: a locked SQLite file, a dropped PostgreSQL connection."""

from __future__ import annotations

import gc
import subprocess
import sys
import sqlite3
import threading
import time

import optuna
import psycopg
import pytest

from hpstudy.storage.engine import Retries, StorageUnavailable, open_storage
from hpstudy.storage.urls import parse_storage_url


def _run_while_locked(path, action) -> float:
    """Run ``action`` while another connection holds ``path`` locked for 1 s; seconds it took."""
    locked = threading.Event()

    def hold_lock():
        connection = sqlite3.connect(path, timeout=5, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(1.0)
        connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    locked.wait(5)
    started = time.perf_counter()
    action()
    waited = time.perf_counter() - started
    holder.join()
    return waited


def test_write_waits_out_a_locked_sqlite_file(tmp_path):
    path = tmp_path / "s.db"
    location = parse_storage_url(f"sqlite:///{path}")
    storage = open_storage(location, mode="create", sqlite_timeout=0.1)
    study = optuna.create_study(storage=storage, study_name="s")
    waited = _run_while_locked(path, lambda: study.set_user_attr("written", True))  # outlasts the 0.1 s timeout
    assert storage.retried >= 1
    assert waited >= 0.5
    assert optuna.load_study(study_name="s", storage=location.url).user_attrs["written"] is True


@pytest.mark.parametrize("action", ["suggest", "refresh", "ask"])
def test_calls_optunas_cache_makes_are_retried_too(tmp_path, action):
    """Optuna's cache creates trials, writes params and refreshes trials through private storage
    methods (``_create_new_trial``, ``_set_trial_param``, ``_get_trials``): those wait out a lock
    like the public ones."""
    path = tmp_path / "s.db"
    location = parse_storage_url(f"sqlite:///{path}")
    storage = open_storage(location, mode="create", sqlite_timeout=0.1)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    if action == "suggest":
        waited = _run_while_locked(path, lambda: trial.suggest_float("x", 0, 1))
    elif action == "refresh":
        waited = _run_while_locked(path, lambda: study.trials)
    else:
        waited = _run_while_locked(path, study.ask)
    assert storage.retried >= 1
    assert waited >= 0.5
    stored = optuna.load_study(study_name="s", storage=location.url).trials
    assert [t.number for t in stored] == ([0, 1] if action == "ask" else [0])
    assert storage.started_trial_id == stored[-1]._trial_id  # noqa: SLF001 - the trial this process started last
    assert ("x" in stored[0].params) == (action == "suggest")


def test_other_errors_are_not_retried(tmp_path):
    storage = open_storage(parse_storage_url(f"sqlite:///{tmp_path / 's.db'}"), mode="create")
    with pytest.raises(KeyError):
        storage.get_study_id_from_name("missing")
    assert storage.retried == 0


@pytest.mark.postgres
def test_dropped_postgres_connection_is_survived(postgres_url):
    storage = open_storage(parse_storage_url(postgres_url), mode="create")
    study = optuna.create_study(storage=storage, study_name="pg")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    database = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
    assert killed, "the storage's pooled connections were cut"
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.get_trials()) == 4


def test_a_storage_that_goes_leaves_every_trial_in_the_db_file_itself(tmp_path):
    """SQLite keeps new writes in hpstudy.db-wal until a checkpoint; a storage folds them into the
    .db file as it goes, even while a read-only storage (which cannot) still has the file open,
    so a copy of the .db file alone holds every trial."""
    location = parse_storage_url(f"sqlite:///{tmp_path / 's.db'}")
    writer = open_storage(location, mode="create")
    optuna.create_study(storage=writer, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    reader = open_storage(location, mode="read")
    assert len(optuna.load_study(study_name="s", storage=reader).trials) == 3
    copy_before = tmp_path / "before.db"
    copy_before.write_bytes((tmp_path / "s.db").read_bytes())
    del writer
    gc.collect()
    copy_after = tmp_path / "after.db"
    copy_after.write_bytes((tmp_path / "s.db").read_bytes())
    count = "SELECT count(*) FROM trials"
    assert sqlite3.connect(copy_before).execute(count).fetchone() == (0,)  # still in the log: what the fix is for
    assert sqlite3.connect(copy_after).execute(count).fetchone() == (3,)
    assert len(optuna.load_study(study_name="s", storage=reader).trials) == 3


def test_a_storage_locked_through_every_retry_is_one_clear_error(tmp_path):
    """A SQLite file another program keeps locked: the call retries, then gives up with one line
    that says what and why, not a driver's traceback; a retrying call that makes another (Optuna's
    public ``set_trial_param`` makes the private one) does not retry the given-up one again."""
    path = tmp_path / "s.db"
    location = parse_storage_url(f"sqlite:///{path}")
    storage = open_storage(location, mode="create", sqlite_timeout=0.05)
    storage.retries = Retries(attempts=4, first_delay=0.01, max_delay=0.02)
    trial_id = optuna.create_study(storage=storage, study_name="s").ask()._trial_id  # noqa: SLF001
    distribution = optuna.distributions.FloatDistribution(0, 1)
    holder = sqlite3.connect(path, timeout=5, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageUnavailable, match=r"storage 'sqlite:///.*s\.db' stayed unavailable for \d+ s "
                                                     r"\(database is locked\): another program holds the SQLite file locked"):
            storage.set_trial_param(trial_id, "x", 0.5, distribution)  # Optuna's public call makes a private one
        assert storage.retried == 3
        # a heartbeat (on Optuna's own thread, where an error would only print a traceback) is skipped
        assert storage.record_heartbeat(trial_id) is None and storage.retried == 6
    finally:
        holder.execute("COMMIT")
        holder.close()
    storage.set_trial_param(trial_id, "x", 0.5, distribution)  # the lock gone, the storage works again
    assert storage.get_trial(trial_id).params == {"x": 0.5}


def test_a_process_killed_while_it_builds_the_database_leaves_none_behind(tmp_path):
    """kill -9 the moment a new SQLite database (or its build) shows up on disk: never a half-built
    hpstudy.db (which every later command refused), and the next open creates it whole and clears
    the abandoned build."""
    script = ("from hpstudy.storage.engine import open_storage; from hpstudy.storage.urls import parse_storage_url; "
              "open_storage(parse_storage_url('sqlite:///hpstudy.db'), mode='create')")
    database = tmp_path / "hpstudy.db"
    caught = 0
    for attempt in range(3):
        process = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
        while process.poll() is None and not database.exists() and not list(tmp_path.glob(".hpstudy.db.building-*")):
            time.sleep(0.0005)
        process.kill()
        caught += process.wait() == -9
        location = parse_storage_url(f"sqlite:///{database}")
        optuna.create_study(storage=open_storage(location, mode="create"), study_name=f"after-{attempt}")
        assert optuna.get_all_study_names(f"sqlite:///{database}") == [f"after-{attempt}"]
        assert not list(tmp_path.glob(".hpstudy.db.building-*"))
        for leftover in tmp_path.iterdir():
            leftover.unlink()
    assert caught, "the process was never caught while it built the database"
