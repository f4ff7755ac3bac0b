"""Is an existing database's schema the one this Optuna writes? Checked before Optuna opens it.

Optuna, opening a database, adds any of its tables that are missing, stamps a missing schema
version, and only then refuses a schema it cannot use with a traceback. Here the tables, their
columns and the alembic version are read first, through a connection that writes nothing, and
anything Optuna would change or refuse is one line saying what to do.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy
from optuna.storages._rdb import models  # Optuna's own table models: the schema it writes

from hpstudy.study.errors import UserError

ALEMBIC_TABLE = "alembic_version"
#: Tables every Optuna schema has had, with the columns it has now (``table.`` prefixes of ``_missing_parts``).
CORE_TABLES = ("studies.", "trials.", "version_info.")


@dataclass(frozen=True)
class Revisions:
    """The alembic revisions of Optuna's schema: the one this Optuna writes, and all it knows."""

    head: str
    known: frozenset[str]


@functools.cache
def optuna_revisions() -> Revisions | None:
    """Read from Optuna's own alembic scripts (once per process); None where they are not found,
    and then Optuna's own check at opening decides."""
    from alembic.script import ScriptDirectory

    folder = Path(models.__file__).parent / "alembic"
    if not folder.is_dir():
        return None
    scripts = ScriptDirectory(str(folder))
    head = scripts.get_current_head()
    return Revisions(head=head, known=frozenset(r.revision for r in scripts.walk_revisions())) if head else None


@dataclass(frozen=True)
class StoredSchema:
    """What a database holds: Optuna's tables that are there, with their columns, and the alembic
    revision (None when there is none)."""

    columns: Mapping[str, frozenset[str]]
    revision: str | None


def read_schema(connection: sqlalchemy.Connection) -> StoredSchema:
    """The tables (those Optuna names), columns and alembic revision, read through ``connection``."""
    inspector = sqlalchemy.inspect(connection)
    present = set(inspector.get_table_names())
    columns = {
        name: frozenset(column["name"] for column in inspector.get_columns(name))
        for name in models.BaseModel.metadata.tables
        if name in present
    }
    revision = None
    if ALEMBIC_TABLE in present:
        revision = connection.exec_driver_sql(f"SELECT version_num FROM {ALEMBIC_TABLE}").scalar()
    return StoredSchema(columns=columns, revision=revision)


def check_schema(stored: StoredSchema, *, shown: str, storage_flag: str) -> None:
    """Refuse ``stored`` unless Optuna opens it as it is: a schema version it knows and writes,
    every table of that schema with every column. ``shown``: the database as printed;
    ``storage_flag``: its ``--storage URL`` for the command to print."""
    revisions = optuna_revisions()
    missing = _missing_parts(stored)
    if stored.revision is None and any(part.startswith(CORE_TABLES) for part in missing):
        _refuse_look_alike(shown, missing)
    if stored.revision is None:
        raise UserError(
            f"{shown} has Optuna's tables but no schema version (table {ALEMBIC_TABLE} is missing or empty), so "
            f"nothing was written to it; if an Optuna older than 1.0 wrote it, back it up and run "
            f"`optuna storage upgrade{storage_flag}`, else choose another storage"
        )
    if revisions is not None and stored.revision != revisions.head:
        if stored.revision in revisions.known:
            raise UserError(
                f"{shown} was written by an older Optuna (schema {stored.revision[:40]}; this one writes "
                f"{revisions.head}), so nothing was written to it; back it up, then run "
                f"`optuna storage upgrade{storage_flag}`"
            )
        raise UserError(
            f"{shown} has a schema version this Optuna does not know ({stored.revision[:40]}; a newer Optuna?), so "
            "nothing was written to it; `pip install -U optuna`, or choose another storage"
        )
    if missing:
        _refuse_look_alike(shown, missing)


def _refuse_look_alike(shown: str, missing: list[str]) -> None:
    listed = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
    raise UserError(
        f"{shown} has tables named like Optuna's but not its schema (missing {listed}), so nothing was "
        "written to it; choose another storage"
    )


def _missing_parts(stored: StoredSchema) -> list[str]:
    """Optuna's tables (``table``) and columns (``table.column``) that ``stored`` lacks."""
    missing: list[str] = []
    for table, spec in models.BaseModel.metadata.tables.items():
        if table not in stored.columns:
            missing.append(table)
        else:
            missing.extend(f"{table}.{c.name}" for c in spec.columns if c.name not in stored.columns[table])
    return missing
