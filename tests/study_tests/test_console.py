"""The terminal tables: the top trials of a run, and the studies of a storage."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from rich.console import Console

from hpstudy.reports.tables import StudyRow
from hpstudy.study import trial_attrs
from hpstudy.study.console import studies_table, trials_table


def test_top_trials_table_shows_epochs_once_as_run_of_requested():
    trial = optuna.trial.create_trial(
        params={"epochs": 30, "lr": 0.01},
        distributions={"epochs": IntDistribution(10, 40), "lr": FloatDistribution(1e-4, 1e-1, log=True)},
        value=0.05,
        user_attrs={trial_attrs.EPOCHS_RUN: 12, trial_attrs.EPOCHS_REQUESTED: 30, trial_attrs.VAL_ACCURACY: 0.98},
    )
    console = Console(record=True, width=200)
    console.print(trials_table([trial], title="Top 1"))
    text = console.export_text()
    header = next(line for line in text.splitlines() if "trial" in line and "value" in line)
    assert header.count("epochs") == 1 and "epochs run" in header and "lr" in header
    assert "12/30" in text and "0.01" in text


def test_the_studies_table_counts_every_state_queued_included():
    """`hpstudy list`: complete, pruned, failed, running and queued (a retry waiting, or params
    put in with `enqueue`) trials, each in its column."""
    row = StudyRow(name="s", direction="minimize", best_value=0.25, best_trial=3,
                   counts={"COMPLETE": 4, "PRUNED": 3, "FAIL": 2, "RUNNING": 1, "WAITING": 5})
    console = Console(width=200, record=True)
    console.print(studies_table([row], storage="sqlite:///x.db"))
    header, cells = [line for line in console.export_text().splitlines() if "│" in line or "┃" in line][:2]
    assert [c.strip() for c in header.strip("┃").split("┃")][2:7] == ["complete", "pruned", "failed", "running", "queued"]
    assert [c.strip() for c in cells.strip("│").split("│")] == ["s", "minimize", "4", "3", "2", "1", "5", "0.25", "3"]


def test_counts_read_as_english():
    from hpstudy.study.console import counted

    assert [counted(n, "trial") for n in (0, 1, 2)] == ["0 trials", "1 trial", "2 trials"]


def test_recovered_trials_are_said_to_be_queued_again_not_retried():
    """The run that recovers a dead process's trials may train none of their retries (its target
    already met): the summary says they were queued again, not that they were retried."""
    import io

    from hpstudy.study.console import print_run_summary
    from hpstudy.study.runner import RunResult

    study = optuna.create_study()
    result = RunResult(study_name="s", storage="sqlite:///s.db", counts={"FAIL": 2, "WAITING": 2}, target=2,
                       best_trial=None, trials_this_run=0, wall_seconds=1.0, device="cpu", stop_reason="target reached",
                       recovered=(0, 1))
    out = io.StringIO()
    print_run_summary(Console(file=out, width=200), result, study)
    assert ("Recovered 2 trial(s) left running by a dead process (#0, #1): failed and queued again; a retry goes on "
            "from its trial's last checkpoint, if it had one") in out.getvalue()
