"""Writing output files whole or not at all, and never over a study's database."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hpstudy.storage.urls import SQLITE_HEADER
from hpstudy.study.errors import UserError

#: The files SQLite keeps beside a database ``x.db``: ``x.db-wal``, ``x.db-shm``, ``x.db-journal``.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def refuse_replacing_a_database(path: Path) -> None:
    """Refuse an output ``path`` that is an existing SQLite database or one of the files SQLite
    keeps beside one: a report or an export written there would destroy the study in it."""
    database = next((path.with_name(path.name.removesuffix(side)) for side in SQLITE_SIDE_FILES
                     if path.name.endswith(side)), path)
    if _is_sqlite_database(path) or _is_sqlite_database(database):
        what = "a SQLite database" if database == path else f"a file of the SQLite database '{database}'"
        raise UserError(f"output path '{path}' is {what}; writing there would destroy it, name another file")


def _is_sqlite_database(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:  # missing, a directory, unreadable: not a database this write could destroy
        return False


def check_can_write(path: Path) -> None:
    """Refuse an output ``path`` whose directory does not take new files (read-only, immutable, not
    ours, a pseudo file system) or that is a directory: found by creating and removing a temporary
    file there, so a long run never finds out only at its end."""
    if path.is_dir():
        raise UserError(f"output path '{path}' is a directory; name a file in it")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise _cannot_write(path, exc) from None


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a reader
    sees the old file or the new one, never half of one. A failed write leaves no temporary file
    and is a UserError naming the reason. Refused over a SQLite database
    (``refuse_replacing_a_database``)."""
    refuse_replacing_a_database(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _cannot_write(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _cannot_write(path: Path, exc: OSError) -> UserError:
    reason = exc.strerror or type(exc).__name__
    return UserError(f"cannot write '{path}' ({reason}); name a file in a folder you can write to, or free space there")
