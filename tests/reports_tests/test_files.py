"""Output files are written whole or not at all, and never over a SQLite database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hpstudy.reports.files import check_can_write, refuse_replacing_a_database, write_text_atomically
from hpstudy.study.errors import UserError


def test_writes_and_replaces_a_file_leaving_no_temporary_file(tmp_path):
    target = tmp_path / "out.csv"
    write_text_atomically(target, "a\n")
    write_text_atomically(target, "b\n")
    assert target.read_text() == "b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_failed_write_keeps_what_was_there_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "kept.txt").write_text("mine")
    with pytest.raises(UserError, match=f"cannot write '{target}' \\(Is a directory\\); name a file in a folder"):
        write_text_atomically(target, "report")  # a directory cannot be replaced by a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (target / "kept.txt").read_text() == "mine"


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (x)")
    return path


@pytest.mark.parametrize("name", ["runs.db", "runs.db-wal", "runs.db-shm", "runs.db-journal"])
def test_a_database_and_its_side_files_are_never_written_over(database, name):
    target = database.with_name(name)
    if name != "runs.db":
        target.write_bytes(b"side file")
    before = {p.name: p.read_bytes() for p in database.parent.iterdir()}
    with pytest.raises(UserError, match=r"writing there would destroy it, name another file"):
        write_text_atomically(target, "trial,value\n")
    assert {p.name: p.read_bytes() for p in database.parent.iterdir()} == before


def test_side_file_names_without_their_database_and_other_files_are_ordinary_outputs(database, tmp_path):
    refuse_replacing_a_database(tmp_path / "other.db-wal")  # no other.db: nothing to destroy
    (tmp_path / "notes.db").write_text("text, not a database")
    write_text_atomically(tmp_path / "notes.db", "replaced")
    assert (tmp_path / "notes.db").read_text() == "replaced"


def test_a_place_that_takes_no_file_is_found_before_writing_and_left_as_it_was(tmp_path):
    check_can_write(tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    with pytest.raises(UserError, match=r"cannot write '/proc/report\.html' \("):
        check_can_write(Path("/proc/report.html"))
    with pytest.raises(UserError, match="is a directory; name a file in it"):
        check_can_write(tmp_path)
