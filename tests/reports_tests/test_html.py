"""The HTML file itself, read with Python's HTML parser: self-contained, every figure present,
edge cases explained in words, and no user-controlled string able to become markup."""

from __future__ import annotations

import html
from pathlib import Path

import optuna
import plotly.graph_objects as go
import pytest

from bench.synthetic import add_synthetic_study
from hpstudy.reports import figures_for
from hpstudy.reports.html import default_report_path, write_report
from hpstudy.reports.sections import FAILED_TO_DRAW, report_content
from hpstudy.reports.study_data import load_study_data
from hpstudy.reports.sweep_findings import sweep_findings
from hpstudy.reports.sweeps import sweep_view
from tests.reports_tests.edge_studies import EXPLAINED, XSS, XSS_NAME, XSS_SWEEP, add_edge_studies, add_xss_studies
from tests.reports_tests.sweep_studies import SWEEPS
from tests.reports_tests.page import read_page

PER_STUDY_SECTIONS = ("curves", "best", "importances", "parallel", "slices", "contour", "choices", "timeline")


def strings_in(value: object) -> list[str]:
    """Every string in a nested structure of dicts, lists and tuples."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in strings_in(item)]
    return []


def load(url: str, name: str) -> optuna.Study:
    """Study ``name`` at ``url``."""
    return optuna.load_study(study_name=name, storage=url)


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[str, list[str]]:
    """TPE against random on the same space, 60 synthetic trials each."""
    url = f"sqlite:///{tmp_path_factory.mktemp('compared') / 'studies.db'}"
    add_synthetic_study(url, "tpe", n_trials=60, epochs=8, seed=1, sampler="tpe")
    add_synthetic_study(url, "random", n_trials=60, epochs=8, seed=2, sampler="random")
    return url, ["tpe", "random"]


def test_report_is_one_self_contained_file_with_every_figure(compared, tmp_path):
    url, names = compared
    path = write_report([load(url, n) for n in names], tmp_path / "report.html", storage=url)
    text = path.read_text(encoding="utf-8")
    page = read_page(text)
    assert [s.attrs for s in page.scripts] == [{}, {"type": "application/json", "id": "hpstudy-figures"}, {}]
    assert page.scripts[0].text.lstrip().startswith("/**\n* plotly.js v")
    assert text.count("* plotly.js v") == 1, "plotly.js is inlined exactly once"
    assert not page.by_tag("link") and not page.by_tag("img") and not page.by_tag("iframe")
    assert all("src" not in e.attrs for e in page.elements)
    assert all(e.attrs["href"].startswith("#") for e in page.by_tag("a"))
    plots = [e for e in page.by_tag("div") if "data-figure" in e.attrs]
    figures = page.figures()
    assert [int(p.attrs["data-figure"]) for p in plots] == list(range(len(figures)))
    # history, EDF, savings and the strategy comparison (TPE against random on one space) overlaid,
    # plus 8 figures per study (both studies have enough trials; neither is a sweep)
    assert len(figures) == 4 + 8 * 2
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert any(t.startswith("Optimization history") for t in titles)
    assert not any(FAILED_TO_DRAW in chunk for chunk in page.text)
    assert len(text.encode()) < 10e6


def test_comparison_shows_both_studies_side_by_side_and_overlaid(compared, tmp_path):
    url, names = compared
    page = read_page(write_report([load(url, n) for n in names], tmp_path / "r.html", storage=url).read_text())
    visible = page.visible_text()
    assert "comparing tpe, random" in visible
    assert "study tpe random objective minimize validation loss minimize validation loss" in visible, (
        "the summary table has a column per study"
    )
    figures = {f["layout"]["title"]["text"]: f for f in page.figures()}
    history = next(f for t, f in figures.items() if t.startswith("Optimization history"))
    assert {trace.get("name") for trace in history["data"]} >= {"Best Value of tpe", "Best Value of random"}
    edf = next(f for t, f in figures.items() if t.startswith("Empirical distribution"))
    assert [trace["name"] for trace in edf["data"]] == ["tpe", "random"]
    for name in names:
        assert f"Validation loss per epoch: {name}" in figures
        assert f"Parameter importances: {name}" in figures


def test_figures_for_returns_the_figures_the_page_embeds(compared):
    url, names = compared
    found = figures_for([load(url, n) for n in names])
    expected = {"history", "edf", "savings", "strategies"} | {
        f"{key}[{name}]" for key in PER_STUDY_SECTIONS for name in names
    }
    assert set(found) == expected
    assert all(isinstance(fig, go.Figure) and fig.data for fig in found.values())


@pytest.fixture(scope="module")
def edge_url(tmp_path_factory) -> str:
    """A storage holding every edge-case study."""
    url = f"sqlite:///{tmp_path_factory.mktemp('edge') / 'edge.db'}"
    add_edge_studies(url)
    return url


@pytest.mark.parametrize("name", list(EXPLAINED))
def test_edge_case_studies_are_explained_in_words(edge_url, tmp_path, name):
    content = report_content([load(edge_url, name)])
    notes = [p.note for s in content.sections for p in s.panels if p.note]
    assert not [n for n in notes if n.startswith(FAILED_TO_DRAW)]
    page = read_page(write_report([load(edge_url, name)], tmp_path / "r.html", storage=edge_url).read_text())
    visible = page.visible_text()
    for sentence in EXPLAINED[name]:
        assert sentence in visible, f"{name}: {sentence!r} missing"
    assert len(page.figures()) == sum(1 for s in content.sections for p in s.panels if p.figure is not None)


def test_edge_cases_side_by_side_in_one_report(edge_url, tmp_path):
    names = list(EXPLAINED)
    content = report_content([load(edge_url, n) for n in names])
    assert [s.name for s in content.summaries] == names
    assert not [p for s in content.sections for p in s.panels if p.note and p.note.startswith(FAILED_TO_DRAW)]
    history = next(s for s in content.sections if s.key == "history")
    assert history.panels[0].note == ("Not shown: 'empty' (no completed trial), 'nothing-completed' (no completed "
                                      "trial), 'diverged-at-once' (no completed trial).")


def test_user_strings_never_become_markup(tmp_path):
    url = f"sqlite:///{tmp_path / 'xss.db'}"
    names = add_xss_studies(url)
    text = write_report([load(url, n) for n in names], tmp_path / "xss.html", storage=url).read_text()
    page = read_page(text)
    assert len(page.scripts) == 3, "only plotly.js, the figure data and the drawing script"
    assert page.scripts[0].text.lstrip().startswith("/**\n* plotly.js v")
    assert "Plotly.newPlot" in page.scripts[2].text and XSS[0] not in page.scripts[2].text
    assert not [(e.tag, a) for e in page.elements for a in e.attrs if a.lower().startswith("on")]
    assert not page.by_tag("img")
    visible = page.visible_text()
    assert f"comparing {XSS_NAME}, {XSS[1]}" in visible, "names show as written"
    assert f"data:\n  dataset: digits\n  root: '{XSS[1]}'" in "".join(page.text), "the stored config shows as written"
    assert XSS[0] in visible  # the trials' device attr
    payload = page.scripts[1].text
    assert "<" not in payload and ">" not in payload and "&" not in payload
    figure_text = str(page.figures())
    assert html.escape(f"lr{XSS[0]}", quote=False) in figure_text, "figure text is escaped for plotly"
    assert f"lr{XSS[0]}" not in figure_text
    assert "Search strategies" in visible and "Sweep: final values" in visible, "the new sections show user strings too"
    assert f"{XSS[1]} = {XSS[0]}:" in visible, "a finding names the swept param and value as written"
    every = figures_for([load(url, n) for n in names])
    new = {key: fig for key, fig in every.items() if key.startswith(("sweep", "strategies"))}
    assert set(new) == {"strategies", f"sweep[{XSS_SWEEP}]", f"sweep_curves[{XSS_SWEEP}]"}
    assert {f"{kind}[{XSS_NAME}]" for kind in ("parallel", "slices", "contour")} <= set(every)
    for key, fig in every.items():  # Optuna's own plots too: category values, hover data, annotations
        assert not [text for text in strings_in(fig.to_plotly_json()) if any(x in text for x in XSS)], key
    assert list(new[f"sweep[{XSS_SWEEP}]"].layout.xaxis.ticktext) == [html.escape(s, quote=False) for s in XSS]


def test_sweep_report_shows_final_values_findings_and_curves_per_study(sweep_url, tmp_path):
    studies = [load(sweep_url, name) for name in SWEEPS]
    content = report_content(studies)
    page = read_page(write_report(studies, tmp_path / "sweeps.html", storage=sweep_url).read_text())
    visible = page.visible_text()
    titles = [s.title for s in content.sections]
    assert titles[:2] == ["Sweep: final values", "Sweep: learning curves"], "the sweep comes first"
    assert "Search strategies" not in titles, "one sampler only: nothing to compare"
    for each in studies:
        findings = sweep_findings(sweep_view(load_study_data(each)))
        assert findings and all(line in visible for line in findings), each.study_name
    assert "No repeat recorded a finite loss, so there is no curve to draw." in visible
    assert "No curve for lr = 1e+08: every repeat diverged." in visible
    assert not any(FAILED_TO_DRAW in chunk for chunk in page.text)
    assert len(page.figures()) == sum(1 for s in content.sections for p in s.panels if p.figure is not None)


def test_default_report_path_keeps_only_safe_characters():
    assert default_report_path(["digits-mlp"]) == Path("hpstudy-report-digits-mlp.html")
    assert default_report_path(["a", "b_c"]) == Path("hpstudy-report-a-vs-b_c.html")
    assert default_report_path([XSS[0]]).name.startswith("hpstudy-report-script_alert_1_script-")
    assert default_report_path(["研究"]) == Path("hpstudy-report-研究.html")  # letters of any script stay


def test_studies_whose_names_clean_to_the_same_file_name_get_reports_of_their_own():
    names = ["a b", "a_b", "a/b", "a:b", "研究", "实验", "x" * 200, "x" * 201]
    paths = [default_report_path([name]) for name in names]
    assert len(set(paths)) == len(names)
    assert paths[1] == Path("hpstudy-report-a_b.html") and paths[0].name.startswith("hpstudy-report-a_b-")
    assert all(len(path.name) < 160 and "/" not in path.name for path in paths)


def test_a_plain_optuna_study_gets_a_report_that_says_what_is_missing(tmp_path):
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    plain = optuna.create_study(storage=url, study_name="plain", sampler=optuna.samplers.RandomSampler(seed=0))
    plain.optimize(lambda t: (t.suggest_float("x", -2, 2) - 1) ** 2 + t.suggest_categorical("c", ["a", "b"]).count("b"),
                   n_trials=15)
    content = report_content([load(url, "plain")])
    assert not [p for s in content.sections for p in s.panels if p.note and p.note.startswith(FAILED_TO_DRAW)]
    (summary,) = content.summaries
    assert summary.objective == "objective value" and summary.config_text is None
    assert summary.sampler == "not recorded (the study was not created by hpstudy)"
    visible = read_page(write_report([load(url, "plain")], tmp_path / "r.html", storage=url).read_text()).visible_text()
    assert "No trial recorded a learning curve (the trials were not run by hpstudy" in visible
    assert "Nothing to suggest yet" not in visible  # its trials completed
    assert "The trials record no epoch counts (they were not run by hpstudy)" in visible
    assert "No stored config: this study was not created by hpstudy." in visible
    figures = {key for s in content.sections for p in s.panels if p.figure is not None for key in [p.key]}
    assert {"history", "edf", "importances[plain]", "parallel[plain]", "contour[plain]", "choices[plain]"} <= figures


@pytest.mark.parametrize(("direction", "best_number", "best_text"), [("minimize", 3, "-inf (trial 3)"),
                                                                     ("maximize", 1, "inf (trial 1)")])
def test_the_best_value_is_optunas_even_when_it_is_infinite_and_the_figures_say_what_they_leave_out(
        tmp_path, direction, best_number, best_text):
    url = f"sqlite:///{tmp_path / 'inf.db'}"
    created = optuna.create_study(storage=url, study_name="inf", direction=direction)
    for value in (1.0, float("inf"), 0.5, float("-inf"), 2.0):
        created.add_trial(optuna.trial.create_trial(value=value, params={"x": value if abs(value) < 9 else 0.0},
                                                    distributions={"x": optuna.distributions.FloatDistribution(-9, 9)}))
    assert load(url, "inf").best_trial.number == best_number
    content = report_content([load(url, "inf")])
    (summary,) = content.summaries
    assert (summary.best.number, summary.infinite) == (best_number, (1, 3))
    assert not [p for s in content.sections for p in s.panels if p.note and p.note.startswith(FAILED_TO_DRAW)]
    visible = read_page(write_report([load(url, "inf")], tmp_path / "r.html", storage=url).read_text()).visible_text()
    assert best_text in visible
    assert "trials 1, 3: complete with an infinite value" in visible
