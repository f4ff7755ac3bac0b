"""`hpstudy check`: is the store sound, are trials stuck RUNNING, are checkpoints left behind?

Without ``fix`` nothing is written: the SQLite file is checked through a read-only connection.
With ``fix`` stuck trials are failed and queued again (as a dead worker's would be) and orphaned
checkpoints are deleted.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpstudy.storage.engine import Heartbeat, Mode, open_storage
from hpstudy.storage.recovery import RetryStaleTrial, abandoned_trials, fail_and_retry
from hpstudy.storage.stored_config import checkpoint_store, has_stored_config, stored_config
from hpstudy.storage.urls import StorageLocation, check_optuna_sqlite
from hpstudy.study import trial_attrs
from hpstudy.study.config import StudyConfig
from hpstudy.study.errors import UserError


#: How long a trial without a worker record may run before it counts as abandoned, in a study
#: hpstudy did not make (hpstudy's own store their grace period).
FOREIGN_GRACE_S = 3600.0


@dataclass
class StudyHealth:
    """One study's trials that need attention, and its checkpoints nobody will read again."""

    name: str
    running: list[int] = field(default_factory=list)
    stuck: list[int] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)


@dataclass
class CheckReport:
    """What `hpstudy check` found (and fixed)."""

    storage: str
    integrity: str
    studies: list[StudyHealth]

    @property
    def problems(self) -> int:
        """Stuck trials and orphaned checkpoints that are still there."""
        return sum(
            len(set(h.stuck) - set(h.requeued)) + len(set(h.orphans) - set(h.deleted)) for h in self.studies
        )


def sqlite_integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` through a read-only connection; UserError when it is not ok."""
    check_optuna_sqlite(path)
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = [row[0] for row in connection.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise UserError(f"storage file '{path}' is corrupt ({exc}); restore a copy (it was left untouched)") from None
    finally:
        connection.close()
    if rows != ["ok"]:
        raise UserError(
            f"storage file '{path}' is corrupt (integrity_check: {'; '.join(rows)[:200]}); "
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
    return CheckReport(
        storage=location.display(),
        integrity=integrity,
        studies=[_check_study(location, name, fix=fix) for name in names],
    )


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
    if cfg is not None:
        store = checkpoint_store(cfg, location, study)
        live = {
            trial_attrs.lineage(t)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        }
        health.orphans = [store.path(n) for n in store.lineages() if n not in live]
        if fix:
            for path in health.orphans:
                path.unlink(missing_ok=True)
            health.deleted = list(health.orphans)
    return health
