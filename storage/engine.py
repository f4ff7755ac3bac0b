"""Opening Optuna's RDB storage: checks first, then SQLite tuned for several processes.

SQLite gets WAL journaling (readers never wait for the writer), ``synchronous=NORMAL`` (durable
against a killed process; one commit costs well under a millisecond instead of several), a 30 s
busy timeout, and ``BEGIN IMMEDIATE`` transactions so two processes can never both claim the same
queued trial (SQLite ignores ``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from sqlalchemy import event

from hpstudy.storage.urls import StorageLocation, check_optuna_sqlite
from hpstudy.study.errors import UserError

SQLITE_BUSY_TIMEOUT_S = 30

StaleTrialCallback = Callable[["optuna.Study", FrozenTrial], None]
Mode = Literal["create", "write", "read"]


def open_storage(
    location: StorageLocation,
    *,
    mode: Mode,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback: StaleTrialCallback | None = None,
) -> RDBStorage:
    """Open the storage at ``location``.

    ``mode``: "create" may create a missing SQLite file (and Optuna's tables); "write" needs an
    existing one; "read" opens it read-only and never writes a byte (SQLite's ``mode=ro``, no table
    creation), for commands that only look. Raises UserError when the file is not an Optuna
    database, is missing where it must exist, or when the server cannot be reached.
    """
    if location.sqlite_path is not None:
        if location.sqlite_path.exists():
            check_optuna_sqlite(location.sqlite_path)
        elif mode != "create":
            raise UserError(
                f"no study database at '{location.sqlite_path}'; "
                "check --storage, or start a study there with `hpstudy run`"
            )
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        if location.is_sqlite
        else {"pool_pre_ping": True}
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(
                read_only_url(location) if mode == "read" else location.url,
                engine_kwargs=engine_kwargs,
                skip_table_creation=mode == "read",
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=stale_trial_callback,
            )
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.ProgrammingError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else exc.__class__.__name__
        raise UserError(
            f"cannot open storage '{location.display()}' ({reason}); check the URL and that the server is up"
        ) from None
    except ImportError:
        raise UserError(
            f"no database driver for '{location.display()}'; "
            "for PostgreSQL run pip install 'psycopg[binary]'"
        ) from None
    if location.is_sqlite and mode != "read":
        tune_sqlite_engine(storage.engine)
    return storage


def read_only_url(location: StorageLocation) -> str:
    """The URL that opens ``location`` without writing: SQLite's read-only URI mode."""
    if location.sqlite_path is None:
        return location.url
    return f"sqlite:///file:{location.sqlite_path}?mode=ro&uri=true"


def tune_sqlite_engine(engine: sqlalchemy.Engine) -> None:
    """Make every new connection of ``engine`` use WAL, NORMAL sync and BEGIN IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the begin listener issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()
