"""Helpers shared by the tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna

from hpstudy.storage.stored_config import study_uid
from hpstudy.study.checkpoints import CheckpointStore, checkpoint_root


def trial_states(db_path: Path, study_name: str) -> list[str]:
    """The states of a study's trials, read straight from the SQLite file (read-only, never waits
    on a writer: WAL), for tests that watch a running process."""
    if not db_path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as connection:
            rows = connection.execute(
                "SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = ? "
                "ORDER BY t.number",
                (study_name,),
            ).fetchall()
    except sqlite3.Error:  # the file is being created
        return []
    return [state for (state,) in rows]


def checkpoint_store(storage_url: str, study_name: str) -> CheckpointStore:
    """The checkpoint store of a study in a SQLite file, as hpstudy makes it: the folder beside the
    file, named by the study's name and id."""
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    return CheckpointStore(checkpoint_root(None, Path(storage_url.removeprefix("sqlite:///"))), study_name,
                           study_uid(study))
