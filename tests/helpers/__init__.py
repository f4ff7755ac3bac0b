"""Helpers shared by the tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path


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
