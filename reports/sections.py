"""What the report shows, in order: the summary records and the figure sections, each figure with
its explanation, or a sentence saying why it is missing. ``figures_for`` gives notebook users the
same figures the HTML report embeds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import optuna
import plotly.graph_objects as go

from hpstudy.reports import curves, figures, info, strategies
from hpstudy.reports.boundaries import BoundaryWarning, boundary_warnings
from hpstudy.reports.strategy_figures import strategy_figure
from hpstudy.reports.study_data import StudyData, load_study_data
from hpstudy.reports.sweep_figures import sweep_curves_figure, sweep_finals_figure
from hpstudy.reports.sweep_findings import sweep_findings
from hpstudy.reports.sweeps import Sweep, sweep_view

FAILED_TO_DRAW = "This figure could not be drawn"


@dataclass(frozen=True)
class Panel:
    """One figure of a section (for one study, or for all of them overlaid), or the sentence
    that says why there is none. ``detail`` is read under the figure, then ``findings`` (one
    sentence each, computed from the trials)."""

    key: str
    study: str | None
    figure: go.Figure | None
    note: str | None = None
    detail: str | None = None
    findings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    """A heading, a short guide to reading its figures, and the figures: one overlaid panel, or
    one panel per study, side by side (or one under another when ``wide``)."""

    key: str
    title: str
    guide: str
    panels: tuple[Panel, ...]
    overlaid: bool = False
    wide: bool = False


@dataclass(frozen=True)
class ReportContent:
    """Everything the report shows, ready to render."""

    summaries: tuple[info.StudySummary, ...]
    savings: tuple[info.PruningSavings, ...]
    warnings: tuple[BoundaryWarning, ...]
    verdicts: tuple[tuple[str, str], ...]
    sections: tuple[Section, ...]


def report_content(studies: Sequence[optuna.Study]) -> ReportContent:
    """Read ``studies`` once and compute every record and figure of their report."""
    loaded = [load_study_data(optuna_study) for optuna_study in studies]
    savings = tuple(info.pruning_savings(data) for data in loaded)
    best_curves = {data.name: curves.best_trial_curves(data) for data in loaded}
    importances = {data.name: info.importances(data) for data in loaded}
    sweeps = {data.name: sweep_view(data) for data in loaded}
    sections = (
        *_strategy_sections(loaded),
        *_sweep_sections(loaded, sweeps),
        _overlaid(
            "history",
            "Optimization history",
            "Each dot is one completed trial; the line is the best value found so far. Overlaid, the studies "
            "show which one finds good values sooner.",
            loaded,
            figures.history_figure,
        ),
        _overlaid(
            "edf",
            "Distribution of values (EDF)",
            "For each value on the x axis, the share of a study's completed trials that reached that value or "
            "less. For a loss, a curve that rises earlier means more good trials, not just one lucky best.",
            loaded,
            figures.edf_figure,
        ),
        _savings_section(savings),
        _per_study(
            "curves",
            "Learning curves",
            "Validation loss after every epoch of every trial: completed trials in blue, pruned ones dashed "
            "orange ending in an x where the pruner stopped them, failed ones dotted red; the best trial is "
            "the thick black line.",
            loaded,
            _learning_curves_panel,
        ),
        _per_study(
            "best",
            "Best trial: training against validation",
            "Loss and accuracy on the training and validation data for the best trial; the dotted line marks "
            "its best epoch. Validation loss rising while training loss falls is overfitting; both still "
            "falling at the end is undertraining.",
            loaded,
            lambda data: _best_trial_panel(data, best_curves[data.name]),
        ),
        _per_study(
            "importances",
            "Parameter importances",
            f"How much each parameter decides the value, by {info.IMPORTANCE_EVALUATOR}: it compares where the "
            "best 10% of completed trials lie with where all of them lie. Importances of one study sum to 1.",
            loaded,
            lambda data: _importance_panel(importances[data.name]),
        ),
        _per_study(
            "parallel",
            "Parallel coordinates",
            "Each line is a completed trial, crossing every parameter axis at its value and ending at its "
            "objective value (colour). Drag along an axis to select a range.",
            loaded,
            lambda data: _optuna_panel(data, info.plot_choice(data), lambda c: figures.parallel_figure(data, c)),
            wide=True,
        ),
        _per_study(
            "slices",
            "Slice plots",
            "The objective value of each completed trial against one parameter at a time; colour is the trial "
            "number, so a drift of late (dark) trials shows where the sampler converged.",
            loaded,
            lambda data: _optuna_panel(data, info.plot_choice(data), lambda c: figures.slice_figure(data, c)),
            wide=True,
        ),
        _per_study(
            "contour",
            "Contour of the two most important parameters",
            "The objective value interpolated over the two most important parameters; dots are trials.",
            loaded,
            lambda data: _optuna_panel(
                data, info.contour_choice(data, importances[data.name]), lambda c: figures.contour_figure(data, c)
            ),
        ),
        _per_study(
            "choices",
            "Categorical parameters",
            "The objective value of completed trials for each choice of a categorical parameter (initializer, "
            "optimizer, activation...), with how many trials picked it and how many of those were pruned.",
            loaded,
            lambda data: _categorical_panel(info.categorical_values(data)),
        ),
        _per_study(
            "timeline",
            "Timeline",
            "When each trial ran and how it ended; gaps are time between runs.",
            loaded,
            lambda data: _timeline_panel(info.timeline(data)),
        ),
    )
    return ReportContent(
        summaries=tuple(info.summarize(data) for data in loaded),
        savings=savings,
        warnings=tuple(warning for data in loaded for warning in boundary_warnings(data)),
        verdicts=tuple((name, c.verdict) for name, c in best_curves.items() if c is not None),
        sections=sections,
    )


def figures_for(studies: Sequence[optuna.Study]) -> dict[str, go.Figure]:
    """The report's figures by key: ``"history"`` for overlaid ones, ``"curves[NAME]"`` for one
    study's. Figures that cannot be drawn (an empty study, say) are left out."""
    content = report_content(studies)
    return {panel.key: panel.figure for section in content.sections for panel in section.panels if panel.figure}


# ---------------------------------------------------------------- sections


def _overlaid(
    key: str, title: str, guide: str, loaded: Sequence[StudyData], draw: Callable[[list[StudyData]], go.Figure]
) -> Section:
    shown, note = info.comparable(loaded)
    panel = _drawn(key, None, lambda: draw(shown), note=note) if shown else Panel(key, None, None, note)
    return Section(key, title, guide, (panel,), overlaid=True, wide=True)


def _per_study(
    key: str,
    title: str,
    guide: str,
    loaded: Sequence[StudyData],
    panel_of: Callable[[StudyData], Panel],
    *,
    wide: bool = False,
) -> Section:
    panels = tuple(replace(panel_of(data), key=f"{key}[{data.name}]", study=data.name) for data in loaded)
    return Section(key, title, guide, panels, wide=wide)


def _strategy_sections(loaded: Sequence[StudyData]) -> tuple[Section, ...]:
    """The strategy comparison: a panel per search space that several samplers searched; a note
    when studies of different samplers differ in more than that; nothing for a single study."""
    if len(loaded) < 2:
        return ()
    comparisons = strategies.strategy_comparisons(loaded)
    panels = []
    for index, comparison in enumerate(comparisons, start=1):
        key = "strategies" if len(comparisons) == 1 else f"strategies[{index}]"
        heading = f"same space: {', '.join(comparison.studies)}" if len(comparisons) > 1 else None
        note = None if comparison.repeated else (
            "One study per sampler, so no band: run each sampler with more seeds (`hpstudy compare --repeats 3`, or "
            "other study.seed values) to see how much its result varies."
        )
        findings = strategies.strategy_findings(comparison)
        if not any(group.final.values for group in comparison.groups):
            panels.append(Panel(key, heading, None, "No trial of these studies completed, so there is no best value "
                                                    "to compare yet.", findings=findings))
            continue
        panels.append(
            _drawn(key, heading, lambda shown=comparison: strategy_figure(shown), note=note, findings=findings)
        )
    if not panels:
        note = strategies.why_no_strategy_comparison(loaded)
        if note is None:
            return ()
        panels.append(Panel("strategies", None, None, note))
    return (
        Section(
            "strategies",
            "Search strategies",
            "Studies of one search space that differ only in their sampler, grouped by sampler: the best value "
            "found so far against the trials finished and against wall time. The line is the mean over a "
            "sampler's studies (repeats with other seeds), the band their min to max. A line that drops "
            "sooner finds good values with fewer trials.",
            tuple(panels),
            overlaid=True,
            wide=True,
        ),
    )


def _sweep_sections(loaded: Sequence[StudyData], sweeps: dict[str, Sweep]) -> tuple[Section, ...]:
    """The sweep view, when some study varies one or two params besides the repeat index seed:
    the final values against the swept value with the findings, then the learning curves per value."""
    if all(sweep.note for sweep in sweeps.values()):
        return ()
    return (
        _per_study(
            "sweep",
            "Sweep: final values",
            "Validation loss and accuracy at the best epoch (solid) and the last epoch (dotted) for each value of "
            "the swept parameter: the mean over its repeats, error bars from the lowest to the highest repeat. A "
            "red x marks values where repeats diverged (loss NaN or infinite), a circle values where repeats "
            "stayed at chance accuracy (the dashed line). The findings below are computed from the trials.",
            loaded,
            lambda data: _sweep_finals_panel(sweeps[data.name]),
            wide=True,
        ),
        _per_study(
            "sweep_curves",
            "Sweep: learning curves",
            "Training and validation loss and accuracy after every epoch, one colour per value of the swept "
            "parameter: the line is the mean over its repeats, the shaded band runs from the lowest to the highest "
            "repeat. Repeats that diverged are left out of the mean and end in a red x at their last finite value; "
            "the dashed orange line in the accuracy panels is chance accuracy.",
            loaded,
            lambda data: _sweep_curves_panel(sweeps[data.name]),
            wide=True,
        ),
    )


def _savings_section(savings: Sequence[info.PruningSavings]) -> Section:
    measured = [s for s in savings if s.epochs_requested]
    panel = (
        _drawn("savings", None, lambda: figures.savings_figure(measured))
        if measured
        else Panel("savings", None, None, "No study recorded epoch counts, so there is no saving to show.")
    )
    return Section(
        "savings",
        "Compute saved by pruning",
        "Epochs the trials asked for, split into those they ran and those pruning (or early stopping) "
        "skipped. Seconds saved are each trial's unrun epochs times its own measured epoch time.",
        (panel,),
        overlaid=True,
        wide=True,
    )


# ---------------------------------------------------------------- panels


def _drawn(
    key: str,
    study: str | None,
    draw: Callable[[], go.Figure],
    *,
    note: str | None = None,
    detail: str | None = None,
    findings: tuple[str, ...] = (),
) -> Panel:
    """The panel of ``draw()``; if drawing fails, a panel that says so (the rest of the report
    still renders, findings included)."""
    try:
        return Panel(key, study, draw(), note, detail, findings)
    except Exception as exc:  # an unforeseen shape of data must not cost the whole report
        return Panel(key, study, None, f"{FAILED_TO_DRAW} ({type(exc).__name__}: {exc}).", findings=findings)


def _learning_curves_panel(data: StudyData) -> Panel:
    record = curves.learning_curves(data)
    if not record.lines and record.best is None:
        return Panel("", data.name, None, record.note)
    return _drawn("", data.name, lambda: figures.learning_curves_figure(record), note=record.note)


def _best_trial_panel(data: StudyData, record: curves.BestTrialCurves | None) -> Panel:
    if record is None:
        reason = info.why_no_values(data) or "The best trial recorded no learning curve (it was not run by hpstudy)."
        return Panel("", data.name, None, reason)
    return _drawn("", data.name, lambda: figures.best_trial_figure(record), detail=record.verdict)


def _importance_panel(record: info.Importances) -> Panel:
    if record.note:
        return Panel("", record.study, None, record.note)
    return _drawn("", record.study, lambda: figures.importance_figure(record))


def _optuna_panel(data: StudyData, choice: info.PlotChoice, draw: Callable[[info.PlotChoice], go.Figure]) -> Panel:
    if not choice.params:
        return Panel("", data.name, None, choice.note)
    return _drawn("", data.name, lambda: draw(choice), note=choice.note)


def _categorical_panel(record: info.CategoricalValues) -> Panel:
    if not record.params or record.note:
        return Panel("", record.study, None, record.note)
    return _drawn("", record.study, lambda: figures.categorical_figure(record))


def _timeline_panel(record: info.Timeline) -> Panel:
    if not record.numbers:
        return Panel("", record.study, None, record.note)
    return _drawn("", record.study, lambda: figures.timeline_figure(record), note=record.note)


def _sweep_finals_panel(sweep: Sweep) -> Panel:
    if sweep.note:
        return Panel("", sweep.study, None, sweep.note)
    return _drawn("", sweep.study, lambda: sweep_finals_figure(sweep), note=_variants_note(sweep),
                  findings=sweep_findings(sweep))


def _sweep_curves_panel(sweep: Sweep) -> Panel:
    if sweep.note:
        return Panel("", sweep.study, None, sweep.note)
    if not sweep.has_curves:
        return Panel("", sweep.study, None, "No repeat recorded a finite loss, so there is no curve to draw.")
    missing = [sweep.label(p) for p in sweep.points if not p.curves["val_loss"].x]
    detail = f"No curve for {', '.join(missing)}: every repeat diverged." if missing else None
    return _drawn("", sweep.study, lambda: sweep_curves_figure(sweep), detail=detail)


def _variants_note(sweep: Sweep) -> str | None:
    """What each variant on the page stands for, or None when the sweep shows no variant."""
    shown = [value for value in (*sweep.x_values, *sweep.series_values) if sweep.bundle_text(value)]
    if not shown:
        return None
    return "Variants: " + "; ".join(f"{name}: {sweep.bundle_text(name)}" for name in shown) + "."
