"""A strategy comparison -> a plotly Figure: each sampler's best value so far against the trials
finished and against wall time, the mean over its studies with a min-max band, a colour per sampler."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hpstudy.reports.figures import axis_scale, band_traces, rounded, styled
from hpstudy.reports.formatting import plotly_text
from hpstudy.reports.bands import Band
from hpstudy.reports.strategies import StrategyComparison, StrategyGroup

SAMPLER_COLORS = {"grid": "#2ca02c", "random": "#1f77b4", "tpe": "#d62728", "cmaes": "#9467bd", "qmc": "#8c564b"}
OTHER_SAMPLER_COLOR = "#7f7f7f"
#: Line dashes in group order, so samplers that end level stay apart.
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def strategy_figure(comparison: StrategyComparison) -> go.Figure:
    """Best value so far against trials finished (left) and seconds since each study's first trial
    started (right): per sampler the mean over its studies as a step line over a min-max band."""
    objective = plotly_text(comparison.objective)
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.08,
        subplot_titles=(f"best {objective} so far against trials finished", f"best {objective} so far against wall time"),
    )
    values: list[float] = []
    for index, group in enumerate(comparison.groups):
        color = SAMPLER_COLORS.get(group.sampler, OTHER_SAMPLER_COLOR)
        line = {"color": color, "width": 2.2, "shape": "hv", "dash": DASHES[index % len(DASHES)]}
        name = _legend_name(group)
        for col, band, unit in ((1, group.by_trial, "trial %{x}"), (2, group.by_time, "%{x:.3g} s")):
            if not band.x:
                continue
            values += [*band.low, *band.high]
            if len(group.runs) > 1:
                for trace in band_traces(band.x, band.low, band.high, color=color, group=name, shape="hv"):
                    fig.add_trace(trace, row=1, col=col)
            fig.add_trace(_mean_trace(band, name=name, line=line, show=col == 1, unit=unit, objective=objective),
                          row=1, col=col)
    fig.update_yaxes(title_text=f"best {objective} so far", row=1, col=1)
    fig.update_yaxes(**axis_scale(values))
    fig.update_xaxes(title_text="trials finished", row=1, col=1)
    fig.update_xaxes(title_text="seconds since the study's first trial started", row=1, col=2)
    fig.update_layout(legend={"orientation": "h", "y": -0.22, "x": 0})
    samplers = ", ".join(plotly_text(group.sampler) for group in comparison.groups)
    return styled(fig, f"Search strategies on one space: {samplers}; mean over studies, band = min to max", height=440)


def _legend_name(group: StrategyGroup) -> str:
    count = len(group.runs)
    return plotly_text(f"{group.sampler} (mean of {count} studies)" if count > 1 else f"{group.sampler} (1 study)")


def _mean_trace(band: Band, *, name: str, line: dict[str, Any], show: bool, unit: str, objective: str) -> go.Scatter:
    return go.Scatter(
        x=list(band.x), y=rounded(band.mean), mode="lines", line=line,
        name=name, legendgroup=name, showlegend=show,
        customdata=[[n, lo, hi] for n, lo, hi in zip(band.counts, rounded(band.low), rounded(band.high))],
        hovertemplate=(
            f"{name}<br>{unit}: best {objective} %{{y:.4g}} (mean of %{{customdata[0]}}; min %{{customdata[1]:.4g}}, "
            "max %{customdata[2]:.4g})<extra></extra>"
        ),
    )
