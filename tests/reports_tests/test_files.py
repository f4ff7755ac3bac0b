"""Output files are written whole or not at all."""

from __future__ import annotations

import pytest

from hpstudy.reports.files import write_text_atomically


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
    with pytest.raises(OSError):
        write_text_atomically(target, "report")  # a directory cannot be replaced by a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (target / "kept.txt").read_text() == "mine"
