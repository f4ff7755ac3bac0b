"""Every classic-experiment preset, run small (--quick) on digits: its report holds the sweep view and
findings, and the findings carry the numbers stored on the trials."""

from __future__ import annotations

import html
import math

import optuna
import pytest
from optuna.trial import TrialState

from hpstudy.reports.html import write_report
from hpstudy.reports.study_data import load_study_data
from hpstudy.reports.sweep_findings import sweep_findings
from hpstudy.reports.sweeps import sweep_view
from hpstudy.study import trial_attrs
from hpstudy.study.config import load_config
from hpstudy.study.runner import run_study
from tests.search_spaces_tests.test_classic_presets import SWEEPS


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_quick_preset_report_has_the_sweep_and_findings_from_the_stored_trials(name, tmp_path):
    cfg = load_config(preset=name, quick=True, values={"storage": f"sqlite:///{tmp_path / 's.db'}", "train.device": "cpu"})
    result = run_study(cfg)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.storage)
    assert result.finished == len(study.trials) == cfg.study.n_trials
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.FAIL)]
    sweep = sweep_view(load_study_data(study))
    assert sweep.note is None, sweep.note
    assert {sweep.param, sweep.series_param} - {None} == SWEEPS[name]
    for param in SWEEPS[name]:
        configured = set(cfg.search_space.specs[param].choices)
        axis = sweep.x_values if param == sweep.param else sweep.series_values
        assert set(axis) == configured
    findings = sweep_findings(sweep)
    trials = study.get_trials()
    for point in sweep.points:
        mine = [t for t in trials
                if t.params[sweep.param] == point.x and (sweep.series_param is None or t.params[sweep.series_param] == point.series)]
        assert len(point.repeats) == len(mine) == len(cfg.search_space.specs["seed"].choices)
        line = next(f for f in findings if f.startswith(f"{sweep.label(point)}:"))
        diverged = [t for t in mine if t.user_attrs[trial_attrs.END_REASON].startswith("diverged")]
        if diverged:
            assert f"diverged in {len(diverged)} of {len(mine)} repeats" in line
        completed = [t for t in mine if t.state == TrialState.COMPLETE]
        if completed:
            best = sum(t.value for t in completed) / len(completed)
            accuracy = sum(t.user_attrs[trial_attrs.VAL_ACCURACY] for t in completed) / len(completed)
            assert f"validation loss {best:.3g}" in line
            assert f"accuracy {accuracy:.3g}" in line
    page = tmp_path / "report.html"
    write_report([study], page, storage=cfg.storage)
    text = page.read_text()
    for finding in findings:
        assert html.escape(finding, quote=False) in text or finding in text
    assert not any(math.isnan(p.final("val_loss", "best").mean) for p in sweep.points if p.completed)
