"""A storage that goes away while trials start and end (a full disk under SQLite, a PostgreSQL
database that drops every connection): the run says so in one line, exits 2 without a traceback
(none of Optuna's own errors from its handling of the outage), and the next run recovers the
trial it was in. The run is a real process (gone afterwards, as after a real outage), with fewer
storage retries so the test stays short."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpstudy.study.cli import main
from tests.conftest import POSTGRES_ADMIN

pytestmark = pytest.mark.slow

CONFIG = """
study: {name: outage, n_trials: 400, pruner: {name: none}, heartbeat_interval: 1, grace_period: 2}
data: {train_subset: 200, val_subset: 100}
train: {device: cpu, checkpoints: false}
search_space: {epochs: 2, n_layers: 1, hidden_units: 16, lr: {low: 0.001, high: 0.05, log: true}, batch_size: [64]}
"""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
OUTAGE_SECONDS = 1.8


def _start_run(url: str, stderr: Path) -> subprocess.Popen[bytes]:
    """``hpstudy run`` in a real process with fewer storage retries, its standard error to ``stderr``."""
    code = ("import sys; from hpstudy.storage.engine import Retries, RetryingRDBStorage; "
            "from hpstudy.study.cli import main; "
            "RetryingRDBStorage.retries = Retries(attempts=3, first_delay=0.25, max_delay=0.5); "
            f"sys.exit(main(['run', 'outage.yaml', '--storage', {url!r}, '--no-report']))")
    with open(stderr, "wb") as err:
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=err)


def _run_through_outage(tmp_path: Path, url: str, *, finished: Callable[[], int],
                        outage: Callable[[subprocess.Popen[bytes]], contextlib.AbstractContextManager[None]],
                        hold: float = OUTAGE_SECONDS) -> tuple[int, str]:
    """Run the study in a process; once a trial has finished, hold ``outage`` for ``hold`` seconds
    (or until the process exits): by default longer than the process's retries of one call
    (0.75 s), so a call fails, and over before its error handling has ended, as when a server
    restarts. Its exit code and standard error."""
    (tmp_path / "outage.yaml").write_text(CONFIG)
    process = _start_run(url, tmp_path / "stderr.txt")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and finished() < 1:
        time.sleep(0.05)
    with outage(process), contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=hold)
    code = process.wait(timeout=120)
    return code, (tmp_path / "stderr.txt").read_text()


def _check_one_line_then_recovered(code: int, err: str, url: str, *, hint: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and "Should not reach" not in err, err
    assert "stayed unavailable" in err and hint in err, err
    study = optuna.load_study(study_name="outage", storage=url)
    target = sum(t.state in FINISHED for t in study.get_trials()) + 1
    assert main(["resume", "--study-name", "outage", "--storage", url, "--n-trials", str(target), "--no-report"]) == 0
    trials = optuna.load_study(study_name="outage", storage=url).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], "every cut trial recovered"
    assert sum(t.state in FINISHED for t in trials) == target
    for failed in (t for t in trials if t.state == TrialState.FAIL and t.params):  # cut: retried with its params
        assert any(t.state in FINISHED and t.params == failed.params for t in trials), failed.number


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs (needs root; skipped otherwise)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()[:80]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _finished_in_sqlite(path: Path) -> Callable[[], int]:
    def count() -> int:
        if not path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as connection:
            try:
                return connection.execute("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()[0]
            except sqlite3.OperationalError:  # no tables yet
                return 0
    return count


def test_sqlite_on_a_full_disk_is_one_line_and_the_next_run_recovers(tmp_path, tiny_disk, monkeypatch):
    monkeypatch.chdir(tmp_path)
    database = tiny_disk / "outage.db"
    url = f"sqlite:///{database}"

    @contextlib.contextmanager
    def full_disk(_process: subprocess.Popen[bytes]) -> Iterator[None]:
        filler = tiny_disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as out:
            while True:  # until the disk is full
                out.write(b"\0" * 4096)
        try:
            yield
        finally:
            filler.unlink()

    # Held until the run gives up: SQLite writes into the space its WAL file already has, so a
    # short outage may pass unnoticed (and the study then runs all its trials).
    code, err = _run_through_outage(tmp_path, url, finished=_finished_in_sqlite(database), outage=full_disk,
                                    hold=60)
    _check_one_line_then_recovered(code, err, url, hint="disk is full")


@pytest.mark.postgres
def test_postgres_dropping_connections_is_one_line_and_the_next_run_recovers(tmp_path, postgres_url,
                                                                             monkeypatch):
    import psycopg

    monkeypatch.chdir(tmp_path)
    name = postgres_url.rsplit("/", 1)[1]

    def finished() -> int:
        with contextlib.suppress(psycopg.Error), psycopg.connect(postgres_url, connect_timeout=3) as connection:
            return connection.execute(
                "SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()[0]
        return 0

    @contextlib.contextmanager
    def refused(process: subprocess.Popen[bytes]) -> Iterator[None]:
        """The test's own database refuses connections and drops those it has, while open."""
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            stop = threading.Event()
            dropper = threading.Thread(target=_drop_connections, args=(admin, name, stop))
            dropper.start()
            try:
                yield
            finally:
                stop.set()
                dropper.join()
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    code, err = _run_through_outage(tmp_path, postgres_url, finished=finished, outage=refused)
    _check_one_line_then_recovered(code, err, postgres_url, hint="server may be down")


def _drop_connections(admin: object, name: str, stop: threading.Event) -> None:
    """Terminate every connection to database ``name`` but ``admin``'s own, until ``stop``."""
    while not stop.is_set():
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "  # type: ignore[attr-defined]
                      "AND pid <> pg_backend_pid()", (name,))
        time.sleep(0.02)
