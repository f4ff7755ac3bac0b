"""Records -> plotly Figures. Optuna's own plots where they already draw the thing (history, EDF,
parallel coordinates, slices, contour); hpstudy's for the rest.

Every user-controlled string placed in a figure (study, param and choice names) is HTML-escaped
first: plotly renders a few HTML tags in text (``<b>``, ``<a href>``...) and decodes entities, so
escaped text shows exactly as written and can never become markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna.visualization as optuna_plots
import plotly.colors as plotly_colors
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from hpstudy.reports.formatting import duration_text, plotly_text
from hpstudy.reports.curves import BestTrialCurves, CurveLine, LearningCurves
from hpstudy.reports.info import CategoricalValues, Importances, PlotChoice, PruningSavings, Timeline
from hpstudy.reports.study_data import StudyData

TEMPLATE = "plotly_white"
HEIGHT = 420
STATE_COLORS = {
    "COMPLETE": "#4c78a8",
    "PRUNED": "#f58518",
    "FAIL": "#e45756",
    "RUNNING": "#72b7b2",
    "WAITING": "#bab0ac",
}
BEST_COLOR = "#111111"
BAND_ALPHA = 0.16
TITLE_NAME_CHARS = 48
SAVINGS_COLORS = {"run": "#4c78a8", "pruning": "#f58518", "early": "#54a24b", "other": "#bab0ac"}


def styled(fig: go.Figure, title: str, *, height: int = HEIGHT) -> go.Figure:
    """Apply the report's look: template, title (already escaped), size and margins."""
    fig.update_layout(
        template=pio.templates[TEMPLATE],
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        height=height,
        width=None,
        autosize=True,
        margin={"l": 60, "r": 30, "t": 60, "b": 55},
        font={"family": "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif", "size": 12},
        hoverlabel={"namelength": -1},
    )
    return fig


# ---------------------------------------------------------------- several studies


def history_figure(studies: Sequence[StudyData]) -> go.Figure:
    """Objective value per trial and best so far, every study overlaid (Optuna's plot)."""
    objective = studies[0].objective
    fig = optuna_plots.plot_optimization_history(
        [data.optuna_study for data in studies], target_name=plotly_text(objective)
    )
    _escape_labels(fig)
    fig.update_yaxes(title_text=plotly_text(objective), **axis_scale(_values(studies)))
    fig.update_xaxes(title_text="trial number")
    return styled(fig, f"Optimization history: {plotly_text(objective)} per trial and best so far")


def edf_figure(studies: Sequence[StudyData]) -> go.Figure:
    """Empirical distribution of the objective values, every study overlaid (Optuna's plot)."""
    objective = studies[0].objective
    fig = optuna_plots.plot_edf([data.optuna_study for data in studies], target_name=plotly_text(objective))
    _escape_labels(fig)
    fig.update_xaxes(title_text=plotly_text(objective), **axis_scale(_values(studies)))
    fig.update_yaxes(title_text="share of completed trials at or below")
    return styled(fig, f"Empirical distribution (EDF) of {plotly_text(objective)}")


def savings_figure(savings: Sequence[PruningSavings]) -> go.Figure:
    """Epochs run and epochs saved by pruning and early stopping, one bar per study."""
    names = [plotly_text(s.study) for s in savings]
    parts = (
        ("epochs run", "run", [s.epochs_run for s in savings], [s.seconds_run for s in savings]),
        ("saved by pruning", "pruning", [s.saved_by_pruning for s in savings], [s.seconds_saved_by_pruning for s in savings]),
        (
            "saved by early stopping",
            "early",
            [s.saved_by_early_stopping for s in savings],
            [s.seconds_saved_by_early_stopping for s in savings],
        ),
        ("not run (failed or stopped)", "other", [s.not_run_other for s in savings], [math.nan for _ in savings]),
    )
    fig = go.Figure()
    for label, key, epochs, seconds in parts:
        if not any(epochs):
            continue
        fig.add_trace(
            go.Bar(
                name=label,
                y=names,
                x=epochs,
                orientation="h",
                marker_color=SAVINGS_COLORS[key],
                customdata=[[duration_text(s)] for s in seconds],
                hovertemplate=f"%{{y}}<br>{label}: %{{x}} epochs (%{{customdata[0]}})<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack", legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(title_text="epochs (sum over trials)")
    fig.update_yaxes(autorange="reversed", automargin=True)
    return styled(fig, "Epochs run against epochs requested", height=max(220, 110 + 60 * len(savings)))


# ---------------------------------------------------------------- one study


def learning_curves_figure(curves: LearningCurves) -> go.Figure:
    """Validation loss per epoch: completed, pruned and failed trials apart, the best on top."""
    fig = go.Figure()
    if curves.band is not None:
        band = curves.band
        fig.add_trace(go.Scatter(x=band.epochs, y=band.high, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"))
        fig.add_trace(
            go.Scatter(
                x=band.epochs, y=band.low, mode="lines", line={"width": 0}, fill="tonexty",
                fillcolor="rgba(120,120,120,0.18)", name="10-90% of all trials", hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(x=band.epochs, y=band.median, mode="lines", line={"color": "#666", "dash": "dot", "width": 1.5},
                       name="median of all trials", hovertemplate="epoch %{x}<br>median %{y:.4g}<extra></extra>")
        )
    styles = {
        "COMPLETE": ("completed", {"color": "rgba(76,120,168,0.55)", "width": 1.2}),
        "PRUNED": ("pruned", {"color": "rgba(245,133,24,0.6)", "width": 1, "dash": "dash"}),
        "FAIL": ("failed", {"color": "rgba(228,87,86,0.8)", "width": 1, "dash": "dot"}),
        "RUNNING": ("running", {"color": "rgba(114,183,178,0.9)", "width": 1}),
    }
    for state, (label, line) in styles.items():
        chosen = [c for c in curves.lines if c.state == state]
        if chosen:
            fig.add_trace(_joined_lines(chosen, name=f"{label} ({len(chosen)})", line=line))
    pruned_ends = [c for c in curves.lines if c.state == "PRUNED" and c.val_loss]
    if pruned_ends:
        fig.add_trace(
            go.Scatter(
                x=[len(c.val_loss) for c in pruned_ends],
                y=[_last_finite(c.val_loss) for c in pruned_ends],
                mode="markers",
                marker={"symbol": "x", "size": 6, "color": STATE_COLORS["PRUNED"]},
                name="pruned here",
                customdata=[c.number for c in pruned_ends],
                hovertemplate="trial %{customdata} pruned after epoch %{x}<extra></extra>",
            )
        )
    if curves.best is not None:
        fig.add_trace(_joined_lines([curves.best], name=f"best: trial {curves.best.number}", line={"color": BEST_COLOR, "width": 3}))
    shown = curves.lines + ((curves.best,) if curves.best else ())
    values = [v for c in shown for v in c.val_loss]
    fig.update_xaxes(title_text="epoch", **integer_ticks(max(len(c.val_loss) for c in shown)))
    fig.update_yaxes(title_text="validation loss", **axis_scale(values))
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    return styled(fig, f"Validation loss per epoch: {title_name(curves.study)}")


def best_trial_figure(best: BestTrialCurves) -> go.Figure:
    """Train against validation loss and accuracy of the best trial, its best epoch marked."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.12)
    pairs = (
        (1, best.train_loss, best.val_loss, "loss"),
        (2, best.train_accuracy, best.val_accuracy, "accuracy"),
    )
    for col, train, val, label in pairs:
        for name, series, color in (("train", train, "#4c78a8"), ("validation", val, "#e45756")):
            fig.add_trace(
                go.Scatter(
                    x=best.epochs, y=series, mode="lines+markers", marker={"size": 4}, line={"color": color},
                    name=name, legendgroup=name, showlegend=col == 1,
                    hovertemplate=f"epoch %{{x}}<br>{name} {label} %{{y:.4g}}<extra></extra>",
                ),
                row=1, col=col,
            )
        fig.update_xaxes(title_text="epoch", row=1, col=col, **integer_ticks(len(best.epochs)))
        fig.update_yaxes(title_text=label, row=1, col=col)
    if best.best_epoch is not None:
        for col in (1, 2):
            fig.add_vline(x=best.best_epoch, line={"color": "#888", "dash": "dot"}, row=1, col=col)
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    epoch = f", best epoch {best.best_epoch}" if best.best_epoch is not None else ""
    return styled(fig, f"Best trial {best.number} of {title_name(best.study)}: train vs validation{epoch}")


def importance_figure(importances: Importances) -> go.Figure:
    """Horizontal bars of parameter importance, most important on top."""
    names = list(importances.values)
    fig = go.Figure(
        go.Bar(
            x=[importances.values[n] for n in names],
            y=[plotly_text(n) for n in names],
            orientation="h",
            marker_color="#4c78a8",
            text=[f"{importances.values[n]:.2f}" for n in names],
            textposition="auto",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="importance (sums to 1)", range=[0, max(importances.values.values(), default=1) * 1.05])
    fig.update_yaxes(autorange="reversed", automargin=True)
    return styled(fig, f"Parameter importances: {title_name(importances.study)}", height=max(260, 120 + 32 * len(names)))


def parallel_figure(data: StudyData, choice: PlotChoice) -> go.Figure:
    """Every completed trial as a line across its params and value (Optuna's plot)."""
    fig = optuna_plots.plot_parallel_coordinate(
        data.optuna_study, params=list(choice.params), target_name=plotly_text(data.objective)
    )
    _escape_labels(fig)
    fig.update_layout(margin={"l": 70, "r": 70})
    return styled(fig, f"Parallel coordinates: {title_name(data.name)}", height=460)


def slice_figure(data: StudyData, choice: PlotChoice, *, columns: int = 4) -> go.Figure:
    """The objective against each param, one panel per param in a grid (Optuna's plot)."""
    fig = optuna_plots.plot_slice(data.optuna_study, params=list(choice.params), target_name=plotly_text(data.objective))
    _escape_labels(fig)
    rows = _grid(fig, len(choice.params), columns, y_title=plotly_text(data.objective))
    fig.update_yaxes(**axis_scale(_values([data])))
    for index, name in enumerate(choice.params):
        dist = data.distributions[name]
        if getattr(dist, "log", False):
            decades = math.log10(dist.high / dist.low)  # type: ignore[attr-defined]
            axis = fig.layout[f"xaxis{index + 1 if index else ''}"]
            axis.dtick, axis.tickformat = (1 if decades >= 2 else "D2"), "~g"
    return styled(fig, f"Slice plots: {plotly_text(data.objective)} against each parameter, {title_name(data.name)}", height=90 + 270 * rows)


def contour_figure(data: StudyData, choice: PlotChoice) -> go.Figure:
    """The objective over the two chosen params, interpolated (Optuna's plot)."""
    fig = optuna_plots.plot_contour(
        data.optuna_study, params=list(choice.params), target_name=plotly_text(data.objective)
    )
    _escape_labels(fig)
    first, second = (plotly_text(name) for name in choice.params)
    return styled(fig, f"Contour of {first} and {second}: {title_name(data.name)}", height=460)


def categorical_figure(values: CategoricalValues) -> go.Figure:
    """Per categorical param, a horizontal box with the points of the objective value of each
    choice, labelled with how many trials completed and were pruned with it."""
    params = values.params
    counts = [len(param.choices) for param in params]
    height = 70 + 34 * sum(counts) + 60 * len(params)
    fig = make_subplots(
        rows=len(params), cols=1, row_heights=counts, subplot_titles=[plotly_text(p.param) for p in params],
        vertical_spacing=min(0.3 / len(params), 70 / height),
    )
    found_values = []
    for row, param in enumerate(params, start=1):
        labels = [
            f"{plotly_text(choice)} ({len(found)} completed" + (f", {pruned} pruned)" if pruned else ")")
            for choice, found, pruned in zip(param.choices, param.values, param.pruned)
        ]
        for label, found, numbers in zip(labels, param.values, param.trials):
            found_values += found
            fig.add_trace(
                go.Box(
                    x=list(found),
                    y=[label] * len(found),
                    orientation="h",
                    name=label,
                    boxpoints="all",
                    jitter=0.5,
                    pointpos=0,
                    marker={"size": 6, "color": "#2f5f98", "opacity": 0.75},
                    line={"color": "#4c78a8", "width": 1.5},
                    fillcolor="rgba(76,120,168,0.15)",
                    customdata=list(numbers),
                    hovertemplate="trial %{customdata}: %{x:.4g}<extra></extra>",
                    showlegend=False,
                ),
                row=row, col=1,
            )
        unpicked = [label for label, found in zip(labels, param.values) if not found]
        if unpicked:  # a choice no completed trial used still gets its row
            fig.add_trace(
                go.Scatter(x=[None] * len(unpicked), y=unpicked, mode="markers", showlegend=False, hoverinfo="skip"),
                row=row, col=1,
            )
        fig.update_yaxes(categoryorder="array", categoryarray=labels, autorange="reversed", automargin=True, row=row, col=1)
    fig.update_xaxes(**axis_scale(found_values))
    fig.update_xaxes(title_text=plotly_text(values.objective), row=len(params), col=1)
    return styled(fig, f"{plotly_text(values.objective).capitalize()} per choice: {title_name(values.study)}", height=height)


def timeline_figure(line: Timeline) -> go.Figure:
    """One horizontal bar per trial from its start to its end (or, for many trials, a dot at its
    end), coloured by state."""
    fig = go.Figure()
    by_count = sorted(set(line.states), key=lambda state: -line.states.count(state))  # the rarest on top
    for state in by_count:
        picked = [i for i, s in enumerate(line.states) if s == state]
        common = {
            "name": f"{state.lower()} ({len(picked)})",
            "y": [line.numbers[i] for i in picked],
            "marker_color": STATE_COLORS.get(state, "#999"),
            "customdata": [round(line.seconds[i], 2) for i in picked],
            "hovertemplate": "trial %{y}: %{customdata} s<extra></extra>",
        }
        if line.points:
            fig.add_trace(go.Scatter(x=[line.ends[i] for i in picked], mode="markers", marker_size=4, **common))
        else:
            fig.add_trace(
                go.Bar(
                    orientation="h",
                    base=[line.starts[i] for i in picked],
                    x=[round(line.seconds[i] * 1000) for i in picked],
                    **common,
                )
            )
    fig.update_xaxes(type="date", title_text="time")
    fig.update_yaxes(title_text="trial number", autorange="reversed", **integer_ticks(len(line.numbers)))
    fig.update_layout(bargap=0.15, legend={"orientation": "h", "y": -0.2})
    return styled(fig, f"Timeline of trials: {title_name(line.study)}")


# ---------------------------------------------------------------- helpers


def band_traces(
    x: Sequence[float], low: Sequence[float], high: Sequence[float], *, color: str, group: str, shape: str = "linear"
) -> list[go.Scatter]:
    """A band from ``low`` to ``high`` in ``color``: an invisible upper edge, then a lower edge filled
    up to it (``shape`` "hv" for step functions). Hidden from legend and hover."""
    common = {"x": list(x), "mode": "lines", "line": {"width": 0, "shape": shape}, "legendgroup": group,
              "showlegend": False, "hoverinfo": "skip"}
    return [
        go.Scatter(y=rounded(high), **common),
        go.Scatter(y=rounded(low), fill="tonexty", fillcolor=with_alpha(color, BAND_ALPHA), **common),
    ]


def with_alpha(color: str, alpha: float) -> str:
    """A plotly colour (``#rrggbb`` or ``rgb(r, g, b)``) as ``rgba`` with opacity ``alpha``."""
    red, green, blue = (
        plotly_colors.hex_to_rgb(color) if color.startswith("#") else plotly_colors.unlabel_rgb(color)
    )
    return f"rgba({int(red)},{int(green)},{int(blue)},{alpha})"


def rounded(values: Sequence[float]) -> list[float | None]:
    """Values to 6 decimals for a figure's JSON; None (a gap) where not finite."""
    return [round(v, 6) if math.isfinite(v) else None for v in values]


def title_name(name: str) -> str:
    """A study name for a figure title: escaped, and cut to ``TITLE_NAME_CHARS`` (the page shows
    the whole name above the figure)."""
    return plotly_text(name if len(name) <= TITLE_NAME_CHARS else name[: TITLE_NAME_CHARS - 1] + "…")


def integer_ticks(count: int) -> dict[str, Any]:
    """A tick at every integer on an axis of at most 12 integers (no 1.5 epochs), else plotly's own."""
    return {"dtick": 1} if count <= 12 else {}


def _joined_lines(lines: Sequence[CurveLine], *, name: str, line: dict[str, Any]) -> go.Scatter:
    """Many curves as one trace (NaN breaks between them): fast to draw, light to store."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    numbers: list[int | None] = []
    for curve in lines:
        xs += [*range(1, len(curve.val_loss) + 1), None]
        ys += [*(None if math.isnan(v) else round(v, 6) for v in curve.val_loss), None]
        numbers += [curve.number] * len(curve.val_loss) + [None]
    return go.Scatter(
        x=xs, y=ys, mode="lines", line=line, name=name, customdata=numbers, connectgaps=False,
        hovertemplate="trial %{customdata}<br>epoch %{x}<br>val loss %{y:.4g}<extra></extra>",
    )


def _last_finite(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return finite[-1] if finite else None


def _values(studies: Sequence[StudyData]) -> list[float]:
    return [float(v) for data in studies for v in data.complete["value"]]


def axis_scale(values: Sequence[float]) -> dict[str, Any]:
    """A log axis (ticks at 1, 2 and 5 of each decade) when every value is positive and they span
    more than a factor of 20, else a linear one."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        return {"type": "log", "dtick": "D2", "tickformat": "~g"}
    return {"type": "linear"}


def _grid(fig: go.Figure, count: int, columns: int, *, y_title: str) -> int:
    """Lay the ``count`` one-row subplots of an Optuna figure out in rows of ``columns``, with
    ``y_title`` on the first of each row; returns the number of rows."""
    if count == 1:
        fig.update_yaxes(title_text=y_title)
        return 1
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    xgap, ygap = 0.06 / columns + 0.02, 0.12 / rows + 0.03
    for index in range(count):
        row, col = divmod(index, columns)
        suffix = "" if index == 0 else str(index + 1)
        fig.layout[f"xaxis{suffix}"].domain = [col / columns + xgap / 2, (col + 1) / columns - xgap / 2]
        fig.layout[f"yaxis{suffix}"].domain = [1 - (row + 1) / rows + ygap / 2, 1 - row / rows - ygap / 2]
        fig.layout[f"yaxis{suffix}"].showticklabels = col == 0
        fig.layout[f"yaxis{suffix}"].title.text = y_title if col == 0 else None
    return rows


def _escape_labels(fig: go.Figure) -> None:
    """Escape every piece of user text in an Optuna figure, which carries study and param names and
    categorical choices verbatim: trace names, category values (and the axes' category order, so
    they still match), hover data, tick labels, annotations, axis titles and parallel-coordinate
    labels."""
    for trace in fig.data:
        if getattr(trace, "name", None):
            trace.name = plotly_text(trace.name)
        for attribute in ("x", "y", "customdata"):
            values = getattr(trace, attribute, None)
            if values is not None and not hasattr(values, "dtype"):  # numeric arrays hold no text
                setattr(trace, attribute, _escaped(values))
        for dimension in getattr(trace, "dimensions", None) or ():
            dimension.label = plotly_text(dimension.label) if dimension.label else dimension.label
            if dimension.ticktext is not None:
                dimension.ticktext = [plotly_text(t) for t in dimension.ticktext]
    for axis in (*fig.select_xaxes(), *fig.select_yaxes()):
        if axis.title.text:
            axis.title.text = plotly_text(axis.title.text)
        if axis.ticktext is not None:
            axis.ticktext = _escaped(axis.ticktext)
        if axis.categoryarray is not None:
            axis.categoryarray = _escaped(axis.categoryarray)
    for annotation in fig.layout.annotations:
        if annotation.text:
            annotation.text = plotly_text(annotation.text)


def _escaped(value: Any) -> Any:
    """``value`` with every string in it (nested in lists and tuples too) made plotly text."""
    if isinstance(value, str):
        return plotly_text(value)
    if isinstance(value, (list, tuple)):
        return [_escaped(item) for item in value]
    return value