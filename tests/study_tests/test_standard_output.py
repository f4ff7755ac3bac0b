"""Standard output that cannot be written (a full disk, an I/O error) is one line and exit 2 for
every command, never a traceback, also when the failure shows only as Python flushes at exit."""

from __future__ import annotations

import subprocess
import sys

from hpstudy.study.cli import main

ONE_LINE = "hpstudy: error: cannot write standard output (No space left on device); free space where it goes"


def test_a_command_writing_into_a_full_device_says_so_in_one_line(tmp_path):
    """`hpstudy spaces > /dev/full`, as a real process: rich's writes fail while it prints."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "hpstudy.study.cli", "spaces"], stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(ONE_LINE) and result.stderr.count("\n") == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_output_that_fails_only_when_flushed_is_one_line_too(tmp_path, monkeypatch, capsys):
    """`run --print-config` prints less than a buffer: the write fails only at the flush, which
    used to come after main returned, as Python's own 'Exception ignored' at exit."""
    monkeypatch.chdir(tmp_path)
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        assert main(["run", "--print-config"]) == 2
        monkeypatch.undo()
    err = capsys.readouterr().err
    assert err.startswith(ONE_LINE) and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
