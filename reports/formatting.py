"""How numbers, durations and user text are written on the report."""

from __future__ import annotations

import html
import math
from typing import Any


def plotly_text(value: Any) -> str:
    """``value`` as plotly text that shows exactly as written: plotly renders a few HTML tags
    (``<b>``, ``<a href>``...) and decodes entities, so the text is HTML-escaped first."""
    return html.escape(str(value), quote=False)


def number_text(value: Any) -> str:
    """A float to 4 significant digits; anything else as ``str``."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def duration_text(seconds: float | None) -> str:
    """Seconds as "12.3 s", "4.5 min" or "2.0 h"; "unknown" when not measured."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def choice_text(value: Any) -> str:
    """A param value as a config writes it: ``0.001``, ``1e-08``, ``true``, ``none``, ``relu``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
