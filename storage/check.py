"""`hpstudy check`: is the store sound, are trials stuck RUNNING, are checkpoints left behind or
damaged, did a killed process leave files or a half-made study?

Without ``fix`` nothing is written: the SQLite file is checked through a read-only connection.
With ``fix`` stuck trials are failed and queued again (as a dead worker's would be), orphaned and
damaged checkpoints are deleted (a retry whose checkpoint is damaged starts from epoch 0), and the
temporary files of killed processes are removed. A half-made study is reported for the user to
adopt (`hpstudy run` of it) or delete.
"""

from __future__ import annotations

import glob
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import optuna
from optuna.trial import TrialState

from hpstudy.storage.engine import SQLITE_BUSY_TIMEOUT_S, Heartbeat, Mode, open_storage
from hpstudy.storage.recovery import RetryStaleTrial, abandoned_trials, fail_and_retry, process_alive
from hpstudy.storage.stored_config import checkpoint_store, has_stored_config, is_half_made, stored_config
from hpstudy.storage.sqlite_files import is_damaged, reading
from hpstudy.storage.urls import StorageLocation, check_optuna_sqlite, unreadable
from hpstudy.study import trial_attrs
from hpstudy.study.config import StudyConfig
from hpstudy.study.errors import UserError, shorten

if TYPE_CHECKING:
    from hpstudy.study.checkpoints import CheckpointStore


#: How long a trial without a worker record may run before it counts as abandoned, in a study
#: hpstudy did not make (hpstudy's own store their grace period).
FOREIGN_GRACE_S = 3600.0


class DamagedCheckpoint(NamedTuple):
    """A checkpoint of a live trial that cannot be used, and why (``CheckpointStore.damage``)."""

    path: Path
    reason: str


@dataclass
class StudyHealth:
    """One study's trials that need attention, its checkpoints nobody will read again or nobody
    can, the temporary files its killed writers left, and whether it was left half-made."""

    name: str
    running: list[int] = field(default_factory=list)
    stuck: list[int] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    damaged: list[DamagedCheckpoint] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)
    half_made: bool = False
    requeued: list[int] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """What still needs attention: stuck trials, and files that --fix did not delete yet."""
        files = {*self.orphans, *(d.path for d in self.damaged), *self.leftovers}
        return len(set(self.stuck) - set(self.requeued)) + len(files - set(self.deleted)) + int(self.half_made)


@dataclass
class CheckReport:
    """What `hpstudy check` found (and fixed)."""

    storage: str
    integrity: str
    studies: list[StudyHealth]
    leftovers: list[Path] = field(default_factory=list)  # a killed database build's hidden files
    removed: list[Path] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Stuck trials, half-made studies and files to delete that are still there."""
        return sum(h.problems for h in self.studies) + len(set(self.leftovers) - set(self.removed))


def sqlite_integrity(path: Path, *, timeout: float = SQLITE_BUSY_TIMEOUT_S) -> str:
    """``PRAGMA integrity_check`` through a read-only connection (``reading``); UserError when it
    is not ok, when the file is locked for ``timeout`` seconds (``FileLocked``) or cannot be opened
    (a folder or file it may not read is no damage)."""
    check_optuna_sqlite(path, timeout=timeout)
    try:
        with reading(path, timeout=timeout) as connection:
            rows = [row[0] for row in connection.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        if not is_damaged(exc):
            raise unreadable(path, exc) from None
        rows = [str(exc)]
    if rows != ["ok"]:
        raise UserError(
            f"storage file '{path}' is corrupt (integrity_check: {shorten('; '.join(rows))}); "
            "restore a copy (it was left untouched)"
        )
    return "ok"


def check_storage(location: StorageLocation, *, study_name: str | None = None, fix: bool = False) -> CheckReport:
    """Check ``location`` (one study or all); with ``fix``, repair what can be repaired."""
    if location.sqlite_path is not None:
        if not location.sqlite_path.exists():
            raise UserError(f"no study database at '{location.sqlite_path}'; check --storage")
        integrity = sqlite_integrity(location.sqlite_path)
    else:
        integrity = "not checked (only SQLite files have an integrity check)"
    names = sorted(optuna.get_all_study_names(open_storage(location, mode="read")))
    if study_name is not None:
        if study_name not in names:
            raise UserError(f"no study '{study_name}' in {location.display()}; studies there: {', '.join(names) or 'none'}")
        names = [study_name]
    leftovers = abandoned_builds(location.sqlite_path) if location.sqlite_path is not None else []
    return CheckReport(
        storage=location.display(),
        integrity=integrity,
        studies=[_check_study(location, name, fix=fix) for name in names],
        leftovers=leftovers,
        removed=_delete(leftovers) if fix else [],
    )


#: ``.<db>.building-<pid>`` and its ``-journal``/``-wal``/``-shm``: a database being built whole
#: (``engine.build_sqlite_file``), or left half-built by a killed process.
_BUILD_NAME = re.compile(r"\.building-(?P<pid>\d+)(?:-(?:journal|wal|shm))?$")


def abandoned_builds(path: Path) -> list[Path]:
    """The hidden files of a build of the database ``path`` whose process is gone (a build under
    way is left alone)."""
    found = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.building-*"):
        match = _BUILD_NAME.search(candidate.name)
        if match and candidate.name == f".{path.name}{match.group(0)}" and not process_alive(int(match["pid"])):
            found.append(candidate)
    return sorted(found)


def abandoned_temp_files(store: CheckpointStore) -> list[Path]:
    """Temporary checkpoint files in ``store``'s folder whose writer, on this host, is gone: a write
    cut by a kill (one of another host, or of a live process, is left alone)."""
    from hpstudy.study.checkpoints import host_tag, temp_file_writer  # torch: only where checkpoints are

    here = host_tag()
    found = []
    for path in store.temp_files():
        writer = temp_file_writer(path)
        if writer is not None and writer[0] in (None, here) and not process_alive(writer[1]):
            found.append(path)
    return found


def _delete(paths: list[Path]) -> list[Path]:
    """Delete ``paths``; the ones that are gone now."""
    for path in paths:
        path.unlink(missing_ok=True)
    return [path for path in paths if not path.exists()]


def watched_study(location: StorageLocation, name: str, *, mode: Mode) -> tuple[optuna.Study, StudyConfig | None, float]:
    """Study ``name`` opened with its own heartbeat settings (so trials of silent workers show as
    stale), its stored config (None for a study hpstudy did not make) and its grace period."""
    probe = optuna.load_study(study_name=name, storage=open_storage(location, mode="read"))
    cfg = stored_config(probe) if has_stored_config(probe) else None
    grace = cfg.study.grace_period if cfg is not None else FOREIGN_GRACE_S
    heartbeat = Heartbeat(cfg.study.heartbeat_interval, grace, RetryStaleTrial()) if cfg else None
    study = optuna.load_study(study_name=name, storage=open_storage(location, mode=mode, heartbeat=heartbeat))
    return study, cfg, grace


def _check_study(location: StorageLocation, name: str, *, fix: bool) -> StudyHealth:
    study, cfg, grace = watched_study(location, name, mode="write" if fix else "read")
    health = StudyHealth(name=name)
    stuck = abandoned_trials(study, grace_seconds=grace)
    health.stuck = sorted(stuck)
    health.running = sorted(
        t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number not in stuck
    )
    if fix:
        health.requeued = [n for n, trial in sorted(stuck.items()) if fail_and_retry(study, trial)]
    health.half_made = is_half_made(study)
    if cfg is not None:
        _check_checkpoints(health, checkpoint_store(cfg, location, study), study)
        if fix:
            health.deleted = _delete([*health.orphans, *(d.path for d in health.damaged), *health.leftovers])
    return health


def _check_checkpoints(health: StudyHealth, store: CheckpointStore, study: optuna.Study) -> None:
    """Fill in ``health``'s orphaned checkpoints (no trial will continue them), damaged ones (a
    live trial's that cannot be used: its retry would start from epoch 0) and leftover temporary
    files."""
    live = {
        trial_attrs.lineage(t)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    }
    for lineage in store.lineages():
        if lineage not in live:
            health.orphans.append(store.path(lineage))
        elif (damage := store.damage(lineage)) is not None:
            health.damaged.append(DamagedCheckpoint(store.path(lineage), damage))
    health.leftovers = abandoned_temp_files(store)
