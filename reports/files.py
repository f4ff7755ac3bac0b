"""Writing output files whole or not at all, and never over a study's database.

A regular file (or a missing one) is written atomically: a temporary file beside it is renamed over
it. A symbolic link is followed first and its target written so, in the target's folder: the link
stays. A character device (``/dev/null``, a terminal) or a FIFO (``>(gzip > x.gz)``), and an open
file descriptor named as a path (``/dev/stdout``, ``/dev/fd/N``) are written to as streams, never
replaced; a FIFO with no reader, a block device and a socket are refused in one line.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hpstudy.storage.urls import SQLITE_HEADER
from hpstudy.study.errors import UserError

#: The files SQLite keeps beside a database ``x.db``: ``x.db-wal``, ``x.db-shm``, ``x.db-journal``.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


#: A path that names an open file descriptor of a process (``self`` or a pid), and its number.
_DESCRIPTOR_PATH = re.compile(r"^/(?:dev/fd|proc/(?P<process>self|thread-self|\d+)/fd)/(?P<number>\d+)$")
_STANDARD_STREAMS = {"/dev/stdout": 1, "/dev/stderr": 2}


@dataclass(frozen=True)
class OutputTarget:
    """Where an output ``path`` is written: ``path`` itself, or its link's target for a symbolic
    link. ``stream``: a character device or FIFO, written to in place; ``descriptor``: the open
    file descriptor a path like ``/dev/stdout`` names, written to as it is (its offset, its append
    mode), else None."""

    path: Path
    stream: bool = False
    descriptor: int | None = None


def output_target(path: Path) -> OutputTarget:
    """Where writing ``path`` goes (``OutputTarget``), after following symbolic links. Refuses a
    block device, a socket or any other special file in one line; reads and writes nothing."""
    shown = os.path.abspath(path)
    named = _STANDARD_STREAMS.get(shown, _descriptor_number(shown))
    if named is not None:
        return OutputTarget(path, stream=True, descriptor=named)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:  # a new file, or a link to a file not there yet: made where the link points
        return OutputTarget(Path(os.path.realpath(path)))
    except OSError as exc:  # a loop of links, a folder that cannot be entered
        raise _cannot_write(path, exc) from None
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return OutputTarget(path, stream=True)
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):  # a directory fails as it is written, naming why
        return OutputTarget(Path(os.path.realpath(path)))
    what = "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file"
    raise UserError(f"output path '{path}' is {what}, which is never written over; name a regular file")


def _descriptor_number(path: str) -> int | None:
    """The descriptor number of this process that ``path`` names, else None."""
    match = _DESCRIPTOR_PATH.match(path)
    if match is None or match.group("process") not in (None, "self", "thread-self", str(os.getpid())):
        return None
    return int(match.group("number"))


def refuse_replacing_a_database(path: Path) -> None:
    """Refuse an output ``path`` that is an existing SQLite database or one of the files SQLite
    keeps beside one, itself or through a symbolic link: a report or an export written there
    would destroy the study in it."""
    for candidate in dict.fromkeys((path, Path(os.path.realpath(path)))):
        database = next((candidate.with_name(candidate.name.removesuffix(side)) for side in SQLITE_SIDE_FILES
                         if candidate.name.endswith(side)), candidate)
        if _is_sqlite_database(candidate) or _is_sqlite_database(database):
            what = "a SQLite database" if database == candidate else f"a file of the SQLite database '{database}'"
            raise UserError(f"output path '{path}' is {what}; writing there would destroy it, name another file")


def _is_sqlite_database(path: Path) -> bool:
    try:
        if not path.is_file():  # a FIFO would block this read; a device is no database
            return False
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:  # missing, a directory, unreadable: not a database this write could destroy
        return False


def check_can_write(path: Path) -> None:
    """Refuse an output ``path`` whose directory does not take new files (read-only, immutable, not
    ours, a pseudo file system) or that is a directory, a block device or a socket: found by
    creating and removing a temporary file where it will be written (a link's target's folder),
    so a long run never finds out only at its end. A device or FIFO is written in place: no probe."""
    if path.is_dir():
        raise UserError(f"output path '{path}' is a directory; name a file in it")
    target = output_target(path)
    if target.stream:
        return
    try:
        with tempfile.NamedTemporaryFile(dir=target.path.parent, prefix=f".{target.path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise _cannot_write(path, exc) from None


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a reader
    sees the old file or the new one, never half of one. A failed write leaves no temporary file
    and is a UserError naming the reason. Refused over a SQLite database
    (``refuse_replacing_a_database``). A symbolic link is followed and its target written so; a
    device, a FIFO or a descriptor's path (``output_target``) is written to as a stream."""
    target = output_target(path)
    if target.stream:
        _write_stream(target, text)
        return
    refuse_replacing_a_database(path)
    refuse_replacing_a_database(target.path)
    tmp = target.path.with_name(f".{target.path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target.path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _cannot_write(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_stream(target: OutputTarget, text: str) -> None:
    """Write ``text`` to a device, FIFO or open descriptor in place. A FIFO is opened without
    waiting: one with no reader is refused rather than waited on forever."""
    if target.descriptor is not None:
        sys.stdout.flush()  # what was printed before comes first
        sys.stderr.flush()
    try:
        fd = os.dup(target.descriptor) if target.descriptor is not None else _open_stream(target.path)
        os.set_blocking(fd, True)
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise _cannot_write(target.path, exc) from None


def _open_stream(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise UserError(f"output path '{path}' is a FIFO with no reader; start its reader first, "
                            "or name a regular file") from None
        raise


def _cannot_write(path: Path, exc: OSError) -> UserError:
    reason = exc.strerror or type(exc).__name__
    return UserError(f"cannot write '{path}' ({reason}); name a file in a folder you can write to, or free space there")
