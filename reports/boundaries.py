"""Boundary warnings: when the best trials crowd one end of a parameter's range, the optimum may
lie beyond it, so the report suggests widening the range (never past what the parameter allows)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from optuna.distributions import FloatDistribution, IntDistribution

from hpstudy.reports.study_data import StudyData
from hpstudy.search_spaces.catalog import PARAMETERS, PER_LAYER_PREFIX, ParamInfo

#: The outer share of a range (on the log scale for log ranges) that counts as "at the edge".
EDGE = 0.1
#: How many of the best trials are looked at: 10% of the completed ones, within these limits.
TOP_MIN, TOP_MAX = 3, 10


@dataclass(frozen=True)
class BoundaryWarning:
    """The best trials of ``study`` sit at the ``side`` end of ``param``'s range."""

    study: str
    param: str
    side: Literal["low", "high"]
    low: float
    high: float
    log: bool
    best_value: float
    top_at_edge: int
    top_count: int
    suggested: float
    config_key: str

    @property
    def message(self) -> str:
        """The warning and the suggested change, in words."""
        where = "top" if self.side == "high" else "bottom"
        beyond = "above" if self.side == "high" else "below"
        bound = self.high if self.side == "high" else self.low
        scale = " (log scale)" if self.log else ""
        return (
            f"{self.param}: the best trial ({_fmt(self.best_value)}) and {self.top_at_edge} of the top "
            f"{self.top_count} trials lie in the {where} {EDGE:.0%} of its range {_fmt(self.low)} .. "
            f"{_fmt(self.high)}{scale}. The optimum may be {beyond} {_fmt(bound)}: try widening the range, "
            f"e.g. {self.config_key}.{self.side}: {_fmt(self.suggested)}."
        )


def boundary_warnings(data: StudyData) -> tuple[BoundaryWarning, ...]:
    """A warning for each numeric searched param whose best trials crowd an end of its range."""
    if data.complete.empty:
        return ()
    top = data.complete.head(max(TOP_MIN, min(TOP_MAX, math.ceil(0.1 * len(data.complete)))))
    warnings = []
    for name in data.searched:
        dist = data.distributions[name]
        column = f"params_{name}"
        if not isinstance(dist, (FloatDistribution, IntDistribution)) or column not in top:
            continue
        values = [float(v) for v in top[column].dropna()]
        if not values:
            continue
        for side in ("low", "high"):
            at_edge = [v for v in values if _at_edge(v, dist, side)]
            if _at_edge(values[0], dist, side) and 2 * len(at_edge) >= len(values):
                suggested = _widened(name, dist, side)
                if suggested is not None:
                    warnings.append(
                        BoundaryWarning(
                            study=data.name,
                            param=name,
                            side=side,
                            low=float(dist.low),
                            high=float(dist.high),
                            log=dist.log,
                            best_value=values[0],
                            top_at_edge=len(at_edge),
                            top_count=len(values),
                            suggested=suggested,
                            config_key=f"search_space.{_catalog_name(name)}",
                        )
                    )
    return tuple(warnings)


def _at_edge(value: float, dist: FloatDistribution | IntDistribution, side: str) -> bool:
    bound = dist.high if side == "high" else dist.low
    if isinstance(dist, IntDistribution) and (dist.high - dist.low) / dist.step < 1 / EDGE:
        return value == bound  # few values: only the end value itself is "at the edge"
    position = _position(value, dist)
    return position >= 1 - EDGE if side == "high" else position <= EDGE


def _position(value: float, dist: FloatDistribution | IntDistribution) -> float:
    if dist.log:
        return (math.log(value) - math.log(dist.low)) / (math.log(dist.high) - math.log(dist.low))
    return (value - dist.low) / (dist.high - dist.low)


def _widened(name: str, dist: FloatDistribution | IntDistribution, side: str) -> float | None:
    """A bound half a range (a factor of 3 for log ranges) further out, kept inside what the
    parameter allows; None when the bound is already the parameter's limit."""
    bound = float(dist.high if side == "high" else dist.low)
    if dist.log:
        wanted = bound * 3 if side == "high" else bound / 3
    else:
        half = (dist.high - dist.low) / 2
        wanted = bound + half if side == "high" else bound - half
    info = PARAMETERS.get(_catalog_name(name))
    if info is not None:
        wanted = _inside(info, bound, wanted)
    for candidate in _on_the_steps(dist, side, wanted):
        if candidate != bound and not (info is not None and info.problem_with(_typed(info, candidate))):
            return candidate
    return None


def _on_the_steps(dist: FloatDistribution | IntDistribution, side: str, wanted: float) -> tuple[float, ...]:
    """``wanted`` as points of the range's step grid (whole numbers for an int range), so that
    ``high`` stays ``low`` plus whole steps: the one past ``wanted``, then the one short of it."""
    step = dist.step or (1 if isinstance(dist, IntDistribution) else None)
    if step is None:
        return (wanted,)
    origin, sign = (dist.low, 1) if side == "high" else (dist.high, -1)
    steps = sign * (wanted - origin) / step
    return tuple(float(origin + sign * whole * step) for whole in (math.ceil(steps - 1e-9), math.floor(steps + 1e-9)))


def _inside(info: ParamInfo, bound: float, wanted: float) -> float:
    """``wanted``, or the point halfway from ``bound`` to the parameter's limit when it is past it."""
    if info.maximum is not None and wanted >= info.maximum:
        wanted = info.maximum if not info.maximum_exclusive else bound + (info.maximum - bound) / 2
    if info.minimum is not None and wanted <= info.minimum:
        wanted = info.minimum if not info.minimum_exclusive else bound - (bound - info.minimum) / 2
    return wanted


def _typed(info: ParamInfo, value: float) -> float | int:
    return int(value) if info.kind == "int" else value


def _catalog_name(name: str) -> str:
    return "hidden_units" if name.startswith(PER_LAYER_PREFIX) else name


def _fmt(value: float) -> str:
    """Whole numbers in full (1536, not 1.54e+03), others to three significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.3g}"
