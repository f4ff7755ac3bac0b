"""Storage URLs: normalise them, check them, and refuse a file that is not an Optuna database.

Optuna creates a SQLite file (or adds its tables to a foreign one) as soon as it opens a URL, so
every check here runs before Optuna sees the URL and reads the disk without writing to it.
"""

from __future__ import annotations

import math
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from hpstudy.storage import STORAGE_ENV
from hpstudy.storage.sqlite_files import (
    BUILD_FILE,
    SIDE_SUFFIXES,
    SQLITE_HEADER,
    FileLocked,
    has_sqlite_header,
    is_damaged,
    is_locked,
    reading,
    side_files,
    special_kind,
)
from hpstudy.storage.masking import check_secrets, mask_url
from hpstudy.study.errors import UserError

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
    shown = redact(shown)  # masked again: a caller's raw URL never reaches the printed command
    return "" if from_environment and redact(from_environment.strip()) == shown else f" --storage {shown}"


def redact(url: str) -> str:
    """``url`` with its password and secret query values masked (``masking.mask_url``): also a URL
    that does not parse, or whose password holds an unescaped ``@``."""
    return mask_url(url)


def parse_storage_url(url: str) -> StorageLocation:
    """Check the syntax of ``url`` and normalise a SQLite path to an absolute one.

    Raises UserError for a malformed URL (a port that is no number too), an unsupported backend,
    an in-memory SQLite database, a SQLite driver or query option Optuna's storage cannot use, a
    SQLite path in a directory that does not exist, one that is no regular file (a directory, a
    FIFO, a device, a socket; a link is judged by its target), one that is, or would be taken
    for, another database's -wal, -shm or -journal file or a database being built, and a database
    driver that is unknown, not installed or asynchronous. Writes nothing and opens no database.
    """
    text = url.strip()
    check_secrets(text)  # a masked password, or an '@' in one: refused before it reaches a server
    try:
        parsed = make_url(text)
    except ArgumentError:
        hint = f"; did you mean sqlite:///{_quoted(redact(text))}?" if text.endswith((".db", ".sqlite", ".sqlite3")) else f"; {_EXAMPLES}"
        raise UserError(f"storage URL '{_quoted(redact(text))}' is not a valid database URL{hint}") from None
    except ValueError:  # SQLAlchemy reads the port as an int
        raise UserError(
            f"storage URL '{_quoted(redact(text))}' is not a valid database URL: its port is not a number; {_EXAMPLES}"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise UserError(f"storage URL '{_quoted(redact(text))}': unsupported backend '{_quoted(backend)}'; {_EXAMPLES}")
    if backend != "sqlite":
        if not parsed.database:
            raise UserError(f"storage URL '{redact(text)}' names no database; {_EXAMPLES}")
        _check_driver(parsed, redact(text))
        return StorageLocation(url=text, sqlite_path=None)
    _check_sqlite_driver(parsed, _quoted(redact(text)))
    _check_sqlite_options(parsed, _quoted(redact(text)))
    return _sqlite_location(parsed, text)


def _quoted(value: str, *, limit: int = 80) -> str:
    """``value`` cut to ``limit`` characters for a message (with ``...`` where it was cut)."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _check_sqlite_driver(parsed: URL, shown: str) -> None:
    """Refuse a SQLite driver other than Python's own sqlite3 (pysqlite): Optuna's storage is
    synchronous and tuned for it (aiosqlite is asynchronous, pysqlcipher encrypts the file)."""
    driver = parsed.get_driver_name()
    if driver != "pysqlite":
        raise UserError(
            f"storage URL '{shown}': SQLite driver '{_quoted(driver)}' is not supported (Optuna's storage uses "
            "Python's own sqlite3); write sqlite:///path/to/file.db"
        )


def _check_sqlite_options(parsed: URL, shown: str) -> None:
    """Refuse query options of a SQLite URL other than ``timeout=SECONDS`` (and ``uri=true`` with a
    ``file:`` path): SQLite's own URI options (``mode=ro``, ``immutable``, ``nolock``...) change how
    the file is opened and written, which hpstudy decides per command."""
    for key, value in parsed.query.items():
        if not isinstance(value, str):
            raise UserError(f"storage URL '{shown}': query option '{_quoted(key)}' is given twice; give it once")
        if key == "timeout":
            _check_timeout(value, shown)
        elif key != "uri" or value.lower() not in ("true", "1"):
            raise UserError(
                f"storage URL '{shown}': query option '{_quoted(key)}={_quoted(value)}' is not supported for SQLite "
                "(hpstudy opens the file read-only itself for commands that only read); a SQLite URL takes only "
                "?timeout=SECONDS"
            )


def _check_timeout(value: str, shown: str) -> None:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise UserError(
            f"storage URL '{shown}': timeout '{_quoted(value)}' is not a number of seconds; write e.g. ?timeout=30"
        )


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
            f"storage URL '{redact(text)}' is an in-memory database, lost when hpstudy exits; "
            "use sqlite:///path/to/file.db"
        )
    raw_path = database.removeprefix("file:") if parsed.query.get("uri") else database
    if "\0" in raw_path:
        raise UserError(f"storage URL '{redact(text)}' has a NUL character in its path, which no file name may hold; "
                        "name the file without it")
    path = Path(raw_path).expanduser().resolve()
    if not path.parent.is_dir():
        raise UserError(
            f"SQLite path '{path}': directory '{path.parent}' does not exist; create it first"
        )
    check_sqlite_path(path)
    database = f"file:{path}" if parsed.query.get("uri") else str(path)
    return StorageLocation(url=parsed.set(database=database).render_as_string(hide_password=False), sqlite_path=path)


def check_sqlite_path(path: Path) -> None:
    """Refuse a SQLite path (links resolved) that is no regular file, or whose name or
    neighbours would make two databases share files: the path of another database's -wal, -shm or
    -journal file or of a database hpstudy is building, or one whose own side file is a database
    (or no regular file). SQLite would overwrite either with the other. Only looks at names and
    file types."""
    kind = special_kind(path)
    if kind == "a directory":
        raise UserError(f"SQLite path '{path}' is a directory; name a file, e.g. {path}/hpstudy.db")
    if kind is not None:
        raise UserError(f"SQLite path '{path}' is {kind}, not a database file; name a regular file, e.g. hpstudy.db")
    suffix = next((s for s in SIDE_SUFFIXES if path.name.endswith(s) and len(path.name) > len(s)), None)
    if suffix is not None:
        base = path.with_name(path.name[: -len(suffix)])
        raise UserError(
            f"SQLite path '{path}' is where SQLite keeps the {suffix} file of the database '{base.name}', and "
            f"one would destroy the other; name the file otherwise, e.g. {base.stem}{suffix}.db"
        )
    if BUILD_FILE.match(path.name):
        raise UserError(
            f"SQLite path '{path}' is the name of a file hpstudy builds a new database in, and removes; "
            "name the file otherwise, e.g. hpstudy.db"
        )
    for side in side_files(path):
        clash = special_kind(side) or ("a database of its own" if has_sqlite_header(side) else None)
        if clash is not None:
            raise UserError(
                f"SQLite path '{path}': '{side.name}' beside it is {clash}, which SQLite would take for this "
                "database's own side file and overwrite; move it away or name another file"
            )


def check_optuna_sqlite(path: Path, *, timeout: float = 5.0) -> None:
    """Refuse an existing file that is not an Optuna SQLite database; the file is only read.

    Checks the 16-byte SQLite header, then opens the file read-only and requires Optuna's
    ``studies``, ``trials`` and ``version_info`` tables. ``timeout``: how long to wait for a
    locked file before raising ``FileLocked`` (which a caller may retry).
    """
    if special_kind(path) is not None:
        check_sqlite_path(path)
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
        tables = read_table_names(path, timeout=timeout)
    except sqlite3.DatabaseError as exc:
        raise unreadable(path, exc) from None
    missing = OPTUNA_TABLES - tables
    if missing:
        raise UserError(
            f"storage file '{path}' is a SQLite database but not Optuna's (no table "
            f"{', '.join(sorted(missing))}); choose another path (it was left untouched)"
        )


def unreadable(path: Path, exc: sqlite3.DatabaseError) -> UserError:
    """The one-line error for SQLite's ``exc`` on reading ``path``: locked (``FileLocked``),
    damaged (pointing at `hpstudy check`), or a file or folder it may not open."""
    if is_locked(exc):
        return FileLocked.at(path)
    reason = _quoted(str(exc))
    if is_damaged(exc):
        return UserError(
            f"storage file '{path}' is corrupt or unreadable ({reason}); nothing was written to it: "
            f"`hpstudy check --storage sqlite:///{path}` shows what is damaged"
        )
    return UserError(
        f"storage file '{path}' cannot be opened ({reason}); check that it and its folder may be read"
    )


def read_table_names(path: Path, *, timeout: float = 5.0) -> set[str]:
    """The table names of a SQLite file, read through a read-only connection (``reading``)."""
    with reading(path, timeout=timeout) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}
