"""`hpstudy enqueue` on a study at its target: it says how to run the queued trials, and they run."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from hpstudy.storage.enqueue import enqueue_params
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study.cli import main
from hpstudy.study.runner import run_study


def test_trials_queued_past_the_target_are_announced_and_run_when_it_is_raised(quick_config, sqlite_url, capsys):
    run_study(quick_config(study__n_trials=1))
    queued = enqueue_params(parse_storage_url(sqlite_url), "quick", {"lr": 0.01})
    assert (queued.queued, queued.waiting, queued.finished, queued.target) == (1, 1, 1, 1)
    assert queued.beyond_target == 1

    assert main(["enqueue", "--study-name", "quick", "--storage", sqlite_url, "--params", '{"lr": 0.02}']) == 0
    out = capsys.readouterr().out
    assert "Queued 1 trial(s)" in out
    assert "leaves 2 queued trial(s) waiting" in out
    command = next(line for line in out.splitlines() if "hpstudy resume" in line).split(": ", 1)[1]
    assert command == f"hpstudy resume --study-name quick --storage {sqlite_url} --n-trials 3"

    assert main(command.split()[1:] + ["--no-report"]) == 0
    trials = optuna.load_study(study_name="quick", storage=sqlite_url).get_trials()
    assert sorted(t.params["lr"] for t in trials if t.user_attrs.get("enqueued")) == [0.01, 0.02]
    assert not [t for t in trials if t.state == TrialState.WAITING]


def test_trials_queued_within_the_target_need_no_advice(quick_config, sqlite_url, capsys):
    run_study(quick_config(study__n_trials=3, study__budget_epochs=1))  # stops after its first trial
    assert len(optuna.load_study(study_name="quick", storage=sqlite_url).get_trials()) == 1  # 2 of 3 to go
    assert main(["enqueue", "--study-name", "quick", "--storage", sqlite_url, "--params", '{"lr": 0.02}']) == 0
    out = capsys.readouterr().out
    assert "Queued 1 trial(s)" in out and "raise the target" not in out


def test_whole_numbers_written_as_floats_run_as_the_ints_they_are(quick_config, sqlite_url):
    """JSON's 64.0 for a batch size (a choice) or 3.0 epochs (an int range) is queued as 64 and 3:
    queued as floats, the trial crashed with a traceback when it built its batches."""
    run_study(quick_config(study__n_trials=1))
    enqueue_params(parse_storage_url(sqlite_url), "quick", {"batch_size": 64.0, "epochs": 3.0, "hidden_units": 32.0})
    result = run_study(quick_config(study__n_trials=2))
    assert result.finished == 2
    queued = next(t for t in optuna.load_study(study_name="quick", storage=sqlite_url).get_trials()
                  if t.user_attrs.get("enqueued"))
    assert queued.state == TrialState.COMPLETE
    hyperparams = queued.user_attrs["hyperparams"]
    assert (hyperparams["batch_size"], hyperparams["epochs"], hyperparams["hidden_units"]) == (64, 3, [32])
    assert all(type(value) is int for value in (hyperparams["batch_size"], hyperparams["epochs"], *hyperparams["hidden_units"]))
