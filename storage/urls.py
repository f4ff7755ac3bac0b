"""Storage URLs: normalise them, check them, and refuse a file that is not an Optuna database.

Optuna creates a SQLite file (or adds its tables to a foreign one) as soon as it opens a URL, so
every check here runs before Optuna sees the URL and reads the disk without writing to it.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from hpstudy.storage import STORAGE_ENV
from hpstudy.study.errors import UserError

SQLITE_HEADER = b"SQLite format 3\x00"
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})
SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql")
_EXAMPLES = "use sqlite:///path/to/file.db or postgresql://user@host:5432/dbname"
#: The pip package of each database driver SQLAlchemy names in a URL (``dialect+driver://``).
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "mysqldb": "mysqlclient",
    "pymysql": "pymysql",
    "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb",
}


@dataclass(frozen=True)
class StorageLocation:
    """A checked storage URL. ``sqlite_path`` is the absolute file path for SQLite, else None."""

    url: str
    sqlite_path: Path | None

    @property
    def is_sqlite(self) -> bool:
        """True for a SQLite file."""
        return self.sqlite_path is not None

    @property
    def exists(self) -> bool:
        """False only for a SQLite file that is not there yet; a server is assumed to exist."""
        return self.sqlite_path is None or self.sqlite_path.exists()

    def display(self) -> str:
        """The URL with any password masked: safe to print, log or write into a report."""
        return redact(self.url)


def storage_option(shown: str) -> str:
    """`` --storage URL`` for a command to print (``shown``: the URL as ``display`` shows it), or
    nothing when ``$HPSTUDY_STORAGE`` holds that URL: the command finds it there, and a URL with
    its password masked would not log in if copied."""
    from_environment = os.environ.get(STORAGE_ENV)
    return "" if from_environment and redact(from_environment) == shown else f" --storage {shown}"


def redact(url: str) -> str:
    """Mask the password of a URL; a string that is no URL is returned unchanged."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    return parsed.render_as_string(hide_password=True)


def parse_storage_url(url: str) -> StorageLocation:
    """Check the syntax of ``url`` and normalise a SQLite path to an absolute one.

    Raises UserError for a malformed URL, an unsupported backend, an in-memory SQLite database or
    a SQLite path in a directory that does not exist, and a database driver that is unknown, not
    installed or asynchronous. Reads nothing, writes nothing.
    """
    text = url.strip()
    try:
        parsed = make_url(text)
    except ArgumentError:
        hint = f"; did you mean sqlite:///{text}?" if text.endswith((".db", ".sqlite", ".sqlite3")) else f"; {_EXAMPLES}"
        raise UserError(f"storage URL '{redact(text)}' is not a valid database URL{hint}") from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise UserError(f"storage URL '{redact(text)}': unsupported backend '{backend}'; {_EXAMPLES}")
    if backend != "sqlite":
        if not parsed.database:
            raise UserError(f"storage URL '{redact(text)}' names no database; {_EXAMPLES}")
        _check_driver(parsed, redact(text))
        return StorageLocation(url=text, sqlite_path=None)
    return _sqlite_location(parsed, text)


def _check_driver(parsed: URL, shown: str) -> None:
    """Refuse a server URL whose driver SQLAlchemy does not know, is not installed, or is
    asynchronous (Optuna's storage is synchronous); ``shown`` is the URL as printed."""
    backend = parsed.get_backend_name()
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise UserError(
            f"storage URL '{shown}': unknown {backend} driver '{parsed.get_driver_name()}'; "
            f"leave it out ({backend}://...) or name an installed one"
        ) from None
    if getattr(dialect, "is_async", False):
        raise UserError(
            f"storage URL '{shown}': driver '{dialect.driver}' is asynchronous and Optuna's storage is not; "
            f"leave it out ({backend}://...) or name a synchronous one"
        )
    try:
        dialect.import_dbapi()
    except ImportError:
        package = DRIVER_PACKAGES.get(dialect.driver, dialect.driver)
        raise UserError(
            f"storage URL '{shown}' needs the database driver '{dialect.driver}', which is not installed; "
            f"pip install {package}, or name an installed driver"
        ) from None


def _sqlite_location(parsed: URL, text: str) -> StorageLocation:
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise UserError(
            f"storage URL '{text}' is an in-memory database, lost when hpstudy exits; "
            "use sqlite:///path/to/file.db"
        )
    raw_path = database.removeprefix("file:") if parsed.query.get("uri") else database
    path = Path(raw_path).expanduser().resolve()
    if not path.parent.is_dir():
        raise UserError(
            f"SQLite path '{path}': directory '{path.parent}' does not exist; create it first"
        )
    if path.is_dir():
        raise UserError(f"SQLite path '{path}' is a directory; name a file, e.g. {path}/hpstudy.db")
    database = f"file:{path}" if parsed.query.get("uri") else str(path)
    return StorageLocation(url=parsed.set(database=database).render_as_string(hide_password=False), sqlite_path=path)


def check_optuna_sqlite(path: Path) -> None:
    """Refuse an existing file that is not an Optuna SQLite database; the file is only read.

    Checks the 16-byte SQLite header, then opens the file read-only and requires Optuna's
    ``studies``, ``trials`` and ``version_info`` tables.
    """
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise UserError(f"storage file '{path}' cannot be read ({exc.strerror})") from None
    if header != SQLITE_HEADER:
        what = "an empty file" if not header else "not a SQLite database"
        raise UserError(
            f"storage file '{path}' is {what}, so not an Optuna study database; "
            "choose another path (it was left untouched)"
        )
    try:
        tables = read_table_names(path)
    except sqlite3.DatabaseError as exc:
        raise UserError(
            f"storage file '{path}' is corrupt or unreadable ({exc}); "
            "run `hpstudy check` on it or restore a copy (it was left untouched)"
        ) from None
    missing = OPTUNA_TABLES - tables
    if missing:
        raise UserError(
            f"storage file '{path}' is a SQLite database but not Optuna's (no table "
            f"{', '.join(sorted(missing))}); choose another path (it was left untouched)"
        )


def read_table_names(path: Path) -> set[str]:
    """The table names of a SQLite file, read through a read-only connection."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        connection.close()
    return {name for (name,) in rows}
