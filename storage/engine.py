"""Opening Optuna's RDB storage: checks first, then SQLite tuned for several processes.

SQLite gets WAL journaling (readers never wait for the writer), ``synchronous=NORMAL`` (durable
against a killed process; one commit costs well under a millisecond instead of several), a 30 s
busy timeout, and ``BEGIN IMMEDIATE`` transactions so two processes can never both claim the same
queued trial (SQLite ignores ``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import sqlite3
import time
import warnings
import weakref
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.storages._rdb import models  # Optuna's own table models, for the batched writes
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.distributions import BaseDistribution, check_distribution_compatibility
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from hpstudy.storage import trial_rows
from hpstudy.storage.schema import check_schema, read_schema
from hpstudy.storage.sqlite_files import (
    BUILD_FILE,
    FileLocked,
    Retries,
    folder_is_writable,
    is_damaged,
    lock_holders,
    read_only_connection,
    release_side_files,
    side_files,
)
from hpstudy.storage.urls import StorageLocation, check_optuna_sqlite, redact, storage_option, unreadable
from hpstudy.study.errors import UserError

SQLITE_BUSY_TIMEOUT_S = 30.0

StaleTrialCallback = Callable[["optuna.Study", FrozenTrial], None]
Mode = Literal["create", "write", "read"]


@dataclass(frozen=True)
class Heartbeat:
    """Optuna heartbeats: a running trial beats every ``interval`` s; after ``grace`` s of silence
    any worker may fail it and queue its retry through ``on_stale``."""

    interval: int
    grace: int
    on_stale: StaleTrialCallback | None = None


def _is_transient(exc: BaseException) -> bool:
    """True for errors that a retry can cure: a locked SQLite file, a dropped connection."""
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
        return True
    return isinstance(cause, sqlalchemy.exc.OperationalError)


def _driver_error(exc: BaseException) -> BaseException:
    """The database driver's own exception under SQLAlchemy's (and Optuna's) wrappers of it."""
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ else exc
    return getattr(cause, "orig", None) or cause


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` retried on transient errors. When the retries run out, the user gets one line
    saying so (``StorageUnavailable``, which no outer retrying call retries again), not a driver's
    traceback."""

    @functools.wraps(method)
    def call(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        delay = self.retries.first_delay
        for attempt in range(1, self.retries.attempts + 1):
            try:
                return method(self, *args, **kwargs)
            except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
                if is_damaged(_driver_error(exc)):
                    raise StorageDamaged.at(self.url, _driver_error(exc)) from exc
                if not _is_transient(exc):
                    raise
                if attempt == self.retries.attempts:
                    raise StorageUnavailable.after(
                        exc, url=self.url, seconds=time.monotonic() - began, sqlite_path=self.sqlite_path
                    ) from exc
                self.retried += 1
            time.sleep(delay)
            delay = min(delay * 2, self.retries.max_delay)
        raise AssertionError("unreachable")

    return call


class StorageUnavailable(UserError):
    """The storage stayed locked or unreachable through every retry."""

    @classmethod
    def after(
        cls, exc: BaseException, *, url: str, seconds: float, sqlite_path: Path | None = None
    ) -> StorageUnavailable:
        """The error for ``exc``, the last of the retries of ``seconds`` on the storage at ``url``
        (the SQLite file ``sqlite_path``, None for a server)."""
        detail = _driver_error(exc)
        reason = _first_line(detail)
        return cls(
            f"storage '{redact(url)}' stayed unavailable for {seconds:.0f} s ({reason}): {_hint(reason, sqlite_path)}, "
            "then run again (finished trials are kept)"
        )


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), at most 160 characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def _hint(reason: str, sqlite_path: Path | None) -> str:
    """What to do about a storage that failed for ``reason``: a SQLite file is never blamed on a server."""
    if "locked" in reason or "busy" in reason:
        holders = lock_holders(sqlite_path) if sqlite_path else []
        who = f" ({', '.join(holders)})" if holders else " (a database browser, a stuck process?)"
        return f"another program holds the SQLite file locked{who}; close it"
    if "full" in reason:
        return "its disk is full; free space there"
    if "readonly" in reason or "read-only" in reason or "unable to open" in reason:
        return "the file or its folder cannot be written (a read-only file or mount?); make them writable"
    if sqlite_path is not None:
        return "the file could not be read or written; `hpstudy check` looks at it"
    return "the database server may be down or unreachable; bring it back"


class StorageDamaged(UserError):
    """SQLite found damaged pages while reading or writing the storage."""

    @classmethod
    def at(cls, url: str, detail: BaseException) -> StorageDamaged:
        """The error for the storage at ``url`` that failed with SQLite's ``detail``."""
        return cls(
            f"storage '{redact(url)}' is damaged ({_first_line(detail)}); nothing more is written to it: "
            f"`hpstudy check{storage_option(redact(url))}` shows what is damaged"
        )


class RetryingRDBStorage(RDBStorage):
    """Optuna's RDBStorage with every call retried, with exponential backoff, when it fails for a
    transient reason (SQLite ``database is locked``, a dropped PostgreSQL connection); trials read
    without ORM objects (``trial_rows``); and batched writes: a trial's params
    (``params_in_one_write``), several intermediate values, or several user attrs, each in one
    transaction."""

    retries = Retries()
    retried = 0  # how many retries this storage needed, for tests and diagnostics
    sqlite_path: Path | None = None  # the SQLite file (``open_storage`` sets it), None for a server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            if hasattr(self, "engine"):  # Optuna's schema check refused it: close what it opened
                self.engine.dispose()
            raise
        self._held_params: dict[int, dict[str, tuple[float, BaseDistribution]]] = {}
        # The trial this process set running last: Ctrl-C while Optuna is still starting a trial
        # (before the objective has it) leaves it running, and only this says whose it is.
        self.started_trial_id: int | None = None

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """Optuna's call (under ``create_new_trial`` and Optuna's cache); a trial created running
        is this process's ``started_trial_id``."""
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            self.started_trial_id = trial._trial_id  # noqa: SLF001
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        """Optuna's call; a queued trial this process set running is its ``started_trial_id``."""
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:
            self.started_trial_id = trial_id
        return changed

    @contextlib.contextmanager
    def params_in_one_write(self, trial_id: int) -> Iterator[None]:
        """Store the params suggested inside the block in one transaction as the block ends, also
        when it raises, instead of one transaction per ``suggest``. Each is checked against the
        study's stored distribution when suggested, as Optuna checks it."""
        held = self._held_params[trial_id] = {}
        try:
            yield
        except BaseException:
            del self._held_params[trial_id]
            with contextlib.suppress(Exception):  # the block's own error is the one to see
                self.store_params(trial_id, held)
            raise
        del self._held_params[trial_id]
        self.store_params(trial_id, held)

    def _set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
        previous_distribution: BaseDistribution | None,
    ) -> None:
        """One suggested param (Optuna's cache writes through here): held for the block's write
        inside ``params_in_one_write``, else Optuna's own write."""
        held = self._held_params.get(trial_id)
        if held is None:
            super()._set_trial_param(trial_id, param_name, param_value_internal, distribution, previous_distribution)
            return
        if previous_distribution is None:
            with _create_scoped_session(self.scoped_session) as session:
                previous_distribution = trial_rows.stored_distribution(session, trial_id=trial_id, name=param_name)
        if previous_distribution is not None:
            check_distribution_compatibility(previous_distribution, distribution)
        held[param_name] = (param_value_internal, distribution)

    def store_params(self, trial_id: int, params: Mapping[str, tuple[float, BaseDistribution]]) -> None:
        """Store a running trial's params (name: internal value and distribution) in one transaction."""
        if not params:
            return
        with _create_scoped_session(self.scoped_session, True) as session:
            self._check_updatable(session, trial_id)
            trial_rows.insert_params(session, trial_id=trial_id, params=params)

    def _check_updatable(self, session: Session, trial_id: int) -> None:
        """KeyError when there is no such trial, UpdateFinishedTrialError when it has finished."""
        self.check_trial_is_updatable(trial_id, trial_rows.trial_state(session, trial_id))

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """One trial, read without ORM objects (``trial_rows``); KeyError if there is none."""
        with _create_scoped_session(self.scoped_session) as session:
            trials = trial_rows.read_trials(session, trial_rows.trial_condition(trial_id=trial_id))
        if not trials:
            raise KeyError(models.NOT_FOUND_MSG)
        return trials[0]

    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        """What Optuna's reader returns (its cache refreshes through here), read without ORM
        objects (``trial_rows``): several times faster per trial."""
        with _create_scoped_session(self.scoped_session) as session:
            models.StudyModel.find_or_raise_by_id(study_id, session)
            return trial_rows.read_trials(session, trial_rows.trial_condition(
                study_id=study_id, states=states, included_trial_ids=included_trial_ids,
                trial_id_greater_than=trial_id_greater_than,
            ))

    def set_trial_intermediate_values(self, trial_id: int, values: Mapping[int, float]) -> None:
        """Store several intermediate values of a running trial in one transaction (one INSERT for
        the new steps). Optuna's own call costs a transaction and three ORM queries per step."""
        if not values:
            return
        with _create_scoped_session(self.scoped_session, True) as session:
            self._check_updatable(session, trial_id)
            value_model = models.TrialIntermediateValueModel
            stored_steps = {
                step for (step,) in session.query(value_model.step).filter(value_model.trial_id == trial_id)
            }
            rows = []
            for step, value in values.items():
                if step in stored_steps:
                    self._set_trial_intermediate_value_without_commit(session, trial_id, step, value)
                    continue
                stored, kind = value_model.intermediate_value_to_stored_repr(float(value))
                rows.append({"trial_id": trial_id, "step": step, "intermediate_value": stored,
                             "intermediate_value_type": kind})
            if rows:
                session.execute(sqlalchemy.insert(value_model), rows)

    def set_trial_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Store several user attrs of a running trial in one transaction: one multi-row upsert on
        SQLite and PostgreSQL (Optuna's own call costs two ORM queries and an upsert per attr)."""
        if not attrs:
            return
        with _create_scoped_session(self.scoped_session, True) as session:
            if not trial_rows.can_upsert(self.engine.name):
                for key, value in attrs.items():
                    self._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, key, value)
                return
            self._check_updatable(session, trial_id)
            trial_rows.upsert_user_attrs(session, dialect=self.engine.name, trial_id=trial_id, attrs=attrs)


for _name in (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "_create_new_trial",
    "set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials",
    "get_best_trial", "record_heartbeat", "_get_stale_trial_ids", "_get_trials", "_set_trial_param",
    "set_trial_intermediate_values", "set_trial_user_attrs", "store_params", "_get_best_trial_id",
):
    setattr(RetryingRDBStorage, _name, _retrying(getattr(RetryingRDBStorage, _name)))
del _name


def _heartbeat_may_miss(record_heartbeat: Callable[..., Any]) -> Callable[..., Any]:
    """A heartbeat that cannot be written once retries run out is skipped: it beats on a thread of
    Optuna's, where the error would only print a traceback, and the training thread meets the same
    storage at its next write and says so in one line."""

    @functools.wraps(record_heartbeat)
    def call(self: RetryingRDBStorage, trial_id: int) -> None:
        with contextlib.suppress(StorageUnavailable):
            record_heartbeat(self, trial_id)

    return call


RetryingRDBStorage.record_heartbeat = _heartbeat_may_miss(RetryingRDBStorage.record_heartbeat)  # type: ignore[method-assign]


def params_in_one_write(backend: Any, trial_id: int) -> contextlib.AbstractContextManager[None]:
    """``RetryingRDBStorage.params_in_one_write`` where ``backend`` has it; else nothing changes."""
    if isinstance(backend, RetryingRDBStorage):
        return backend.params_in_one_write(trial_id)
    return contextlib.nullcontext()


def open_storage(
    location: StorageLocation,
    *,
    mode: Mode,
    heartbeat: Heartbeat | None = None,
    sqlite_timeout: float | None = None,
    retries: Retries | None = None,
) -> RetryingRDBStorage:
    """Open the storage at ``location``.

    ``mode``: "create" may create a missing SQLite file (and Optuna's tables); "write" needs an
    existing one; "read" opens it read-only and never writes a byte (SQLite's ``mode=ro``, no table
    creation, no -wal or -shm file left beside it), for commands that only look. Before anything
    is opened for writing, an existing database is checked through a read-only connection: its
    schema must be the one this Optuna writes, and a file a run writes into must be writable and
    pass SQLite's ``quick_check``. Raises UserError when the file is not an Optuna database, is
    damaged, locked through every retry, read-only where it must be written, missing where it
    must exist, or when the server cannot be reached. ``sqlite_timeout``: SQLite's busy timeout in
    seconds (default: the URL's ``?timeout=``, else ``SQLITE_BUSY_TIMEOUT_S``); ``retries``: the
    storage's retries (default ``RetryingRDBStorage.retries``), also of a file found locked while
    it is opened.
    """
    timeout = _busy_timeout(location) if sqlite_timeout is None else sqlite_timeout
    policy = retries or RetryingRDBStorage.retries
    began = time.monotonic()
    for delay in (*policy.delays(), None):
        try:
            storage = _open(location, mode=mode, heartbeat=heartbeat, timeout=timeout,
                            patience=timeout / policy.attempts)
        except FileLocked:
            if delay is None:
                assert location.sqlite_path is not None  # only a SQLite file is found locked
                raise FileLocked.at(location.sqlite_path, seconds=time.monotonic() - began) from None
            time.sleep(delay)
            continue
        storage.retries = policy
        return storage
    raise AssertionError("unreachable")


def _busy_timeout(location: StorageLocation) -> float:
    """The URL's ``?timeout=SECONDS`` (``parse_storage_url`` checked it), else ``SQLITE_BUSY_TIMEOUT_S``."""
    given = sqlalchemy.engine.make_url(location.url).query.get("timeout")
    return float(given) if isinstance(given, str) else SQLITE_BUSY_TIMEOUT_S


def _open(
    location: StorageLocation, *, mode: Mode, heartbeat: Heartbeat | None, timeout: float, patience: float
) -> RetryingRDBStorage:
    """``open_storage``'s one attempt; ``patience``: the busy timeout of its checks before opening."""
    if location.sqlite_path is not None:
        _prepare_sqlite_file(location, mode=mode, patience=patience)
    else:
        _check_server(location)
    storage = _construct(location, mode=mode, heartbeat=heartbeat, timeout=timeout)
    storage.sqlite_path = location.sqlite_path
    if location.is_sqlite and mode != "read":
        tune_sqlite_engine(storage.engine, timeout=timeout)
    weakref.finalize(
        storage, close_engine, storage.engine, fold_log=location.is_sqlite and mode != "read",
        release=location.sqlite_path if mode == "read" else None,
    )
    return storage


def _prepare_sqlite_file(location: StorageLocation, *, mode: Mode, patience: float) -> None:
    """Check an existing SQLite file before it is opened (``open_storage``), or build a new one."""
    path = location.sqlite_path
    assert path is not None
    if not path.exists():
        if mode != "create":
            raise UserError(
                f"no study database at '{path}'; check --storage, or start a study there with `hpstudy run`"
            )
        build_sqlite_file(path)
        return
    check_optuna_sqlite(path, timeout=patience)
    if mode != "read":
        check_writable(path)
    _check_existing_sqlite(location, quick_check=mode != "read", patience=patience)


def check_writable(path: Path) -> None:
    """Refuse to write into the SQLite file ``path`` when it, or its folder (where SQLite keeps
    the -wal and -shm files a writer needs), is read-only."""
    if not folder_is_writable(path.parent):
        raise UserError(
            f"storage file '{path}': its folder '{path.parent}' is not writable (a read-only mount?) and SQLite "
            "keeps a writer's -wal and -shm files there; make it writable or work on a copy elsewhere "
            "(list, best, export and report read it as it is)"
        )
    if not os.access(path, os.W_OK):
        raise UserError(
            f"storage file '{path}' is read-only and this command writes into it; make it writable "
            "(chmod u+w) or work on a copy (list, best, export and report read it as it is)"
        )


def _check_existing_sqlite(location: StorageLocation, *, quick_check: bool, patience: float) -> None:
    """Read ``location``'s schema (and with ``quick_check``, SQLite's ``quick_check``) through a
    read-only connection, then refuse what Optuna would change or could not use."""
    path = location.sqlite_path
    assert path is not None
    engine = sqlalchemy.create_engine(
        "sqlite://", creator=functools.partial(read_only_connection, path, timeout=patience), poolclass=NullPool
    )
    try:
        with engine.connect() as connection:
            stored = read_schema(connection)
            problems = _quick_check(connection) if quick_check else []
    except sqlalchemy.exc.DBAPIError as exc:
        raise unreadable(path, exc.orig or exc) from None
    finally:
        engine.dispose()
        release_side_files(path)
    if problems:
        raise UserError(
            f"storage file '{path}' is damaged (quick_check: {'; '.join(problems)[:160]}), so nothing was written "
            f"to it: `hpstudy check{storage_option(location.display())}` reports it in full"
        )
    check_schema(stored, shown=f"storage file '{path}'", storage_flag=storage_option(location.display()))


def _quick_check(connection: sqlalchemy.Connection) -> list[str]:
    """SQLite's ``PRAGMA quick_check``: the problems found, empty for a sound file. About 0.02 s
    for a 2000-trial study (a 12 MB file, in the page cache)."""
    rows = [row[0] for row in connection.exec_driver_sql("PRAGMA quick_check").fetchall()]
    return [] if rows == ["ok"] else rows


def _check_server(location: StorageLocation) -> None:
    """Connect to a database server once (one line when it cannot be reached) and check the schema
    of the Optuna tables it has, reading only."""
    engine = sqlalchemy.create_engine(location.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            stored = read_schema(connection)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise _unreachable(location, exc) from None
    finally:
        engine.dispose()
    if stored.columns:  # an empty database: Optuna creates its tables
        check_schema(stored, shown=f"storage '{location.display()}'", storage_flag=storage_option(location.display()))


def _construct(
    location: StorageLocation, *, mode: Mode, heartbeat: Heartbeat | None, timeout: float
) -> RetryingRDBStorage:
    """Optuna's storage on ``location`` (checked), read-only in ``mode`` "read"."""
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if location.sqlite_path is not None:
        engine_kwargs = (
            {"creator": functools.partial(read_only_connection, location.sqlite_path, timeout=timeout)}
            if mode == "read"
            else {"connect_args": {"timeout": timeout}}
        )
    try:
        with warnings.catch_warnings(), _released_on_error(location.sqlite_path if mode == "read" else None):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RetryingRDBStorage(
                location.url,
                engine_kwargs=engine_kwargs,
                skip_table_creation=mode == "read",
                heartbeat_interval=heartbeat.interval if heartbeat else None,
                grace_period=heartbeat.grace if heartbeat else None,
                heartbeat_stale_trial_callback=heartbeat.on_stale if heartbeat else None,
            )
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise _open_error(location, exc) from None
    except RuntimeError as exc:  # Optuna's own schema check, where ``optuna_revisions`` found no scripts
        raise UserError(f"cannot open storage '{location.display()}': {_first_line(exc)}") from None
    except ImportError:
        raise UserError(
            f"no database driver for '{location.display()}'; "
            "for PostgreSQL run pip install 'psycopg[binary]'"
        ) from None


@contextlib.contextmanager
def _released_on_error(path: Path | None) -> Iterator[None]:
    """Release the side files of the SQLite file ``path`` (None: nothing to do) when the block
    fails, after it closed its connections."""
    try:
        yield
    except BaseException:
        if path is not None:
            release_side_files(path)
        raise


def _open_error(location: StorageLocation, exc: BaseException) -> UserError:
    """One line for ``exc``, raised while Optuna opened ``location``."""
    detail = _driver_error(exc)
    if location.sqlite_path is not None and isinstance(detail, sqlite3.Error):
        return unreadable(location.sqlite_path, detail)
    return _unreachable(location, exc)


def build_sqlite_file(path: Path) -> None:
    """Create an empty Optuna database at ``path`` whole or not at all: its tables are built in a
    hidden file beside it, which is then linked into place. Ctrl-C or kill -9 while Optuna builds
    them (about a third of a second) used to leave a half-built file that every later command
    refused. A hidden file left by a killed process is removed here next time. A folder that takes
    no new file is a UserError, before anything is made."""
    if not folder_is_writable(path.parent):
        raise UserError(
            f"cannot create the study database '{path}': folder '{path.parent}' is not writable (a read-only "
            "mount?); choose a writable folder"
        )
    _remove_abandoned_builds(path)
    building = path.with_name(f".{path.name}.building-{os.getpid()}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RDBStorage(f"sqlite:///{building}").engine.dispose()
        try:
            os.link(building, path)  # never over a file another process has just put there
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(building, path)
    except (OSError, sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise UserError(f"cannot create the study database '{path}' ({_first_line(_driver_error(exc))})") from None
    finally:
        for leftover in (building, *side_files(building)):
            leftover.unlink(missing_ok=True)


def _remove_abandoned_builds(path: Path) -> None:
    """Remove the builds of ``path`` (and their side files) whose process is gone."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.building-*"):
        match = BUILD_FILE.match(leftover.name)
        if match and match["name"] == path.name and not _process_exists(int(match["pid"])):
            leftover.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def close_engine(engine: sqlalchemy.Engine, *, fold_log: bool, release: Path | None = None) -> None:
    """Close ``engine``'s pooled connections (``open_storage`` calls this when its storage goes, at
    the latest as the process exits). ``fold_log``: first copy SQLite's write-ahead log into the
    file, without waiting on other connections. Left in hpstudy.db-wal, the trials are missing
    from a copy of the .db file alone (mailed, backed up); the last connection to close deletes
    the log, which a read-only one cannot: ``release``, the SQLite file of a read-only engine,
    gets the side files its connections leave behind released (``release_side_files``)."""
    if fold_log:
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError, sqlite3.Error):
            connection = engine.raw_connection()  # the driver's own: no BEGIN, which a checkpoint refuses
            try:
                connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                connection.close()
    engine.dispose()
    if release is not None:
        release_side_files(release)


def has_optuna_tables(location: StorageLocation) -> bool:
    """True when ``location`` holds Optuna's tables (a SQLite file that exists, a server database
    that has them). Reads only; a server that cannot be reached is a UserError."""
    if location.sqlite_path is not None:
        return location.sqlite_path.exists()
    engine = sqlalchemy.create_engine(location.url, poolclass=NullPool)
    try:
        return sqlalchemy.inspect(engine).has_table("version_info")
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise _unreachable(location, exc) from None
    finally:
        engine.dispose()


def _unreachable(location: StorageLocation, exc: BaseException) -> UserError:
    """One line for a server that refused or failed the connection (or a URL it cannot use)."""
    return UserError(
        f"cannot open storage '{location.display()}' ({_first_line(_driver_error(exc))}); "
        "check the URL and that the server is up"
    )


def tune_sqlite_engine(engine: sqlalchemy.Engine, *, timeout: float = SQLITE_BUSY_TIMEOUT_S) -> None:
    """Make every new connection of ``engine`` use WAL, NORMAL sync and BEGIN IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the begin listener issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()
