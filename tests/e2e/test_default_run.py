"""The first thing a new user types: a bare `hpstudy run` finishes the default study offline."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_bare_run_finishes_the_default_study_with_pruning_and_high_accuracy(tmp_path):
    result = run_cli("run", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="digits-mlp", storage=f"sqlite:///{tmp_path / 'hpstudy.db'}")
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 20
    assert states.count(TrialState.PRUNED) >= 1, "the median pruner stops some trials"
    assert TrialState.RUNNING not in states
    assert study.best_trial.user_attrs["val_accuracy"] >= 0.95
    assert "Best: trial" in result.stdout and "hpstudy.db" in result.stdout
