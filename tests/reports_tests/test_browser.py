"""Reports in a real browser (Debian's chromium via Playwright): opened from file://, no network
request, every plot drawn, no console or page error, no dialog; a full-page screenshot each."""

from __future__ import annotations

import struct

import optuna
import pytest

from bench.synthetic import add_synthetic_study
from hpstudy.reports.html import write_report
from tests.reports_tests.browser import launch_chromium, visit
from tests.reports_tests.edge_studies import EXPLAINED, XSS_NAME, add_edge_studies, add_xss_studies
from tests.reports_tests.page import read_page
from tests.reports_tests.sweep_studies import SWEEPS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    """One chromium for the module's tests."""
    yield from launch_chromium()


def report_of(url, names, path):
    """Write the report of studies ``names`` at ``url`` to ``path``."""
    return write_report([optuna.load_study(study_name=n, storage=url) for n in names], path, storage=url)


def png_size(path):
    """(width, height) of a PNG file, read from its header."""
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def assert_clean(seen):
    """No request, error or dialog; every plot drawn; a full-page screenshot saved."""
    assert seen.network_requests == []
    assert seen.console_errors == [] and seen.page_errors == []
    assert seen.dialogs == []
    assert seen.plots > 0 and seen.plots_with_svg == seen.plots
    width, height = png_size(seen.screenshot)
    assert width == 1400 and height > 900, "a full-page screenshot"
    print(f"screenshot: {seen.screenshot}")


def test_comparison_report_renders_offline(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    add_synthetic_study(url, "tpe", n_trials=80, epochs=10, seed=1, sampler="tpe")
    add_synthetic_study(url, "random", n_trials=80, epochs=10, seed=2, sampler="random")
    seen = visit(browser, report_of(url, ["tpe", "random"], tmp_path / "report.html"), screenshot=tmp_path / "comparison.png")
    assert_clean(seen)
    assert seen.plots == 4 + 8 * 2  # history, EDF, savings, strategies; 8 per study
    assert seen.title == "hpstudy report: tpe vs random"


def test_edge_case_studies_render_with_their_explanations(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    add_edge_studies(url)
    seen = visit(browser, report_of(url, list(EXPLAINED), tmp_path / "edge.html"), screenshot=tmp_path / "edge.png")
    assert_clean(seen)


def test_xss_strings_open_no_dialog_and_add_no_handler(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'xss.db'}"
    names = add_xss_studies(url)
    seen = visit(browser, report_of(url, names, tmp_path / "xss.html"), screenshot=tmp_path / "xss.png")
    assert_clean(seen)
    assert seen.on_attributes == [] and seen.images == 0
    assert XSS_NAME in seen.title


def test_sweep_and_strategy_reports_render_offline(browser, sweep_url, strategy_url, tmp_path):
    url, names = strategy_url
    for name, storage, studies, first_title in (
        ("sweeps", sweep_url, list(SWEEPS), "Final validation loss and accuracy against"),
        ("strategies", url, names, "Search strategies on one space"),
    ):
        report = report_of(storage, studies, tmp_path / f"{name}.html")
        figures = read_page(report.read_text()).figures()
        seen = visit(browser, report, screenshot=tmp_path / f"{name}.png")
        assert_clean(seen)
        assert seen.plots == len(figures), "every figure the page carries is drawn"
        assert figures[0]["layout"]["title"]["text"].startswith(first_title), "the new view comes first"
