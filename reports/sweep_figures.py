"""Sweep records -> plotly Figures: the learning curves per swept value (mean over repeats with a
min-max band), and the final validation loss and accuracy against the swept value with min-max
error bars, diverged and chance-level points marked. Every user string is escaped (``plotly_text``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.colors as plotly_colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hpstudy.reports.figures import axis_scale, band_traces, integer_ticks, rounded, styled, title_name
from hpstudy.reports.formatting import choice_text, plotly_text
from hpstudy.reports.sweeps import CURVE_NAMES, Moment, Sweep, SweepPoint

CURVE_TITLES = {
    "train_loss": "training loss",
    "val_loss": "validation loss",
    "train_accuracy": "training accuracy",
    "val_accuracy": "validation accuracy",
}
DIVERGED_COLOR = "#d62728"
#: Where a diverged point is marked on the accuracy panel (near its top).
DIVERGED_ACCURACY_MARK = 0.97
CHANCE_COLOR = "#e8871e"
SINGLE_SERIES_COLOR = "#2f5f98"
ROW_HEIGHT = 290
#: Sideways step between the markers of one categorical value (series and moments), and the most
#: they spread in all (in category widths).
CATEGORY_STEP = 0.08
CATEGORY_SPREAD = 0.4
#: Room left of the smallest and right of the largest swept value, as a share of their span.
AXIS_PAD = 0.06
MOMENTS: tuple[tuple[Moment, str, str, str], ...] = (
    ("best", "at the best epoch", "solid", "circle"),
    ("last", "at the last epoch", "dot", "diamond-open"),
)


def sweep_curves_figure(sweep: Sweep) -> go.Figure:
    """Per swept value, the mean training and validation loss and accuracy per epoch over its
    repeats with a min-max band; a row per value of the series param; diverged repeats end in an x."""
    rows = len(sweep.series_values)
    fig = make_subplots(
        rows=rows,
        cols=len(CURVE_NAMES),
        column_titles=[CURVE_TITLES[name] for name in CURVE_NAMES],
        row_titles=[plotly_text(sweep.series_label(s)) for s in sweep.series_values] if sweep.series_param else None,
        horizontal_spacing=0.05,
        vertical_spacing=min(0.12, 0.3 / rows),
    )
    colors = value_colors(sweep)
    legend: set[str] = set()
    loss_values: list[float] = []
    longest = 1
    for row, series in enumerate(sweep.series_values, start=1):
        by_length = sorted(sweep.in_series(series), key=lambda p: -len(p.curves["val_loss"].x))
        for point in by_length:  # the longest first, so shorter curves stay on top
            name = plotly_text(f"{sweep.param} = {choice_text(point.x)}")
            color = colors[sweep.position(point)]
            for col, curve_name in enumerate(CURVE_NAMES, start=1):
                curve = point.curves[curve_name]
                if not curve.x:
                    continue
                longest = max(longest, curve.x[-1])
                if curve_name.endswith("loss"):
                    loss_values += [*curve.low, *curve.high]
                for trace in band_traces(curve.x, curve.low, curve.high, color=color, group=name):
                    fig.add_trace(trace, row=row, col=col)
                fig.add_trace(
                    go.Scatter(
                        x=curve.x, y=rounded(curve.mean), mode="lines+markers", line={"color": color, "width": 2},
                        marker={"size": [0] * (len(curve.x) - 1) + [7], "color": color},  # a dot where it ends
                        name=name, legendgroup=name, showlegend=name not in legend, legendrank=sweep.position(point),
                        customdata=[[n, lo, hi] for n, lo, hi in zip(curve.counts, rounded(curve.low), rounded(curve.high))],
                        hovertemplate=(
                            f"{plotly_text(sweep.label(point))}<br>epoch %{{x}}<br>{CURVE_TITLES[curve_name]} %{{y:.4g}} "
                            "(mean of %{customdata[0]}; min %{customdata[1]:.4g}, max %{customdata[2]:.4g})<extra></extra>"
                        ),
                    ),
                    row=row, col=col,
                )
                legend.add(name)
            for col, curve_name in ((1, "train_loss"), (2, "val_loss")):
                marker = _diverged_marker(sweep, point, curve_name, show=("diverged" not in legend))
                if marker is not None:
                    fig.add_trace(marker, row=row, col=col)
                    legend.add("diverged")
                    loss_values += [v for v in marker.y if v is not None]
        for col in (3, 4):
            if sweep.chance_accuracy is not None:
                fig.add_hline(y=sweep.chance_accuracy, line={"color": CHANCE_COLOR, "dash": "dash", "width": 1}, row=row, col=col)
    loss_axis = axis_scale(loss_values)
    for row in range(1, rows + 1):
        for col, curve_name in enumerate(CURVE_NAMES, start=1):
            fig.update_xaxes(title_text="epoch" if row == rows else None, row=row, col=col, **integer_ticks(longest))
            if curve_name.endswith("loss"):
                fig.update_yaxes(row=row, col=col, **loss_axis)
            else:
                fig.update_yaxes(range=[0, 1.02], row=row, col=col)
    fig.update_layout(legend={"orientation": "h", "y": -0.12 - 0.1 / rows, "x": 0}, showlegend=True)
    title = f"Learning curves per {plotly_text(sweep.param)}: mean over repeats, band = min to max; {title_name(sweep.study)}"
    return styled(fig, title, height=130 + ROW_HEIGHT * rows)


def sweep_finals_figure(sweep: Sweep) -> go.Figure:
    """Validation loss and accuracy at the best and the last epoch against the swept value: mean
    over the completed repeats, error bars from min to max; diverged points as a red x at the top of
    the loss panel, chance-level ones circled, chance accuracy as a dashed line."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation loss", "validation accuracy"), horizontal_spacing=0.09)
    series_colors = _series_colors(sweep)
    loss_values: list[float] = []
    for index, series in enumerate(sweep.series_values):
        points = sweep.in_series(series)
        prefix = f"{sweep.series_label(series)}: " if sweep.series_param else ""
        for moment_index, (moment, words, dash, symbol) in enumerate(MOMENTS):
            offset = _offset(sweep, index, moment_index)
            for col, curve_name in ((1, "val_loss"), (2, "val_accuracy")):
                chosen = [p for p in points if p.final(curve_name, moment).count]
                if not chosen:
                    continue
                spreads = [p.final(curve_name, moment) for p in chosen]
                if col == 1:
                    loss_values += [v for s in spreads for v in (s.low, s.high)]
                name = plotly_text(f"{prefix}{words}")
                fig.add_trace(
                    go.Scatter(
                        x=[x_position(sweep, p) + offset for p in chosen],
                        y=[s.mean for s in spreads],
                        error_y={
                            "type": "data", "symmetric": False, "thickness": 1.2, "width": 4,
                            "array": [s.high - s.mean for s in spreads],
                            "arrayminus": [s.mean - s.low for s in spreads],
                        },
                        mode="markers" if sweep.categorical else "lines+markers",
                        line={"color": series_colors[index], "dash": dash, "width": 1.8},
                        marker={"symbol": symbol, "size": 8, "color": series_colors[index]},
                        name=name, legendgroup=name, showlegend=col == 1,
                        customdata=[[_point_text(sweep, p), s.count, s.low, s.high] for p, s in zip(chosen, spreads)],
                        hovertemplate=(
                            f"%{{customdata[0]}}<br>{CURVE_TITLES[curve_name]} {words}: %{{y:.4g}} (mean of "
                            "%{customdata[1]}; min %{customdata[2]:.4g}, max %{customdata[3]:.4g})<extra></extra>"
                        ),
                    ),
                    row=1, col=col,
                )
    loss_axis = axis_scale(loss_values)
    _add_problem_markers(fig, sweep, loss_values, log=loss_axis.get("type") == "log")
    if sweep.chance_accuracy is not None:
        fig.add_hline(
            y=sweep.chance_accuracy, line={"color": CHANCE_COLOR, "dash": "dash", "width": 1}, row=1, col=2,
            annotation_text=f"chance {sweep.chance_accuracy:.2f}", annotation_position="bottom right",
            annotation_font={"color": CHANCE_COLOR, "size": 11},
        )
    fig.update_yaxes(row=1, col=1, title_text="validation loss", showticklabels=bool(loss_values), **loss_axis)
    fig.update_yaxes(row=1, col=2, title_text="validation accuracy", range=[0, 1.05])
    fig.update_xaxes(title_text=plotly_text(sweep.param), **x_axis(sweep))
    fig.update_layout(legend={"orientation": "h", "y": -0.25, "x": 0})
    title = (
        f"Final validation loss and accuracy against {plotly_text(sweep.param)}: mean over repeats, bars = min to max; "
        f"{title_name(sweep.study)}"
    )
    return styled(fig, title, height=460)


# ---------------------------------------------------------------- axes and colours


def x_position(sweep: Sweep, point: SweepPoint) -> float:
    """Where ``point`` sits on the x axis: its value, or its index for a categorical axis."""
    return float(sweep.position(point)) if sweep.categorical else float(point.x)


def x_axis(sweep: Sweep) -> dict[str, Any]:
    """The x axis of the swept param: every swept value a tick; log for wide positive ranges."""
    if sweep.categorical:
        return {
            "type": "linear",
            "tickvals": list(range(len(sweep.x_values))),
            "ticktext": [plotly_text(choice_text(v)) for v in sweep.x_values],
            "range": [-0.5, len(sweep.x_values) - 0.5],
        }
    values = [float(v) for v in sweep.x_values]
    ticks = {"tickvals": values, "ticktext": [choice_text(v) for v in sweep.x_values]}
    if sweep.log:
        low, high = math.log10(min(values)), math.log10(max(values))
        pad = AXIS_PAD * (high - low) or 0.5
        return {"type": "log", "range": [low - pad, high + pad], **ticks}
    pad = AXIS_PAD * (max(values) - min(values)) or 0.5
    return {"type": "linear", "range": [min(values) - pad, max(values) + pad], **ticks}


def value_colors(sweep: Sweep) -> list[str]:
    """A colour per swept value: a sequential scale for numbers (low to high), distinct hues otherwise."""
    return _colors(len(sweep.x_values), sequential=not sweep.categorical)


def _series_colors(sweep: Sweep) -> list[str]:
    if sweep.series_param is None:
        return [SINGLE_SERIES_COLOR]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sweep.series_values)
    return _colors(len(sweep.series_values), sequential=numeric)


def _colors(count: int, *, sequential: bool) -> list[str]:
    if sequential and count > 1:
        return plotly_colors.sample_colorscale("Viridis", [0.8 * i / (count - 1) for i in range(count)])
    palette = plotly_colors.qualitative.D3
    return [palette[i % len(palette)] for i in range(count)]


def _offset(sweep: Sweep, series_index: int, moment_index: int) -> float:
    """Sideways shift of a categorical marker so series and moments do not hide each other."""
    if not sweep.categorical:
        return 0.0
    slots = len(sweep.series_values) * len(MOMENTS)
    step = min(CATEGORY_STEP, CATEGORY_SPREAD / (slots - 1))
    return step * (series_index * len(MOMENTS) + moment_index - (slots - 1) / 2)


# ---------------------------------------------------------------- traces


def _diverged_marker(sweep: Sweep, point: SweepPoint, curve_name: str, *, show: bool) -> go.Scatter | None:
    """A red x where each diverged repeat's curve was last finite; None when none has a finite value."""
    ends = []
    for repeat in point.diverged:
        finite = [(epoch, v) for epoch, v in enumerate(repeat.curves[curve_name], start=1) if math.isfinite(v)]
        if finite:
            ends.append((repeat.number, repeat.diverged_at, *finite[-1]))
    if not ends:
        return None
    return go.Scatter(
        x=[epoch for _, _, epoch, _ in ends],
        y=[round(v, 6) for *_, v in ends],
        mode="markers",
        marker={"symbol": "x", "size": 9, "color": DIVERGED_COLOR},
        name="diverged (last finite value)", legendgroup="diverged", showlegend=show,
        customdata=[[number, at] for number, at, _, _ in ends],
        hovertemplate=(
            f"{plotly_text(sweep.label(point))}<br>trial %{{customdata[0]}} diverged at epoch %{{customdata[1]}}"
            "<extra></extra>"
        ),
    )


def _add_problem_markers(fig: go.Figure, sweep: Sweep, loss_values: Sequence[float], *, log: bool) -> None:
    """Diverged points as a red x above the loss panel's values, labelled "k/n diverged"; points with
    repeats at chance circled on the accuracy panel, labelled "k/n at chance"."""
    finite = [v for v in loss_values if math.isfinite(v) and v > 0]
    top = max(finite) * (1.6 if log else 1.08) if finite else 1.0
    diverged = [p for p in sweep.points if p.diverged]
    for col, y in ((1, top), (2, DIVERGED_ACCURACY_MARK)) if diverged else ():
        fig.add_trace(
            go.Scatter(
                x=[x_position(sweep, p) for p in diverged], y=[y] * len(diverged), mode="markers+text",
                marker={"symbol": "x", "size": 12, "color": DIVERGED_COLOR}, cliponaxis=False,
                text=[f"{len(p.diverged)}/{len(p.repeats)} diverged" for p in diverged], textposition="top center",
                textfont={"color": DIVERGED_COLOR, "size": 11}, name="diverged repeats", legendgroup="diverged",
                showlegend=col == 1, customdata=[_point_text(sweep, p) for p in diverged],
                hovertemplate="%{customdata}<br>%{text}: the loss became NaN or infinite<extra></extra>",
            ),
            row=1, col=col,
        )
    at_chance = [p for p in sweep.points if p.at_chance]
    if at_chance:
        series_index = {id(p): index for index, s in enumerate(sweep.series_values) for p in sweep.in_series(s)}
        fig.add_trace(
            go.Scatter(
                x=[x_position(sweep, p) for p in at_chance],
                y=[max(r.peak_val_accuracy for r in p.at_chance) for p in at_chance],
                mode="markers+text",
                marker={"symbol": "circle-open", "size": 18, "color": CHANCE_COLOR, "line": {"width": 2}},
                text=[f"{len(p.at_chance)}/{len(p.repeats)} at chance" for p in at_chance],
                textposition=["top center" if series_index[id(p)] % 2 == 0 else "bottom center" for p in at_chance],
                textfont={"color": CHANCE_COLOR, "size": 11}, name="repeats at chance accuracy", cliponaxis=False,
                customdata=[_point_text(sweep, p) for p in at_chance],
                hovertemplate="%{customdata}<br>%{text}: validation accuracy never rose above %{y:.3f}<extra></extra>",
            ),
            row=1, col=2,
        )


def _point_text(sweep: Sweep, point: SweepPoint) -> str:
    """The point's label for a hover, with what a variant stands for."""
    bundles = [text for value in (point.x, point.series) if (text := sweep.bundle_text(value))]
    return plotly_text(sweep.label(point) + (f" ({'; '.join(bundles)})" if bundles else ""))
