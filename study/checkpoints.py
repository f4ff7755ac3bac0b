"""Per-trial checkpoints: written atomically after every epoch, read back when a trial is retried.

A checkpoint is keyed by study and *lineage*: a trial retried after a crash keeps the number of
the trial it retries, so every retry finds the same file. Writes happen on a background thread
(the training loop hands over a CPU copy of the state and goes on); each write is a temporary
file, fsync, rename, so a reader sees either the previous checkpoint or the new one, never half
of one. Plain PyTorch; nothing here knows of Optuna.
"""

from __future__ import annotations

import io
import os
import re
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
        """The latest checkpoint of ``lineage`` (``torch.load(weights_only=True)``), or None."""
        path = self.path(lineage)
        if not path.exists():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

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


def unwritable(path: Path, error: OSError) -> UserError:
    """The one-line error for a checkpoint file that the disk refused (full, read-only, ...)."""
    return UserError(
        f"cannot write {path}: {error.strerror or error}; free space there, set train.checkpoint_dir to "
        "another disk, or run with --set train.checkpoints=false"
    )


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync it, rename it over ``path``,
    then fsync the folder so the rename itself survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    buffer = io.BytesIO()  # serialized in memory first: written to the file, a full disk is an OSError
    torch.save(obj, buffer)  # with its errno, where torch's own file writer only says "unexpected pos"
    try:
        with tmp.open("wb") as handle:
            handle.write(buffer.getbuffer())
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
        """Drop any waiting write, wait for a running one, then delete ``path``."""
        with self._condition:
            self._pending.pop(path, None)
            self._condition.wait_for(lambda: self._busy_path != path)
        path.unlink(missing_ok=True)

    def flush(self) -> None:
        """Wait until every submitted checkpoint is on disk."""
        with self._condition:
            self._condition.wait_for(lambda: not self._pending and self._busy_path is None)
            self._raise_error()

    def close(self) -> None:
        """Write what is waiting, then stop the thread."""
        self.flush()
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
