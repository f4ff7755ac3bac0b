"""Every writer (export, report) writes through links and into devices and FIFOs without replacing
them: a symlink keeps pointing where it did, /dev/null stays a device, a FIFO with no reader and a
socket are refused in one line with nothing created."""

from __future__ import annotations

import os
import select
import socket
import stat
import threading
from pathlib import Path

import pytest

from hpstudy.reports.files import check_can_write, write_text_atomically
from hpstudy.study.cli import main
from hpstudy.study.errors import UserError
from tests.reports_tests.builders import LR, falling, hp_study, hp_trial


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    """A small real study on a SQLite file, made once: the tests only read it."""
    path = tmp_path_factory.mktemp("stored") / "hpstudy.db"
    hp_study(f"sqlite:///{path}", "s", [hp_trial({"lr": 0.01}, {"lr": LR}, val_loss=falling(1.0, 0.4, 3))])
    return path


@pytest.fixture
def stored(study_file, tmp_path, monkeypatch):
    """The current folder is ``tmp_path``, and $HPSTUDY_STORAGE names the small study."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPSTUDY_STORAGE", f"sqlite:///{study_file}")


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


def test_export_through_a_link_to_dev_null_keeps_the_link_and_the_device(stored, tmp_path, capsys):
    os.symlink("/dev/null", tmp_path / "out.csv")
    assert main(["export", "-o", "out.csv"]) == 0, capsys.readouterr().err
    assert os.path.islink(tmp_path / "out.csv") and os.readlink(tmp_path / "out.csv") == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert main(["export", "-o", "/dev/null", "--format", "json"]) == 0, capsys.readouterr().err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert files_in(tmp_path) == ["out.csv"]


def test_a_link_to_a_regular_file_or_to_no_file_is_written_at_its_target(stored, tmp_path, capsys):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "trials.csv").write_text("old")
    os.symlink("keep/trials.csv", tmp_path / "link.csv")
    os.symlink("keep/new.json", tmp_path / "dangling.json")
    assert main(["export", "-o", "link.csv"]) == 0, capsys.readouterr().err
    assert main(["export", "-o", "dangling.json"]) == 0, capsys.readouterr().err
    assert os.path.islink(tmp_path / "link.csv") and os.path.islink(tmp_path / "dangling.json")
    assert (tmp_path / "keep" / "trials.csv").read_text().startswith("number,")
    assert (tmp_path / "keep" / "new.json").read_text().lstrip().startswith("[")
    assert files_in(tmp_path / "keep") == ["new.json", "trials.csv"]  # no temporary file left


def test_a_report_through_a_link_is_written_at_its_target(stored, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    os.symlink("r/report.html", tmp_path / "link.html")
    assert main(["report", "-o", "link.html"]) == 0, capsys.readouterr().err
    assert os.path.islink(tmp_path / "link.html")
    assert "<html" in (tmp_path / "r" / "report.html").read_text()[:500].lower()


def test_a_link_to_a_database_or_its_side_file_is_refused(stored, study_file, tmp_path, capsys):
    wal = study_file.with_name("hpstudy.db-wal")
    wal.write_bytes(b"log")
    os.symlink(wal, tmp_path / "out.csv")
    os.symlink(study_file, tmp_path / "db.csv")
    before = study_file.read_bytes()
    try:
        for link in ("out.csv", "db.csv"):
            assert main(["export", "-o", link]) == 2
            assert "writing there would destroy it" in capsys.readouterr().err
        assert wal.read_bytes() == b"log" and study_file.read_bytes() == before
    finally:
        wal.unlink()


def test_a_fifo_with_no_reader_is_refused_and_one_with_a_reader_gets_the_export(stored, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.csv")
    assert main(["export", "-o", "pipe.csv"]) == 2  # refused at once, never waits for a reader
    err = capsys.readouterr().err
    assert "FIFO with no reader" in err and err.count("\n") == 1, err
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe.csv").st_mode)
    received: list[str] = []
    reader_ready = threading.Event()

    def read() -> None:
        fd = os.open(tmp_path / "pipe.csv", os.O_RDONLY | os.O_NONBLOCK)  # a reader is there from now on
        reader_ready.set()
        chunks = []
        while select.select([fd], [], [], 10)[0] and (chunk := os.read(fd, 1 << 16)):  # to the writer's end
            chunks.append(chunk)
        os.close(fd)
        received.append(b"".join(chunks).decode())

    reader = threading.Thread(target=read)
    reader.start()
    reader_ready.wait(10)
    assert main(["export", "-o", "pipe.csv"]) == 0, capsys.readouterr().err
    reader.join(10)
    assert received and received[0].startswith("number,")
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe.csv").st_mode)


def test_dev_stdout_gets_the_export_on_the_open_descriptor(stored, capfd):
    assert main(["export", "-o", "/dev/stdout"]) == 0
    out = capfd.readouterr().out
    assert out.startswith("number,") and "Wrote 1 trial to /dev/stdout" in out


def test_a_socket_and_a_full_device_are_one_line_errors(tmp_path):
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock.csv"))
        with pytest.raises(UserError, match="is a socket, which is never written over; name a regular file"):
            check_can_write(tmp_path / "sock.csv")
        with pytest.raises(UserError, match="is a socket"):
            write_text_atomically(tmp_path / "sock.csv", "x")
        assert stat.S_ISSOCK(os.stat(tmp_path / "sock.csv").st_mode)
    with pytest.raises(UserError, match=r"cannot write '/dev/full' \(No space left on device\)"):
        write_text_atomically(Path("/dev/full"), "x")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_loop_of_links_and_a_link_into_a_missing_folder_are_found_before_writing(tmp_path):
    os.symlink("b.csv", tmp_path / "a.csv")
    os.symlink("a.csv", tmp_path / "b.csv")
    with pytest.raises(UserError, match=r"cannot write '.*a\.csv' \(Too many levels of symbolic links\)"):
        check_can_write(tmp_path / "a.csv")
    os.symlink("no/such/folder.csv", tmp_path / "c.csv")
    with pytest.raises(UserError, match=r"cannot write '.*c\.csv' \(No such file or directory\)"):
        check_can_write(tmp_path / "c.csv")
    assert files_in(tmp_path) == ["a.csv", "b.csv", "c.csv"]
