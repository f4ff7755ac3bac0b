"""Smoke runs of the training-speed benchmarks: each runs and prints its figures (no speed asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def bench(module: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", module, "--quick", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_two_loops_prints_a_ratio():
    assert re.search(r"ratio \(usual / hpstudy\): \d+\.\d+x", bench("bench.two_loops"))


def test_pruning_prints_both_tables():
    out = bench("bench.pruning")
    assert "(a) equal trial count" in out and "(b) equal epochs" in out
    assert re.search(r"default\s+\d+\s+-?\d+%", out)


def test_overhead_prints_the_split():
    out = bench("bench.overhead")
    assert re.search(r"own share per epoch .*: \d+\.\d+%", out)
    for phase in ("train", "validate", "report_prune", "checkpoint", "sample"):
        assert re.search(rf"^{phase}\s+\d", out, re.MULTILINE)
    assert re.search(r"per trial, .*: \d+ ms, of which math \d+ ms and the rest .* \d+ ms", out)


def test_packing_prints_rates_and_ratios_for_every_scenario():
    out = bench("bench.packing")
    studies, training_only = out.split("training only:")
    default, same_shape = studies.split("same shape:")
    assert re.search(r"width\s+32 batch\s+64: alone \d+\.\d+ s\s+packed \d+\.\d+ s\s+x\d+\.\d+", training_only)
    for part in (default, same_shape):
        assert re.search(r"one at a time\s+\d+ trials/h", part)
        assert re.search(r"pack of 4\s+\d+ trials/h\s+\d+ epochs/h\s+x\d+\.\d+ trials/h", part)
        assert re.search(r"per repeat, packed / one at a time: trials/h x\d+\.\d+ \(median x\d+\.\d+\)", part)
        bound = re.search(r"training (\d+\.\d+) s, at the arithmetic's speed (\d+\.\d+) s; outside training "
                          r"\d+\.\d+ s: no pack can run this study more than x(\d+\.\d+) faster", part)
        assert bound, part
        trained, floor, most = map(float, bound.groups())
        assert 0 < floor < trained and most > 1.0  # full-batch epochs are cheaper than the trials' own
        assert re.search(r"the most any packing could gain, per repeat: x\d+\.\d+ \(median x\d+\.\d+\)", part)
