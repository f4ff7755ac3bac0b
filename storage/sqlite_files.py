"""A SQLite file and the files beside it, read without changing either.

SQLite keeps a database's write-ahead log and its index in ``NAME-wal`` and ``NAME-shm`` (and a
rollback journal in ``NAME-journal``). A read-only connection to a WAL database creates the first
two when they are missing and, unlike a writer, leaves them behind when it closes; in a folder
that takes no new file it cannot open the database at all. ``reading`` opens a file read-only so
that neither happens: in a read-only folder the file is opened as immutable (no writer can be at
work there), elsewhere the side files are released as SQLite's last writer would release them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from hpstudy.study.errors import UserError

SQLITE_HEADER = b"SQLite format 3\x00"
#: What SQLite appends to a database's name for the files it keeps beside it.
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
#: The hidden file ``engine.build_sqlite_file`` builds a new database in (and its side files).
BUILD_FILE = re.compile(r"^\.(?P<name>.+)\.building-(?P<pid>\d+)(?:-wal|-shm|-journal)?$")
#: Words of SQLite's errors for a file whose pages are damaged.
DAMAGE_WORDS = ("malformed", "not a database", "corrupt")
#: Words of SQLite's errors for a file another connection holds locked.
LOCK_WORDS = ("locked", "busy")


@dataclass(frozen=True)
class Retries:
    """How often and how patiently a storage call is retried when the database is briefly away."""

    attempts: int = 8
    first_delay: float = 0.05
    max_delay: float = 2.0

    def delays(self) -> Iterator[float]:
        """The pauses between the attempts: doubling from ``first_delay`` up to ``max_delay``."""
        delay = self.first_delay
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.max_delay)


class FileLocked(UserError):
    """Another connection holds the SQLite file locked (a retry may find it free)."""

    @classmethod
    def at(cls, path: Path, *, seconds: float | None = None) -> FileLocked:
        """The error for ``path``, locked still after ``seconds`` of retries (None: not retried)."""
        holders = lock_holders(path)
        who = f"{', '.join(holders)} holds it open" if holders else "another program holds it locked"
        waited = f" for {seconds:.0f} s" if seconds is not None else ""
        return cls(
            f"storage file '{path}' stayed locked{waited}: {who} (a database browser, a stuck process?); "
            "close it, then run again (nothing was changed, finished trials are kept)"
        )


def side_files(path: Path) -> tuple[Path, ...]:
    """The -wal, -shm and -journal files SQLite keeps beside the database ``path``."""
    return tuple(path.with_name(path.name + suffix) for suffix in SIDE_SUFFIXES)


def special_kind(path: Path) -> str | None:
    """What ``path`` is when it exists and is no regular file (``a FIFO``, ``a directory``...)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    kinds = (
        (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), None if stat.S_ISREG(mode) else "not a regular file")


def has_sqlite_header(path: Path) -> bool:
    """True when the regular file ``path`` starts like a SQLite database."""
    if special_kind(path) is not None:
        return False
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def folder_is_writable(folder: Path) -> bool:
    """Whether new files can be made in ``folder`` (False on a read-only mount, also for root)."""
    return os.access(folder, os.W_OK | os.X_OK)


def read_only_uri(path: Path) -> str:
    """The ``file:`` URI that opens ``path`` read-only; immutable in a folder that takes no new
    file and has no side files, where no writer can be at work and a WAL database could not be
    opened otherwise."""
    options = "mode=ro"
    if not folder_is_writable(path.parent) and not any(side.exists() for side in side_files(path)[:2]):
        options += "&immutable=1"
    return f"file:{quote(str(path))}?{options}"


def read_only_connection(path: Path, *, timeout: float) -> sqlite3.Connection:
    """A read-only connection to ``path`` (see ``read_only_uri``); ``timeout``: SQLite's busy timeout."""
    return sqlite3.connect(read_only_uri(path), uri=True, timeout=timeout, check_same_thread=False)


@contextlib.contextmanager
def reading(path: Path, *, timeout: float) -> Iterator[sqlite3.Connection]:
    """A read-only connection to ``path``, closed and its side files released (``release_side_files``)
    when the block ends."""
    connection = read_only_connection(path, timeout=timeout)
    try:
        yield connection
    finally:
        connection.close()
        release_side_files(path)


def release_side_files(path: Path) -> None:
    """Remove the empty -wal and the -shm that read-only connections leave beside ``path``, as
    SQLite removes them when its last writer closes, and only when no connection (of any process)
    has the database open: SQLite itself decides, by closing one connection of its own, which gets
    the lock it needs only then. A log holding commits (a live or killed writer's) is left to the
    writers."""
    wal, shm, _ = side_files(path)
    if not shm.exists() or (wal.exists() and wal.stat().st_size > 0) or not folder_is_writable(path.parent):
        return
    with contextlib.suppress(sqlite3.Error, OSError):
        connection = sqlite3.connect(path, timeout=0)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()


def is_locked(exc: BaseException) -> bool:
    """True for SQLite's ``database is locked`` / ``busy`` errors."""
    return isinstance(exc, sqlite3.OperationalError) and any(word in str(exc) for word in LOCK_WORDS)


def is_damaged(exc: BaseException) -> bool:
    """True for SQLite's errors about damaged pages (``database disk image is malformed``...)."""
    return isinstance(exc, sqlite3.DatabaseError) and any(word in str(exc) for word in DAMAGE_WORDS)


def lock_holders(path: Path, *, limit: int = 3) -> list[str]:
    """Other processes that have ``path`` open, as ``pid 123 (sqlite3)``, from /proc (Linux; empty
    elsewhere or where /proc shows nothing)."""
    target = str(path)
    found: list[str] = []
    for entry in _process_dirs():
        if _has_open(entry, target):
            found.append(f"pid {entry.name} ({_command(entry)})")
            if len(found) == limit:
                break
    return found


def _process_dirs() -> Iterator[Path]:
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                yield entry


def _has_open(process: Path, target: str) -> bool:
    try:
        return any(os.readlink(fd) == target for fd in (process / "fd").iterdir())
    except OSError:
        return False


def _command(process: Path) -> str:
    try:
        return (process / "comm").read_text().strip()[:40]
    except OSError:
        return "?"
