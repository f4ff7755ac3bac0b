"""hpstudy.reports: what a person sees. Tables, exports, figures and the HTML report.

Reports read studies through Optuna and the user attrs named in ``hpstudy.study.trial_attrs``;
they never import the training code. Notebook users call ``figures_for``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go


def figures_for(studies: Sequence[optuna.Study]) -> dict[str, go.Figure]:
    """The HTML report's figures as plotly Figures, for a notebook: ``"history"``, ``"edf"`` and
    ``"savings"`` compare the studies, and ``"strategies"`` (``"strategies[N]"`` for several search
    spaces) compares the samplers of studies that share a space; ``"sweep[NAME]"`` and
    ``"sweep_curves[NAME]"`` (studies that vary one or two params besides ``seed``),
    ``"curves[NAME]"``, ``"best[NAME]"``, ``"importances[NAME]"``, ``"parallel[NAME]"``,
    ``"slices[NAME]"``, ``"contour[NAME]"``, ``"choices[NAME]"`` and ``"timeline[NAME]"`` show one
    study. Figures a study cannot have (no completed trial, say) are left out; the HTML report says
    why."""
    from hpstudy.reports.sections import figures_for as build  # plotly loads only when asked for

    return build(studies)
