"""The report benchmark runs and prints its figures (a smoke run: speed is measured in bench/, not here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_report_benchmark_quick_run_prints_its_figures():
    result = subprocess.run(
        [sys.executable, "-m", "bench.report_scale", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "studies: 2 studies x 40 trials x 6 epochs" in out
    assert re.search(r"^report in process \(load \+ figures \+ HTML\): \d+\.\d\d s$", out, re.M)
    assert re.search(r"^hpstudy report --all \(new process\): \d+\.\d\d s$", out, re.M)
    size = re.search(r"^report file: (\d+\.\d\d) MB$", out, re.M)
    assert size and 4.0 < float(size.group(1)) < 10.0, "plotly.js (about 4.8 MB) plus the figures"
