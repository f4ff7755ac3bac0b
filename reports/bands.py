"""Rows of values (the repeats of a sweep point, the studies of a sampler) summed up per x: the
mean, min and max over the rows that have a value there, and how many do."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Band:
    """Per x (an epoch, a trial count, a second), the mean, min and max over the rows that have a
    value there, and how many do."""

    x: tuple[float, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    counts: tuple[int, ...]


def band_of(frame: pd.DataFrame) -> Band:
    """The band of ``frame``: a row per repeat or study, a column per x (its label); columns where
    no row has a value are left out."""
    counts = frame.notna().sum()
    kept = [column for column in frame.columns if counts[column]]
    return Band(
        x=tuple(kept),
        mean=tuple(float(v) for v in frame.mean()[kept]),
        low=tuple(float(v) for v in frame.min()[kept]),
        high=tuple(float(v) for v in frame.max()[kept]),
        counts=tuple(int(counts[x]) for x in kept),
    )


def padded_frame(rows: Sequence[Sequence[float]]) -> pd.DataFrame:
    """Rows of different lengths as one float frame, NaN past each row's end; columns 1, 2, ..."""
    width = max((len(row) for row in rows), default=0)
    padded = [list(row) + [math.nan] * (width - len(row)) for row in rows]
    return pd.DataFrame(padded, columns=range(1, width + 1), dtype=float)
