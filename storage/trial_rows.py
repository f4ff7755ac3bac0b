"""Optuna's RDB trial tables read and written with SQLAlchemy Core, without ORM objects.

**Reads.** Optuna's ``RDBStorage`` reads trials as ORM objects (one ``TrialModel`` and one object
per param, attr, value and intermediate value, each tracked by the session) and parses every
param's distribution JSON twice. Its cache re-reads every unfinished trial on each
``get_all_trials``, so with a pack of K trials in training, every sampler step, pruning snapshot
and ``ask`` pays for K trials' rows. ``read_trials`` builds the same ``FrozenTrial`` objects from
the same tables with SQLAlchemy Core: one query for the trial rows, then one per child table for
those trial ids, each distinct distribution JSON parsed once. ``tests/storage_tests/
test_trial_rows.py`` checks that every field equals what Optuna's own reader returns.

**Writes.** A trial's params are written one per ``suggest`` and its user attrs a few times per
trial, several at once; Optuna's ORM path costs a transaction per param and a trial lookup and an
upsert per attr. Here a trial's params can go in as one multi-row INSERT, and its attrs as one
multi-row upsert, after the same checks (the trial must exist and be unfinished; a param's
distribution must be compatible with the one the study already stores under its name).
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.storages._rdb import models  # Optuna's own table models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.orm import Session

_TRIALS = models.TrialModel.__table__
_PARAMS = models.TrialParamModel.__table__
_VALUES = models.TrialValueModel.__table__
_USER_ATTRS = models.TrialUserAttributeModel.__table__
_SYSTEM_ATTRS = models.TrialSystemAttributeModel.__table__
_INTERMEDIATE = models.TrialIntermediateValueModel.__table__


def _local(utc: datetime.datetime | None) -> datetime.datetime | None:
    """A stored naive-UTC datetime as naive local time, as ``TrialModel`` returns it."""
    if utc is None:
        return None
    return utc.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)


def trial_condition(
    *,
    study_id: int | None = None,
    trial_id: int | None = None,
    states: Container[TrialState] | None = None,
    included_trial_ids: Iterable[int] = (),
    trial_id_greater_than: int = -1,
) -> sqlalchemy.ColumnElement[bool]:
    """The WHERE clause on the trials table for one trial, or for a study's trials filtered as
    ``RDBStorage._get_trials`` filters them."""
    if trial_id is not None:
        return _TRIALS.c.trial_id == trial_id
    clauses: list[sqlalchemy.ColumnElement[bool]] = [_TRIALS.c.study_id == study_id]
    if states is not None:
        assert isinstance(states, Iterable)
        clauses.append(_TRIALS.c.state.in_(list(states)))
    included = sorted(i for i in included_trial_ids if i <= trial_id_greater_than)
    if included and trial_id_greater_than > -1:
        clauses.append(sqlalchemy.or_(_TRIALS.c.trial_id.in_(included), _TRIALS.c.trial_id > trial_id_greater_than))
    elif trial_id_greater_than > -1:
        clauses.append(_TRIALS.c.trial_id > trial_id_greater_than)
    return sqlalchemy.and_(*clauses)


CHUNK = 500  # trial ids per child query (SQLite allows 32,766 bound parameters; 999 before 3.32)


def read_trials(session: Session, condition: sqlalchemy.ColumnElement[bool], *, chunk: int = CHUNK) -> list[FrozenTrial]:
    """The trials matching ``condition`` (see ``trial_condition``), ordered by trial id, built as
    Optuna's ``RDBStorage`` builds them. Child rows are selected by the ids the first query found,
    so a trial that changes state between the queries still gets its rows."""
    rows = session.execute(
        sqlalchemy.select(
            _TRIALS.c.trial_id, _TRIALS.c.number, _TRIALS.c.state,
            _TRIALS.c.datetime_start, _TRIALS.c.datetime_complete,
        ).where(condition).order_by(_TRIALS.c.trial_id)
    ).all()
    trials = {row.trial_id: _Parts() for row in rows}
    ids = list(trials)
    parsed: dict[str, BaseDistribution] = {}

    def children(table: sqlalchemy.Table, *columns: str) -> Iterable[Any]:
        order = next(iter(table.primary_key.columns))
        for start in range(0, len(ids), chunk):
            yield from session.execute(
                sqlalchemy.select(table.c.trial_id, *(table.c[name] for name in columns))
                .where(table.c.trial_id.in_(ids[start:start + chunk])).order_by(order)
            )

    for trial_id, name, value, distribution_json in children(_PARAMS, "param_name", "param_value", "distribution_json"):
        distribution = parsed.get(distribution_json)
        if distribution is None:
            distribution = parsed[distribution_json] = json_to_distribution(distribution_json)
        trials[trial_id].params[name] = distribution.to_external_repr(value)
        trials[trial_id].distributions[name] = distribution
    for trial_id, objective, value, kind in children(_VALUES, "objective", "value", "value_type"):
        trials[trial_id].values[objective] = models.TrialValueModel.stored_repr_to_value(value, kind)
    for trial_id, key, value_json in children(_USER_ATTRS, "key", "value_json"):
        trials[trial_id].user_attrs[key] = json.loads(value_json)
    for trial_id, key, value_json in children(_SYSTEM_ATTRS, "key", "value_json"):
        trials[trial_id].system_attrs[key] = json.loads(value_json)
    for trial_id, step, value, kind in children(_INTERMEDIATE, "step", "intermediate_value", "intermediate_value_type"):
        trials[trial_id].intermediate_values[step] = (
            models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(value, kind)
        )
    return [trials[row.trial_id].frozen(row) for row in rows]


@dataclass
class _Parts:
    """One trial's child rows, gathered before its ``FrozenTrial`` is made."""

    params: dict[str, Any] = field(default_factory=dict)
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    values: dict[int, float] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    intermediate_values: dict[int, float] = field(default_factory=dict)

    def frozen(self, row: Any) -> FrozenTrial:
        """The ``FrozenTrial`` of the trial row ``row`` with these parts."""
        values = [self.values[i] for i in range(len(self.values))] if self.values else None
        return FrozenTrial(
            number=row.number, state=row.state, value=None, values=values,
            datetime_start=_local(row.datetime_start), datetime_complete=_local(row.datetime_complete),
            params=self.params, distributions=self.distributions, user_attrs=self.user_attrs,
            system_attrs=self.system_attrs, intermediate_values=self.intermediate_values,
            trial_id=row.trial_id,
        )


# ---------------------------------------------------------------------------------------- writes


def trial_state(session: Session, trial_id: int) -> TrialState:
    """The trial's state; KeyError (Optuna's message) when there is no such trial."""
    state = session.execute(sqlalchemy.select(_TRIALS.c.state).where(_TRIALS.c.trial_id == trial_id)).scalar()
    if state is None:
        raise KeyError(models.NOT_FOUND_MSG)
    return state


def stored_distribution(session: Session, *, trial_id: int, name: str) -> BaseDistribution | None:
    """The distribution the trial's study already stores for the param ``name``, if any."""
    study_id = sqlalchemy.select(_TRIALS.c.study_id).where(_TRIALS.c.trial_id == trial_id).scalar_subquery()
    stored = session.execute(
        sqlalchemy.select(_PARAMS.c.distribution_json)
        .join(_TRIALS, _TRIALS.c.trial_id == _PARAMS.c.trial_id)
        .where(_TRIALS.c.study_id == study_id, _PARAMS.c.param_name == name).limit(1)
    ).scalar()
    return json_to_distribution(stored) if stored is not None else None


def insert_params(session: Session, *, trial_id: int, params: Mapping[str, tuple[float, BaseDistribution]]) -> None:
    """Insert a trial's params (name: internal value and distribution) in one statement."""
    session.execute(sqlalchemy.insert(_PARAMS), [
        {"trial_id": trial_id, "param_name": name, "param_value": value,
         "distribution_json": distribution_to_json(distribution)}
        for name, (value, distribution) in params.items()
    ])


#: Dialects whose INSERT has ``ON CONFLICT DO UPDATE`` (SQLite since 3.24).
_UPSERTS = {"sqlite": sqlalchemy.dialects.sqlite.insert, "postgresql": sqlalchemy.dialects.postgresql.insert}


def can_upsert(dialect: str) -> bool:
    """Whether ``upsert_user_attrs`` works on this database."""
    return dialect == "postgresql" or dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0)


def upsert_user_attrs(session: Session, *, dialect: str, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Insert or replace several user attrs of one trial in one statement (``can_upsert`` first)."""
    statement = _UPSERTS[dialect](_USER_ATTRS).values(
        [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]
    )
    session.execute(statement.on_conflict_do_update(
        index_elements=["trial_id", "key"], set_={"value_json": statement.excluded.value_json},
    ))
