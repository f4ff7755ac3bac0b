"""Storage URLs and files: bad URLs are refused, and a file that is not Optuna's is never touched."""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3

import optuna
import pytest

from hpstudy.storage.engine import open_storage
from hpstudy.storage.urls import check_optuna_sqlite, parse_storage_url, redact
from hpstudy.study.errors import UserError


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_relative_sqlite_path_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    location = parse_storage_url("sqlite:///runs.db")
    assert location.sqlite_path == tmp_path / "runs.db"
    assert location.url == f"sqlite:///{tmp_path / 'runs.db'}"
    assert not location.exists


def test_postgres_url_is_kept_and_password_redacted():
    location = parse_storage_url("postgresql://alice:s3cret@db.example:5432/studies")
    assert location.sqlite_path is None
    assert "s3cret" not in location.display() and "***" in location.display()
    assert redact("postgresql://alice:s3cret@h/db") == "postgresql://alice:***@h/db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("runs.db", "did you mean sqlite:///runs.db?"),
        ("::nonsense::", "is not a valid database URL"),
        ("redis://localhost:6379", "unsupported backend 'redis'"),
        ("sqlite://", "in-memory database"),
        ("sqlite:///:memory:", "in-memory database"),
        ("postgresql://user@localhost:5432", "names no database"),
        ("sqlite:////no/such/dir/x.db", "directory '/no/such/dir' does not exist"),
        ("postgresql+pgfoo://u:pw@localhost/db", "unknown postgresql driver 'pgfoo'"),
        ("postgresql+asyncpg://u@localhost/db", "driver 'asyncpg' is asynchronous"),
        ("mysql+aiomysql://u@localhost/db", "driver 'aiomysql' is asynchronous"),
    ],
)
def test_bad_urls(url, message):
    with pytest.raises(UserError, match=message.replace("?", r"\?").replace("(", r"\(")):
        parse_storage_url(url)


def test_server_url_with_an_installed_driver_is_accepted():
    for url in ("postgresql://u@localhost/db", "postgresql+psycopg://u@localhost/db"):
        assert parse_storage_url(url).url == url


def test_driver_that_is_not_installed_names_the_package_to_install():
    if importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed here")
    with pytest.raises(UserError, match=r"needs the database driver 'psycopg2', which is not installed; pip install psycopg2-binary") as error:
        parse_storage_url("postgresql+psycopg2://alice:s3cret@localhost/db")
    assert "s3cret" not in str(error.value)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        parse_storage_url(f"sqlite:///{tmp_path}")


def test_text_file_is_refused_and_left_identical(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database\n")
    before = digest(path)
    with pytest.raises(UserError, match="not a SQLite database"):
        open_storage(parse_storage_url(f"sqlite:///{path}"), mode="create")
    assert digest(path) == before


def test_foreign_sqlite_file_is_refused_and_left_identical(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO users (name) VALUES ('ada')")
    before = digest(path)
    with pytest.raises(UserError, match="not Optuna's"):
        open_storage(parse_storage_url(f"sqlite:///{path}"), mode="create")
    assert digest(path) == before
    with sqlite3.connect(path) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"users"}


def test_truncated_optuna_file_is_refused_and_left_identical(tmp_path):
    path = tmp_path / "study.db"
    optuna.create_study(storage=f"sqlite:///{path}", study_name="s")
    path.write_bytes(path.read_bytes()[:2000])
    before = digest(path)
    with pytest.raises(UserError, match="corrupt or unreadable"):
        check_optuna_sqlite(path)
    assert digest(path) == before


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(UserError, match="an empty file"):
        check_optuna_sqlite(path)
    assert path.read_bytes() == b""


def test_missing_file_is_not_created_unless_asked(tmp_path):
    location = parse_storage_url(f"sqlite:///{tmp_path / 'new.db'}")
    with pytest.raises(UserError, match="no study database"):
        open_storage(location, mode="write")
    assert not (tmp_path / "new.db").exists()
    open_storage(location, mode="create")
    assert (tmp_path / "new.db").exists()


def test_opened_sqlite_uses_wal_and_stays_a_plain_optuna_database(tmp_path):
    location = parse_storage_url(f"sqlite:///{tmp_path / 's.db'}")
    storage = open_storage(location, mode="create")
    optuna.create_study(storage=storage, study_name="plain").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with sqlite3.connect(tmp_path / "s.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # optuna alone, with no hpstudy code, reads it
    again = optuna.load_study(study_name="plain", storage=location.url)
    assert len(again.trials) == 2


def test_unreachable_server_is_a_user_error():
    with pytest.raises(UserError, match="cannot open storage"):
        open_storage(parse_storage_url("postgresql://nobody@127.0.0.1:1/none"), mode="create")
