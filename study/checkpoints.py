"""Per-trial checkpoints: written atomically after every epoch, read back when a trial is retried.

A checkpoint is keyed by study and *lineage*: a trial retried after a crash keeps the number of
the trial it retries, so every retry finds the same file. Writes happen on a background thread
(the training loop hands over a CPU copy of the state and goes on); each write is a temporary
file, fsync, rename, so a reader sees either the previous checkpoint or the new one, never half
of one. Every file carries the SHA-256 of its contents in its own zip comment (a checkpoint is a
plain ``torch.save`` file, which is a zip archive): a file whose bytes changed on disk, or that
was cut short, is refused on load (``BadCheckpoint``) instead of being trained on. Plain PyTorch;
nothing here knows of Optuna.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpstudy.study.errors import UserError

DEFAULT_CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_SUFFIX = ".pt"
BEST_MODEL_NAME = "best-model.pt"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: A checkpoint's zip comment: this prefix, then the SHA-256 (hex) of the file as torch wrote it.
CHECKSUM_PREFIX = b"hpstudy-sha256:"
_COMMENT_LENGTH = len(CHECKSUM_PREFIX) + 64
_END_RECORD = b"PK\x05\x06"  # a zip's end-of-central-directory record: 22 bytes and the comment
_END_RECORD_SIZE = 22
#: ``.<file>.<host>.<pid>.<thread>.tmp``: a write under way, or left by a killed writer (older
#: versions wrote no host).
_TEMP_NAME = re.compile(r"^\.(?P<target>.+\.pt)\.(?:(?P<host>[A-Za-z0-9-]+)\.)?(?P<pid>\d+)\.(?P<tid>\d+)\.tmp$")


def safe_name(text: str) -> str:
    """``text`` made safe as a single path component (study names may hold any character)."""
    cleaned = _SAFE.sub("_", text).strip("._") or "study"
    return cleaned[:100]


def checkpoint_root(checkpoint_dir: str | None, sqlite_path: Path | None) -> Path:
    """Where a study's checkpoints go: ``checkpoint_dir`` when set, else ``<file>.checkpoints``
    beside a SQLite store, else (for a database server) this user's state folder,
    ``$XDG_STATE_HOME/hpstudy/checkpoints`` (``~/.local/state/...``): the same from whichever
    folder a run, a resume or a delete starts."""
    if checkpoint_dir is not None:
        return Path(checkpoint_dir).expanduser().resolve()
    if sqlite_path is not None:
        return sqlite_path.with_name(sqlite_path.name + ".checkpoints")
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home).expanduser().resolve() / "hpstudy" / DEFAULT_CHECKPOINT_DIR


def check_checkpoint_root(checkpoint_dir: str | None, sqlite_path: Path | None) -> None:
    """Refuse, before a run creates anything, a checkpoint folder that could not take a file: one
    that is a file, one whose parent folder is missing (a ``train.checkpoint_dir`` of the user's;
    the default folders are made as needed), or one where no file can be created (read-only, a
    pseudo file system such as /proc, not ours): found by creating and removing an empty file."""
    root = checkpoint_root(checkpoint_dir, sqlite_path)
    what = (f"train.checkpoint_dir '{_clip(checkpoint_dir)}'" if checkpoint_dir is not None
            else f"checkpoint folder '{_clip(str(root))}'")
    fix = "name a folder you can write, or run with --set train.checkpoints=false"
    try:
        folder = _nearest_folder(root, made_with_parents=checkpoint_dir is None)
        if folder is None:
            raise UserError(f"{what}: folder '{_clip(str(root.parent))}' does not exist; create it first, or {fix}")
        if not folder.is_dir():
            raise UserError(f"{what}: '{_clip(str(folder))}' is a file, not a folder; {fix}")
        if sqlite_path is not None and checkpoint_dir is None:
            return  # beside the database: its folder takes the database's own files, or the run says so
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".hpstudy-probe-"):
            pass
    except OSError as exc:
        reason = "no file can be created there" if exc.errno == errno.ENOENT else exc.strerror or str(exc)
        raise UserError(f"{what} cannot be written ({reason}); {fix}") from None


def _nearest_folder(root: Path, *, made_with_parents: bool) -> Path | None:
    """``root`` when it exists; else the folder a write would create it in: its parent, or (for a
    folder made with its parents) the nearest existing ancestor; None when that is missing."""
    if root.exists():
        return root
    if made_with_parents:
        return next(folder for folder in root.parents if folder.exists())
    return root.parent if root.parent.exists() else None


def _clip(text: str | None, limit: int = 80) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class CheckpointStore:
    """Where the checkpoints of one study live: ``ROOT/<study>-<uid>/trial-<lineage>.pt``.

    ``study_uid`` (``stored_config.study_uid``) tells apart studies whose names read the same once
    made safe for a path (``exp/a`` and ``exp_a``), or that share a root from different storages
    (two databases on one server, one ``checkpoint_dir``): they must never read or delete each
    other's checkpoints. A study made before it had one keeps the plain name."""

    root: Path
    study_name: str
    study_uid: str | None = None

    @property
    def folder(self) -> Path:
        """The study's checkpoint folder."""
        name = safe_name(self.study_name)
        return self.root / (f"{name}-{self.study_uid[:12]}" if self.study_uid else name)

    def path(self, lineage: int) -> Path:
        """The checkpoint file of a trial lineage."""
        return self.folder / f"trial-{lineage}{CHECKPOINT_SUFFIX}"

    def load(self, lineage: int) -> dict[str, Any] | None:
        """The latest checkpoint of ``lineage``, checksum verified (``torch.load(weights_only=True)``),
        or None when there is none; ``BadCheckpoint`` when the file is damaged or unreadable."""
        path = self.path(lineage)
        if not path.exists():
            return None
        return read_checkpoint(path)

    def damage(self, lineage: int) -> str | None:
        """Why the checkpoint of ``lineage`` cannot be used (see ``BadCheckpoint``), or None when
        it is sound or absent. Reads the file, trains nothing."""
        path = self.path(lineage)
        try:
            if path.exists():
                verified_payload(path)
        except BadCheckpoint as exc:
            return exc.reason
        return None

    def temp_files(self) -> Iterator[Path]:
        """Temporary files of checkpoint writes in the study's folder: under way, or left behind by
        a writer that was killed (``temp_file_writer`` tells whose)."""
        if self.folder.is_dir():
            yield from sorted(p for p in self.folder.glob(".*.tmp") if _TEMP_NAME.match(p.name))

    def lineages(self) -> Iterator[int]:
        """Lineage numbers that have a checkpoint file."""
        if not self.folder.is_dir():
            return
        numbers = (path.stem.removeprefix("trial-") for path in self.folder.glob(f"trial-*{CHECKPOINT_SUFFIX}"))
        yield from sorted(int(n) for n in numbers if n.isdigit())

    def remove(self, lineage: int) -> None:
        """Delete the checkpoint of ``lineage`` if there is one."""
        self.path(lineage).unlink(missing_ok=True)

    def save_best_model(self, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
        """Keep the best trial's weights as ``<study>/best-model.pt`` (atomically replaced)."""
        path = self.folder / BEST_MODEL_NAME
        try:
            atomic_save({"model": state_dict, "meta": meta}, path)
        except OSError as exc:
            raise unwritable(path, exc) from exc
        return path


class BadCheckpoint(Exception):
    """A checkpoint file that cannot be trained on: damaged (its checksum does not match), cut
    short, empty, not a checkpoint, or unreadable. ``reason`` says which, in a few words."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"checkpoint {path} is unusable ({reason})")
        self.path, self.reason = path, reason


class CheckpointWriteError(UserError):
    """A checkpoint the disk refused (full, read-only, gone): the file, and the ``OSError``."""

    def __init__(self, path: Path, error: OSError, *, message: str | None = None) -> None:
        super().__init__(message or (
            f"cannot write {path}: {error.strerror or error}; free space there, set train.checkpoint_dir to "
            "another disk, or run with --set train.checkpoints=false"
        ))
        self.path, self.error = path, error

    def stopped(self, trials: list[int], *, resume: str) -> CheckpointWriteError:
        """The same error for a run it ended: ``trials`` were stopped and queued again, and
        ``resume`` (a command) continues them from their last checkpoints once there is room."""
        full = self.error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        what = f"disk full at {self.path}" if full else f"cannot write {self.path} ({self.error.strerror or self.error})"
        numbers = ", ".join(str(n) for n in trials)
        todo = "free space there" if full else "make it writable"
        return CheckpointWriteError(self.path, self.error, message=(
            f"{what}; trial {numbers} stopped and queued again: {todo}, then `{resume}` continues from the "
            "last checkpoint"
        ))


def unwritable(path: Path, error: OSError) -> CheckpointWriteError:
    """The one-line error for a checkpoint file that the disk refused (full, read-only, ...)."""
    return CheckpointWriteError(path, error)


def checksum_tail(payload: bytes | memoryview) -> bytes:
    """What replaces the last two bytes of ``payload`` (a ``torch.save`` zip, whose comment is empty)
    so that the zip's own comment holds its SHA-256: the file stays a valid zip, which
    ``torch.load`` and any zip reader open as before."""
    if bytes(payload[-_END_RECORD_SIZE:-_END_RECORD_SIZE + 4]) != _END_RECORD or bytes(payload[-2:]) != b"\0\0":
        raise ValueError("torch.save wrote no zip archive without a comment")
    digest = hashlib.sha256(payload).hexdigest().encode("ascii")
    return _COMMENT_LENGTH.to_bytes(2, "little") + CHECKSUM_PREFIX + digest


def verified_payload(path: Path) -> bytes:
    """The bytes torch wrote to ``path``, its checksum verified; ``BadCheckpoint`` when the file is
    empty, cut short, changed since it was written or unreadable. A file from before checksums (a
    zip without a comment) is taken as it is."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadCheckpoint(path, f"unreadable: {exc.strerror or exc}") from None
    if not data:
        raise BadCheckpoint(path, "empty file")
    end = len(data) - _COMMENT_LENGTH - _END_RECORD_SIZE
    if (end >= 0 and data[end:end + 4] == _END_RECORD and data[end + 20:end + 22] == _COMMENT_LENGTH.to_bytes(2, "little")
            and data[end + _END_RECORD_SIZE:].startswith(CHECKSUM_PREFIX)):
        payload = data[:end + 20] + b"\0\0"
        if hashlib.sha256(payload).hexdigest().encode("ascii") != data[-64:]:
            raise BadCheckpoint(path, "checksum mismatch: its bytes changed after it was written")
        return payload
    if data[-_END_RECORD_SIZE:-_END_RECORD_SIZE + 4] == _END_RECORD and data[-2:] == b"\0\0":
        return data  # written before checksums
    raise BadCheckpoint(path, "no checksum where one belongs: cut short or not a checkpoint")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint in ``path`` (``torch.load(weights_only=True)`` on the CPU), its checksum
    verified; ``BadCheckpoint`` when it is damaged or is no checkpoint dict."""
    payload = verified_payload(path)
    try:
        saved = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged archive or pickle
        raise BadCheckpoint(path, f"unreadable: {str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}") from None
    if not isinstance(saved, dict):
        raise BadCheckpoint(path, f"holds a {type(saved).__name__}, not a checkpoint")
    return saved


def temp_file_writer(path: Path) -> tuple[str | None, int] | None:
    """Who writes (or wrote) the temporary file ``path``: its host tag (None from older versions,
    which wrote on the same host) and process id; None when ``path`` is no checkpoint write."""
    match = _TEMP_NAME.match(path.name)
    return (match["host"], int(match["pid"])) if match else None


def host_tag() -> str:
    """This host's name as it appears in temporary file names."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:63] or "host"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path`` with its checksum (``checksum_tail``),
    fsync it, rename it over ``path``, then fsync the folder so the rename itself survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{host_tag()}.{os.getpid()}.{threading.get_ident()}.tmp")
    buffer = io.BytesIO()  # serialized in memory first: written to the file, a full disk is an OSError
    torch.save(obj, buffer)  # with its errno, where torch's own file writer only says "unexpected pos"
    payload = buffer.getbuffer()
    tail = checksum_tail(payload)
    try:
        with tmp.open("wb") as handle:
            handle.write(payload[:-2])
            handle.write(tail)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def cpu_copy(value: Any) -> Any:
    """A deep copy of nested dicts/lists of tensors with every tensor cloned to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: cpu_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_copy(item) for item in value)
    return value


class CheckpointWriter:
    """Writes checkpoints on a background thread. One state waits per file (a pack's trials each
    have theirs): if a file's write is still waiting when its next epoch's state arrives, the
    waiting state is replaced, never queued behind it."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pending: dict[Path, dict[str, Any]] = {}
        self._busy_path: Path | None = None  # the file being written now
        self._closed = False
        self._error: tuple[Path, BaseException] | None = None  # the file whose write failed, and why
        self.last_write_seconds = 0.0  # how long the latest write took on the writer thread
        self._thread = threading.Thread(target=self._run, name="hpstudy-checkpoints", daemon=True)
        self._thread.start()

    def submit(self, path: Path, state: dict[str, Any]) -> None:
        """Queue ``state`` (already a CPU copy) to be written to ``path``."""
        with self._condition:
            self._raise_error()
            self._pending.pop(path, None)  # the newest state goes to the back of the line
            self._pending[path] = state
            self._condition.notify_all()

    def discard(self, path: Path) -> None:
        """Drop any waiting write, wait for a running one, then delete ``path``; a failed write of
        ``path`` is forgotten (nobody needs that checkpoint any more)."""
        with self._condition:
            self._pending.pop(path, None)
            self._condition.wait_for(lambda: self._busy_path != path)
            if self._error is not None and self._error[0] == path:
                self._error = None
        path.unlink(missing_ok=True)

    def flush(self, *, raise_errors: bool = True) -> None:
        """Wait until every submitted checkpoint is on disk; a write that failed raises here (a
        ``CheckpointWriteError`` for a disk that refused it) unless ``raise_errors`` is off, for a
        caller already ending its trials, whose retries go on from the checkpoints that made it."""
        with self._condition:
            self._condition.wait_for(lambda: not self._pending and self._busy_path is None)
            if raise_errors:
                self._raise_error()
            else:
                self._error = None

    def close(self) -> None:
        """Write what is waiting, then stop the thread (every trial has ended by now: a failed
        write has nobody left to stop)."""
        self.flush(raise_errors=False)
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            (path, error), self._error = self._error, None
            if isinstance(error, OSError):  # the disk, not a bug: say what to do
                raise unwritable(path, error) from error
            raise RuntimeError(f"writing a checkpoint failed: {error}") from error

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: bool(self._pending) or self._closed)
                if not self._pending:
                    return
                path = next(iter(self._pending))
                state = self._pending.pop(path)
                self._busy_path = path
            began = time.perf_counter()
            try:
                atomic_save(state, path)
                self.last_write_seconds = time.perf_counter() - began
            except BaseException as exc:  # reported to the training thread at its next call
                self._error = (path, exc)
            finally:
                with self._condition:
                    self._busy_path = None
                    self._condition.notify_all()
