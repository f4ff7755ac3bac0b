"""The HTML report: one self-contained file per set of studies, rendered through a Jinja2 template
with autoescape on.

plotly.js is inlined once; the figures travel as one JSON document inside a
``<script type="application/json">`` element (with ``<``, ``>`` and ``&`` escaped, so no string in
it can close the element) and a short script draws them. Nothing on the page loads from a network.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import optuna
import plotly
import plotly.io as pio
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from hpstudy.reports.figures import TEMPLATE
from hpstudy.reports.files import write_text_atomically
from hpstudy.reports.formatting import duration_text, number_text
from hpstudy.reports.info import PruningSavings, StudySummary
from hpstudy.reports.sections import ReportContent, report_content
from hpstudy.study import __version__

FIGURES_ELEMENT_ID = "hpstudy-figures"
MAX_STEM = 120  # characters of study names in a report file name
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def default_report_path(study_names: Sequence[str]) -> Path:
    """``hpstudy-report-NAME.html`` in the current directory (names joined with ``-vs-``). A name
    that is not already a plain file name (a space, a slash, markup) is cleaned and given a short
    hash of itself, so that two studies never share a report file ('a b' and 'a_b')."""
    stem = "-vs-".join(_file_stem(name) for name in study_names) or "studies"
    if len(stem) > MAX_STEM:
        stem = f"{stem[:MAX_STEM - 9]}-{_short_hash(chr(10).join(study_names))}"
    return Path(f"hpstudy-report-{stem}.html")


def _file_stem(name: str) -> str:
    cleaned = re.sub(r"[^\w.-]+", "_", name).strip("._") or "study"
    return cleaned if cleaned == name else f"{cleaned}-{_short_hash(name)}"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def write_report(studies: Sequence[optuna.Study], path: Path, *, storage: str) -> Path:
    """Render the report of ``studies`` to ``path`` atomically (temp file, then rename)."""
    write_text_atomically(path, render_report(report_content(studies), storage=storage))
    return path


def render_report(content: ReportContent, *, storage: str) -> str:
    """The report page of ``content`` as one HTML string."""
    figures: list[dict[str, Any]] = []
    sections = []
    for section in content.sections:
        panels = []
        for panel in section.panels:
            index = None
            if panel.figure is not None:
                index = len(figures)
                figures.append(_figure_spec(panel.figure))
            panels.append(
                {"study": panel.study, "index": index, "note": panel.note, "detail": panel.detail, "findings": panel.findings}
            )
        sections.append(
            {"key": section.key, "title": section.title, "guide": section.guide, "wide": section.wide, "panels": panels}
        )
    names = [summary.name for summary in content.summaries]
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("hpstudy.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("report.html.j2").render(
        names=names,
        storage=storage,
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        versions=f"hpstudy {__version__}, Optuna {optuna.__version__}, plotly {plotly.__version__}",
        summary_rows=_summary_rows(content.summaries),
        savings=[_savings_row(s) for s in content.savings],
        advice=_advice(content),
        any_completed=any(summary.best is not None for summary in content.summaries),
        configs=[(s.name, s.config_text) for s in content.summaries if s.config_text],
        sections=sections,
        plotly_js=_inline_script(get_plotlyjs()),
        figures_json=_script_json({"template": pio.templates[TEMPLATE].to_plotly_json(), "figures": figures}),
        figures_element_id=FIGURES_ELEMENT_ID,
    )


# ---------------------------------------------------------------- figures


def _figure_spec(figure: Any) -> dict[str, Any]:
    """The figure as plain JSON data, without its template (the page sends that once)."""
    spec = json.loads(pio.to_json(figure, validate=False))
    spec.get("layout", {}).pop("template", None)
    return spec


def _script_json(value: Any) -> Markup:
    """JSON safe to place inside a script element: no character in it can end the element."""
    encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return Markup(re.sub(r"[<>&]", lambda match: _JSON_ESCAPES[match.group()], encoded))


def _inline_script(source: str) -> Markup:
    if "</script" in source.lower() or "<!--" in source:
        raise RuntimeError("plotly.js contains '</script' or '<!--' and cannot be inlined safely")
    return Markup(source)


# ---------------------------------------------------------------- tables and text


def _summary_rows(summaries: Sequence[StudySummary]) -> list[tuple[str, list[Any]]]:
    """(label, one cell per study); a cell is a string or a list of strings."""
    rows: list[tuple[str, list[Any]]] = [
        ("objective", [f"{s.direction} {s.objective}" for s in summaries]),
        ("trials", [_states_text(s) for s in summaries]),
        ("best value", [f"{number_text(s.best.value)} (trial {s.best.number})" if s.best else "none yet" for s in summaries]),
        ("best trial's validation accuracy", [_accuracy_text(s) for s in summaries]),
        ("best params", [([f"{k} = {number_text(v)}" for k, v in s.best.params.items()] or "none (nothing searched)")
                         if s.best else "none yet" for s in summaries]),
        ("wall time", [f"{duration_text(s.wall_seconds)} over {s.runs} run{'s' if s.runs != 1 else ''}"
                       if s.runs else duration_text(s.wall_seconds) for s in summaries]),
        ("time in trials", [duration_text(s.trial_seconds) + (
            f" (not counting {s.cut_by_a_crash} trial{'s' if s.cut_by_a_crash != 1 else ''} cut by a crash)"
            if s.cut_by_a_crash else "")
            for s in summaries]),
        ("device", [", ".join(s.devices) or "not recorded" for s in summaries]),
        ("sampler", [s.sampler for s in summaries]),
        ("pruner", [s.pruner for s in summaries]),
        ("search space", [[f"{k}: {v}" for k, v in s.search_space.items()] or "nothing searched" for s in summaries]),
    ]
    if any(s.infinite for s in summaries):
        rows.insert(3, ("left out of the figures", [_infinite_text(s) for s in summaries]))
    return rows


def _infinite_text(summary: StudySummary) -> str:
    if not summary.infinite:
        return "none"
    numbers = ", ".join(map(str, summary.infinite))
    return f"trial{'s' if len(summary.infinite) > 1 else ''} {numbers}: complete with an infinite value"


def _states_text(summary: StudySummary) -> str:
    parts = [f"{n} {state.lower()}" for state, n in summary.states.items() if n]
    return f"{summary.n_trials}" + (f": {', '.join(parts)}" if parts else "")


def _accuracy_text(summary: StudySummary) -> str:
    if summary.best is None or summary.best.val_accuracy is None:
        return "not recorded"
    epoch = f" at epoch {summary.best.best_epoch}" if summary.best.best_epoch else ""
    return f"{summary.best.val_accuracy:.4f}{epoch}"


def _savings_row(savings: PruningSavings) -> dict[str, Any]:
    return {
        "study": savings.study,
        "sentence": savings.note if not savings.epochs_requested else _savings_sentence(savings),
        "cells": [
            savings.trials_measured,
            savings.epochs_requested,
            savings.epochs_run,
            f"{savings.saved_by_pruning} ({savings.share_saved_by_pruning:.0%})",
            duration_text(savings.seconds_saved_by_pruning),
            savings.saved_by_early_stopping,
            duration_text(savings.seconds_saved_by_early_stopping),
            duration_text(savings.seconds_run),
        ]
        if savings.epochs_requested
        else None,
    }


def _savings_sentence(savings: PruningSavings) -> str:
    if not savings.pruned_trials:
        return (
            f"No trial was pruned: the {savings.trials_measured} trials ran {savings.epochs_run} of the "
            f"{savings.epochs_requested} epochs they asked for."
        )
    would = savings.seconds_run + savings.seconds_saved_by_pruning
    return (
        f"Pruning stopped {savings.pruned_trials} of {savings.trials_measured} trials early, skipping "
        f"{savings.saved_by_pruning} of the {savings.epochs_requested} epochs the trials asked for "
        f"({savings.share_saved_by_pruning:.0%}): about {duration_text(savings.seconds_saved_by_pruning)} of training "
        f"saved, out of {duration_text(would)} the trials would otherwise have taken."
    )


def _advice(content: ReportContent) -> list[tuple[str, str]]:
    """(study name, sentence): boundary warnings first, then what the best trial's curves say."""
    advice = [(warning.study, warning.message) for warning in content.warnings]
    advice += [(name, verdict) for name, verdict in content.verdicts]
    return advice

