"""The HTML report: one self-contained file per set of studies, rendered through a Jinja2 template."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import jinja2
import optuna

from hpstudy.reports.tables import trials_frame

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("hpstudy.reports", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def default_report_path(study_names: Sequence[str]) -> Path:
    """``hpstudy-report-NAME.html`` in the current directory (names joined with ``-vs-``)."""
    stem = "-vs-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", name) for name in study_names)[:120]
    return Path(f"hpstudy-report-{stem or 'studies'}.html")


def write_report(studies: Sequence[optuna.Study], path: Path, *, storage: str) -> Path:
    """Render the report of ``studies`` to ``path`` atomically (temp file, then rename)."""
    html = _ENV.get_template("report.html.j2").render(
        storage=storage,
        studies=[{"name": s.study_name, "trials": trials_frame(s).to_dict(orient="records")} for s in studies],
    )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
