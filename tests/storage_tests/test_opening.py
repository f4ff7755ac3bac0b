"""Opening a storage: every refusal is one line before anything is opened for writing, and a
command that only reads leaves nothing beside the database (no -wal, no -shm)."""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import optuna
import pytest
import sqlalchemy
from optuna.trial import create_trial

from hpstudy.storage import engine
from hpstudy.storage.engine import RetryingRDBStorage, Retries, open_storage
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study.cli import main
from hpstudy.study.errors import UserError

FAST = Retries(attempts=3, first_delay=0.01, max_delay=0.02)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A WAL-mode Optuna database with one study of 3 finished trials, closed (built once)."""
    path = tmp_path_factory.mktemp("built") / "hpstudy.db"
    storage = open_storage(parse_storage_url(f"sqlite:///{path}"), mode="create")
    distribution = optuna.distributions.FloatDistribution(0, 1)
    optuna.create_study(storage=storage, study_name="s").add_trials(
        [create_trial(params={"x": x}, distributions={"x": distribution}, value=x) for x in (0.1, 0.2, 0.3)]
    )
    del storage
    gc.collect()
    assert listing(path.parent) == ["hpstudy.db"]
    return path


@pytest.fixture
def database(built, tmp_path):
    """A copy of ``built`` alone in its folder."""
    path = tmp_path / "hpstudy.db"
    path.write_bytes(built.read_bytes())
    return path


def one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


# ------------------------------------------------------------------------- side files (class 1)


@pytest.mark.parametrize("name", ["hpstudy.db-wal", "hpstudy.db-shm", "hpstudy.db-journal", "other-journal",
                                  ".hpstudy.db.building-123", ".hpstudy.db.building-99-journal"])
def test_a_path_sqlite_or_a_build_would_share_is_refused(database, name, capsys):
    before = digest(database)
    assert main(["list", "--storage", f"sqlite:///{database.parent / name}"]) == 2
    one_line_error(capsys, name)
    with pytest.raises(UserError):
        open_storage(parse_storage_url(f"sqlite:///{database.parent / name}"), mode="create")
    assert listing(database.parent) == ["hpstudy.db"] and digest(database) == before


@pytest.mark.parametrize("side", ["-wal", "-shm", "-journal"])
def test_a_database_whose_side_file_is_another_database_is_refused(database, side, capsys):
    other = database.with_name("hpstudy.db" + side)
    other.write_bytes(database.read_bytes())
    before = digest(other)
    assert main(["list", "--storage", f"sqlite:///{database}"]) == 2
    one_line_error(capsys, f"'hpstudy.db{side}' beside it is a database of its own")
    assert digest(other) == before and listing(database.parent) == ["hpstudy.db", f"hpstudy.db{side}"]


# ------------------------------------------------------------------------- file types (class 2)


def test_no_regular_file_is_refused_naming_what_it_is(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.db")
    (tmp_path / "dir.db").mkdir()
    (tmp_path / "null.db").symlink_to("/dev/null")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.db"))
    cases = {"fifo.db": "a FIFO", "dir.db": "a directory", "null.db": "a character device", "sock.db": "a socket"}
    try:
        for name, kind in cases.items():
            assert main(["list", "--storage", f"sqlite:///{tmp_path / name}"]) == 2  # a FIFO blocked here for ever
            one_line_error(capsys, kind)
    finally:
        server.close()
    assert sorted(listing(tmp_path)) == sorted(cases)


# ------------------------------------------------------------- read-only commands (class 3)


@pytest.mark.parametrize("argv", [
    ["list"], ["best"], ["export", "--format", "csv"], ["check"], ["best", "--study-name", "nope"],
    ["resume", "--study-name", "nope"], ["delete", "--study-name", "s"], ["enqueue", "--params", '{"y": 1}'],
])
def test_commands_that_read_or_are_refused_leave_nothing_beside_the_database(database, argv, monkeypatch):
    monkeypatch.chdir(database.parent)
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # delete asks nobody
    before = digest(database)
    main(argv)
    gc.collect()  # the storages of the command are gone, as they are when the process exits
    assert listing(database.parent) == ["hpstudy.db"]
    assert digest(database) == before


def test_a_reader_leaves_a_live_writers_log_alone(database):
    location = parse_storage_url(f"sqlite:///{database}")
    writer = optuna.load_study(study_name="s", storage=open_storage(location, mode="write"))
    writer.set_user_attr("before", 1)
    assert len(optuna.load_study(study_name="s", storage=open_storage(location, mode="read")).trials) == 3
    gc.collect()
    assert database.with_name("hpstudy.db-wal").exists()  # still the writer's
    writer.set_user_attr("after", 2)
    assert optuna.load_study(study_name="s", storage=location.url).user_attrs == {"before": 1, "after": 2}


@pytest.fixture
def read_only_folder(database, tmp_path):
    """``database``'s folder mounted read-only (a tmpfs), for root too."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr!r}")
        pytest.skip("cannot mount a tmpfs here")
    try:
        (folder / "hpstudy.db").write_bytes(database.read_bytes())
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_read_only_folder_is_read_and_never_called_corrupt(read_only_folder, capsys):
    url = f"sqlite:///{read_only_folder / 'hpstudy.db'}"
    assert main(["list", "--storage", url]) == 0  # SQLite alone cannot open a WAL file there
    capsys.readouterr()
    with pytest.raises(UserError, match="is not writable") as error:
        open_storage(parse_storage_url(url), mode="write")
    assert "corrupt" not in str(error.value) and "server" not in str(error.value)
    with pytest.raises(UserError, match="folder '.*' is not writable"):
        open_storage(parse_storage_url(f"sqlite:///{read_only_folder / 'new.db'}"), mode="create")
    assert listing(read_only_folder) == ["hpstudy.db"]


# ---------------------------------------------------------------------------- URLs (class 4)


@pytest.mark.parametrize(("url", "words"), [
    ("sqlite+aiosqlite:///{dir}/x.db", "driver 'aiosqlite' is not supported"),
    ("sqlite+pysqlcipher:///{dir}/x.db", "driver 'pysqlcipher' is not supported"),
    ("sqlite:///{dir}/x.db?mode=ro&uri=true", "'mode=ro' is not supported"),
    ("sqlite:///{dir}/x.db?nolock=1", "'nolock=1' is not supported"),
    ("sqlite:///{dir}/x.db?timeout=abc", "timeout 'abc' is not a number"),
    ("sqlite:///{dir}/x.db?timeout=1&timeout=2", "given twice"),
    ("postgresql://u@h:abc/db", "port is not a number"),
])
def test_urls_optuna_cannot_use_are_refused_before_a_file_is_made(tmp_path, url, words, capsys):
    url = url.format(dir=tmp_path)
    assert main(["list", "--storage", url]) == 2
    one_line_error(capsys, words)
    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        open_storage(parse_storage_url(url), mode="create")
    assert listing(tmp_path) == []


# ------------------------------------------------------------------ files and schemas (class 5)


@pytest.mark.parametrize(("change", "words"), [
    ("UPDATE alembic_version SET version_num = 'v3.0.0.d'", "`optuna storage upgrade --storage sqlite:///"),
    ("UPDATE alembic_version SET version_num = 'v99.0.0.a'", "pip install -U optuna"),
    ("DELETE FROM alembic_version", "no schema version"),
    ("DROP TABLE trial_heartbeats", "named like Optuna's but not its schema (missing trial_heartbeats)"),
    ("ALTER TABLE trial_values RENAME COLUMN value_type TO kind", "missing trial_values.value_type"),
])
@pytest.mark.parametrize("mode", ["read", "write"])
def test_a_schema_optuna_would_change_or_refuse_is_one_line_and_untouched(database, change, words, mode):
    with sqlite3.connect(database) as connection:
        connection.execute(change)
    connection.close()
    before = digest(database)
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
        open_storage(parse_storage_url(f"sqlite:///{database}"), mode=mode)
    assert digest(database) == before and listing(database.parent) == ["hpstudy.db"]


def test_look_alike_tables_are_refused(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.executescript("CREATE TABLE studies (a); CREATE TABLE trials (b); CREATE TABLE version_info (c);")
    connection.close()
    before = digest(path)
    with pytest.raises(UserError, match="named like Optuna's but not its schema"):
        open_storage(parse_storage_url(f"sqlite:///{path}"), mode="create")
    assert digest(path) == before and listing(tmp_path) == ["app.db"]


@pytest.mark.postgres
def test_an_old_schema_on_postgres_is_refused_and_unchanged(postgres_url):
    optuna.create_study(storage=postgres_url, study_name="pg")
    admin = sqlalchemy.create_engine(postgres_url)
    with admin.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    with pytest.raises(UserError, match="older Optuna .*`optuna storage upgrade --storage postgresql://"):
        open_storage(parse_storage_url(postgres_url), mode="write")
    with admin.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "v3.0.0.d"
    admin.dispose()


# -------------------------------------------------------------------- damaged pages (class 6)


def damage_table(path, table):
    """Scribble over the root page of ``table`` (small tables: all of it)."""
    with sqlite3.connect(path) as connection:
        (root,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        (page_size,) = connection.execute("PRAGMA page_size").fetchone()
    connection.close()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size
    data[start + 8: start + 400] = b"\xa5" * 392
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("table", ["trials", "trial_values", "trial_params"])
def test_damaged_trial_pages_are_one_line_pointing_at_check_and_get_no_writes(database, table, capsys, monkeypatch):
    monkeypatch.chdir(database.parent)
    damage_table(database, table)
    before = digest(database)
    for argv in (["list"], ["best"], ["export"]):
        assert main(argv) == 2, argv
        one_line_error(capsys, "`hpstudy check")
    with pytest.raises(UserError, match=r"damaged \(quick_check: .*`hpstudy check --storage"):
        open_storage(parse_storage_url(f"sqlite:///{database}"), mode="write")
    gc.collect()
    assert digest(database) == before and listing(database.parent) == ["hpstudy.db"]


# --------------------------------------------------------------------------- locked (class 7)


def test_a_locked_file_is_retried_then_called_locked_naming_the_holder(database, capsys, monkeypatch):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA locking_mode=EXCLUSIVE'); "
         "c.execute('BEGIN EXCLUSIVE'); c.execute('COMMIT'); print('held', flush=True); sys.stdin.read()",
         str(database)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(RetryingRDBStorage, "retries", FAST)
        monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_S", 0.05)
        for argv in (["list"], ["best"]):
            assert main([*argv, "--storage", f"sqlite:///{database}"]) == 2
            err = one_line_error(capsys, "stayed locked", f"pid {holder.pid} (python", "close it")
            assert "corrupt" not in err and "restore" not in err and "server" not in err
        for mode in ("read", "write"):
            with pytest.raises(UserError, match="stayed locked"):
                open_storage(parse_storage_url(f"sqlite:///{database}"), mode=mode, sqlite_timeout=0.05, retries=FAST)
    finally:
        holder.communicate("")


def test_a_briefly_locked_file_is_waited_out(database):
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA locking_mode=EXCLUSIVE")
    connection.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.3, lambda: connection.close()).start()
    started = time.perf_counter()
    storage = open_storage(parse_storage_url(f"sqlite:///{database}"), mode="read", sqlite_timeout=0.05,
                           retries=Retries(attempts=8, first_delay=0.05, max_delay=0.2))
    assert time.perf_counter() - started >= 0.25
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 3


# -------------------------------------------------------------------- unreachable server (class 8)


@pytest.mark.parametrize("argv", [["check"], ["list"], ["best"], ["export"], ["report", "--all"], ["resume"]])
def test_an_unreachable_server_is_one_line_for_every_command(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--storage", "postgresql://postgres@127.0.0.1:1/x"]) == 2
    one_line_error(capsys, "cannot open storage", "Connection refused")


@pytest.mark.postgres
def test_an_unknown_server_option_is_one_line(postgres_url, capsys):
    optuna.create_study(storage=postgres_url, study_name="pg")
    assert main(["list", "--storage", f"{postgres_url}?nosuchoption=1"]) == 2
    one_line_error(capsys, 'invalid connection option "nosuchoption"')


def test_the_urls_timeout_is_the_busy_timeout(database):
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA locking_mode=EXCLUSIVE")
    connection.execute("BEGIN EXCLUSIVE")
    started = time.perf_counter()
    try:
        with pytest.raises(UserError, match="stayed locked"):
            open_storage(parse_storage_url(f"sqlite:///{database}?timeout=0.01"), mode="read", retries=FAST)
    finally:
        connection.close()
    assert time.perf_counter() - started < 5  # not the 30 s default


def test_the_side_files_of_a_killed_build_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftovers = [tmp_path / f".hpstudy.db.building-{dead.pid}{side}" for side in ("", "-journal")]
    for leftover in leftovers:
        leftover.write_bytes(b"half")
    open_storage(parse_storage_url(f"sqlite:///{tmp_path / 'hpstudy.db'}"), mode="create")
    assert listing(tmp_path) == ["hpstudy.db"]
