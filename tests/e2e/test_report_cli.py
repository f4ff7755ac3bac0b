"""`hpstudy report` and the end-of-run report as a user meets them: real processes, real files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.synthetic import add_synthetic_study
from hpstudy.study.cli import main
from tests.conftest import run_cli
from tests.reports_tests.browser import launch_chromium, visit
from tests.reports_tests.page import read_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    """One chromium for the module's tests."""
    yield from launch_chromium()


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory) -> Path:
    """A storage with TPE and random sampling of the same space."""
    folder = tmp_path_factory.mktemp("two")
    url = f"sqlite:///{folder / 'hpstudy.db'}"
    add_synthetic_study(url, "tpe", n_trials=40, epochs=6, seed=1, sampler="tpe")
    add_synthetic_study(url, "random", n_trials=40, epochs=6, seed=2, sampler="random")
    return folder


@pytest.mark.browser
def test_run_on_the_default_preset_ends_with_a_report_that_renders_offline(tmp_path, browser):
    # the default preset as it is, but for 3 trials of 10 epochs (test_default_run runs all of it)
    result = run_cli("run", "--n-trials", "3", "--device", "cpu", "--set", "search_space.epochs.high=10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last == "Report: hpstudy-report-digits-mlp.html"
    report = tmp_path / "hpstudy-report-digits-mlp.html"
    seen = visit(browser, report, screenshot=tmp_path / "run.png")
    assert seen.network_requests == [] and seen.console_errors == [] and seen.page_errors == []
    assert seen.plots >= 8 and seen.plots_with_svg == seen.plots
    print(f"screenshot: {seen.screenshot}")


def test_run_with_no_report_writes_none_and_resume_writes_one(tmp_path, monkeypatch, capsys):
    from hpstudy.study.cli import main

    yaml = "study: {name: q, n_trials: 1}\ndata: {train_subset: 200, val_subset: 100}\ntrain: {device: cpu}\nsearch_space: {epochs: 1}\n"
    (tmp_path / "q.yaml").write_text(yaml)
    monkeypatch.chdir(tmp_path)  # in process; the test above runs a real `hpstudy run` process
    assert main(["run", "q.yaml", "--no-report"]) == 0
    assert "Report:" not in capsys.readouterr().out and not list(tmp_path.glob("*.html"))
    assert main(["resume", "--study-name", "q", "--n-trials", "2"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "Report: hpstudy-report-q.html"
    page = read_page((tmp_path / "hpstudy-report-q.html").read_text())
    assert "trials 2: 2 complete" in page.visible_text()


def test_report_compares_two_studies(two_studies):
    result = run_cli("report", "--study-name", "tpe", "--study-name", "random", cwd=two_studies)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Report: hpstudy-report-tpe-vs-random.html"
    page = read_page((two_studies / "hpstudy-report-tpe-vs-random.html").read_text())
    assert "hpstudy report: comparing tpe, random" in page.visible_text()
    history = next(f for f in page.figures() if f["layout"]["title"]["text"].startswith("Optimization history"))
    assert {"Best Value of tpe", "Best Value of random"} <= {t.get("name") for t in history["data"]}


def test_a_study_named_twice_is_reported_once(two_studies):
    result = run_cli("report", "--study-name", "tpe", "--study-name", "tpe", cwd=two_studies)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Report: hpstudy-report-tpe.html"
    assert "hpstudy report: tpe" in read_page((two_studies / "hpstudy-report-tpe.html").read_text()).visible_text()


def test_report_all_to_a_chosen_path(two_studies, monkeypatch):
    monkeypatch.chdir(two_studies)  # in process, as the tests below: the test above runs a real `report`
    assert main(["report", "--all", "-o", "all.html"]) == 0
    titles = [f["layout"]["title"]["text"] for f in read_page((two_studies / "all.html").read_text()).figures()]
    assert "Parameter importances: random" in titles and "Parameter importances: tpe" in titles


def test_report_into_a_directory_takes_the_default_name(two_studies, monkeypatch, capsys):
    (two_studies / "reports").mkdir()
    monkeypatch.chdir(two_studies)
    assert main(["report", "--study-name", "tpe", "-o", "reports"]) == 0
    assert capsys.readouterr().out.strip() == "Report: reports/hpstudy-report-tpe.html"
    assert "hpstudy report: tpe" in read_page((two_studies / "reports" / "hpstudy-report-tpe.html").read_text()).visible_text()
    assert [p.name for p in (two_studies / "reports").iterdir()] == ["hpstudy-report-tpe.html"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--study-name", "nope"], r"no study 'nope' in sqlite:///.*hpstudy\.db; studies there: random, tpe"),
        (["--storage", "sqlite:///missing.db"], r"no study in sqlite:///.*missing\.db; start one with"),
        (["--all", "--study-name", "tpe"], r"give --all or --study-name, not both"),
        (["--study-name", "tpe", "-o", "no/such/dir/r.html"], r"directory 'no/such/dir' does not exist"),
    ],
)
def test_report_mistakes_are_one_line_and_exit_2(two_studies, args, message, monkeypatch, capsys):
    monkeypatch.chdir(two_studies)
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), err
    assert not (two_studies / "missing.db").exists(), "a lookup never creates a database"


def test_report_of_a_file_that_is_no_database_is_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.db").write_text("not a database")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--storage", "sqlite:///notes.db"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
