"""The records behind the report, computed from real studies on SQLite: every number checked by hand."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from hpstudy.reports import info
from hpstudy.reports.boundaries import boundary_warnings
from hpstudy.reports.curves import best_trial_curves, fit_verdict, learning_curves
from hpstudy.reports.study_data import load_study_data
from tests.reports_tests.builders import DROPOUT, LR, OPTIMIZER, falling, hp_study, hp_trial

SPACE = {"lr": {"low": 1e-4, "high": 1e-1, "log": True}, "dropout": {"low": 0.0, "high": 0.5}}
DISTS = {"lr": LR, "dropout": DROPOUT}


def test_pruning_savings_count_epochs_and_estimate_seconds_per_trial(sqlite_url):
    trials = [
        hp_trial({"lr": 0.01, "dropout": 0.1}, DISTS, val_loss=falling(2, 0.1, 10), epoch_seconds=0.5),
        hp_trial({"lr": 0.001, "dropout": 0.2}, DISTS, val_loss=falling(2, 1, 4), epochs_requested=10,
                 state=TrialState.PRUNED, epoch_seconds=1.0),
        hp_trial({"lr": 0.02, "dropout": 0.3}, DISTS, val_loss=falling(2, 0.2, 6), epochs_requested=10,
                 epoch_seconds=0.25),  # early stopped: complete with unrun epochs
        hp_trial({"lr": 0.03, "dropout": 0.4}, DISTS, val_loss=falling(2, 1, 2), epochs_requested=10,
                 state=TrialState.FAIL, epoch_seconds=2.0),
    ]
    savings = info.pruning_savings(load_study_data(hp_study(sqlite_url, "s", trials, space=SPACE)))
    assert (savings.epochs_requested, savings.epochs_run) == (40, 22)
    assert (savings.saved_by_pruning, savings.saved_by_early_stopping, savings.not_run_other) == (6, 4, 8)
    assert savings.seconds_saved_by_pruning == pytest.approx(6 * 1.0)
    assert savings.seconds_saved_by_early_stopping == pytest.approx(4 * 0.25)
    assert savings.seconds_run == pytest.approx(10 * 0.5 + 4 * 1.0 + 6 * 0.25 + 2 * 2.0)
    assert (savings.pruned_trials, savings.early_stopped_trials) == (1, 1)
    assert savings.share_saved_by_pruning == pytest.approx(6 / 40)


def test_summary_reads_counts_best_trial_and_the_stored_config(sqlite_url):
    trials = [
        hp_trial({"lr": 0.01, "dropout": 0.1}, DISTS, val_loss=[1.0, 0.5, 0.4]),
        hp_trial({"lr": 0.05, "dropout": 0.2}, DISTS, val_loss=[1.0, 0.3, 0.35]),
        hp_trial({"lr": 0.001, "dropout": 0.3}, DISTS, val_loss=[2.0], state=TrialState.PRUNED),
    ]
    cfg = {"study.sampler": {"name": "random"}, "study.pruner": {"name": "median", "options": {"n_warmup_steps": 2}}}
    summary = info.summarize(load_study_data(hp_study(sqlite_url, "s", trials, space=SPACE, config_values=cfg)))
    assert summary.states["COMPLETE"] == 2 and summary.states["PRUNED"] == 1 and summary.n_trials == 3
    assert summary.best is not None
    assert (summary.best.number, summary.best.value, summary.best.best_epoch) == (1, 0.3, 2)
    assert summary.best.params == {"dropout": 0.2, "lr": 0.05}
    assert summary.sampler == "random" and summary.pruner == "median (n_warmup_steps=2)"
    assert summary.objective == "validation loss" and summary.direction == "minimize"
    assert summary.devices == ("cpu",)
    assert "n_warmup_steps: 2" in summary.config_text
    assert summary.search_space["lr"] == "0.0001 .. 0.1 (log)"


def test_boundary_warning_when_the_best_trials_crowd_the_top_of_a_log_range(sqlite_url):
    best_lrs = [0.095, 0.09, 0.085, 0.098]  # top 10% of [1e-4, 1e-1] on the log scale starts at ~0.05
    trials = [hp_trial({"lr": lr, "dropout": 0.25}, DISTS, val_loss=[1.0, 0.1 + i / 100]) for i, lr in enumerate(best_lrs)]
    trials += [hp_trial({"lr": lr, "dropout": 0.3}, DISTS, val_loss=[1.0, 0.9]) for lr in (0.001, 0.0003, 0.002)]
    warnings = boundary_warnings(load_study_data(hp_study(sqlite_url, "s", trials, space=SPACE)))
    assert [(w.param, w.side) for w in warnings] == [("lr", "high")]
    warning = warnings[0]
    assert (warning.top_at_edge, warning.top_count) == (3, 3)
    assert warning.suggested == pytest.approx(0.3)
    assert "search_space.lr.high: 0.3" in warning.message and "0.0001 .. 0.1 (log scale)" in warning.message


def test_no_boundary_warning_in_the_middle_nor_past_what_a_parameter_allows(sqlite_url):
    trials = [hp_trial({"lr": 0.003 + i * 1e-4, "dropout": 0.0}, DISTS, val_loss=[1.0, 0.1 + i / 100]) for i in range(5)]
    data = load_study_data(hp_study(sqlite_url, "s", trials, space=SPACE))
    assert boundary_warnings(data) == ()  # lr is mid-range; dropout sits at 0, the lowest it can be


def test_learning_curves_subsample_many_trials_and_keep_the_best(sqlite_url):
    trials = [
        hp_trial({"lr": 1e-3 * (1 + i % 50), "dropout": 0.1}, DISTS, val_loss=falling(2.0, 0.1 + (i * 37 % 200) / 100, 5))
        for i in range(200)
    ]
    data = load_study_data(hp_study(sqlite_url, "s", trials, space=SPACE))
    curves = learning_curves(data, max_curves=40, best_curves=10)
    assert curves.total == 200
    assert len(curves.lines) + 1 == 40 and curves.best is not None
    assert curves.best.number == int(data.complete.iloc[0]["number"])
    assert "Showing 40 of 200 trials" in curves.note
    assert curves.band is not None and curves.band.epochs == (1, 2, 3, 4, 5)
    assert all(lo <= mid <= hi for lo, mid, hi in zip(curves.band.low, curves.band.median, curves.band.high))
    lowest_ten = set(data.curves.groupby("trial")["val_loss"].min().nsmallest(10).index)
    assert lowest_ten <= {line.number for line in curves.lines} | {curves.best.number}


def test_best_trial_curves_and_what_they_say(sqlite_url):
    overfit = [1.0, 0.5, 0.3, 0.35, 0.45, 0.6]
    trials = [hp_trial({"lr": 0.01, "dropout": 0.1}, DISTS, val_loss=overfit, train_loss=[0.9, 0.4, 0.2, 0.1, 0.05, 0.02])]
    best = best_trial_curves(load_study_data(hp_study(sqlite_url, "s", trials, space=SPACE)))
    assert best is not None and best.epochs == (1, 2, 3, 4, 5, 6) and best.best_epoch == 3
    assert "overfits after epoch 3" in best.verdict
    assert "still falling" in fit_verdict([1.0, 0.8, 0.6, 0.5, 0.4, 0.3], [1.1, 0.9, 0.7, 0.6, 0.5, 0.4])
    assert "no clear sign" in fit_verdict([1.0, 0.5, 0.4, 0.4, 0.4, 0.4], [1.0, 0.5, 0.45, 0.44, 0.45, 0.45])
    assert "Too few epochs" in fit_verdict([1.0, 0.5], [1.0, 0.5])
    unstable = fit_verdict([1.0, 0.6, 0.5, 0.6, 0.7, 0.65], [1.0, 0.4, 0.3, 0.35, 0.5, 0.45])
    assert "lowest at epoch 3 and ended 50% higher at epoch 6" in unstable and "smaller learning rate" in unstable


def test_categorical_values_per_choice_with_pruned_counts(sqlite_url):
    dists = {"lr": LR, "optimizer": OPTIMIZER}
    trials = [
        hp_trial({"lr": 0.01, "optimizer": "adam"}, dists, val_loss=[1.0, 0.2]),
        hp_trial({"lr": 0.02, "optimizer": "adam"}, dists, val_loss=[1.0, 0.3]),
        hp_trial({"lr": 0.03, "optimizer": "sgd"}, dists, val_loss=[1.0, 0.6]),
        hp_trial({"lr": 0.04, "optimizer": "sgd"}, dists, val_loss=[2.0], state=TrialState.PRUNED),
    ]
    space = {"lr": SPACE["lr"], "optimizer": ["sgd", "adam", "rmsprop"]}
    values = info.categorical_values(load_study_data(hp_study(sqlite_url, "s", trials, space=space)))
    (optimizer,) = values.params
    assert optimizer.choices == ("sgd", "adam", "rmsprop")
    assert optimizer.values == ((0.6,), (0.2, 0.3), ())
    assert optimizer.trials == ((2,), (0, 1), ())
    assert optimizer.pruned == (1, 0, 0)


def test_importances_need_ten_completed_trials_and_name_their_evaluator(sqlite_url):
    few = [hp_trial({"lr": 10 ** -(1 + i / 3), "dropout": 0.1 * i}, DISTS, val_loss=[1.0, 0.1 * (i + 1)]) for i in range(4)]
    record = info.importances(load_study_data(hp_study(sqlite_url, "few", few, space=SPACE)))
    assert record.values == {} and "at least 10 completed trials" in record.note and "has 4" in record.note
    many = [hp_trial({"lr": 10 ** -(1 + i / 8), "dropout": 0.5 * (i % 5) / 5}, DISTS, val_loss=[1.0, 0.1 + i / 30])
            for i in range(24)]
    record = info.importances(load_study_data(hp_study(sqlite_url, "many", many, space=SPACE)))
    assert record.note is None and set(record.values) == {"lr", "dropout"}
    assert sum(record.values.values()) == pytest.approx(1.0)
    assert list(record.values)[0] == "lr"  # the value follows lr alone
    assert "PED-ANOVA" in record.evaluator


def test_comparable_leaves_out_studies_without_values_or_with_another_objective(sqlite_url):
    done = hp_study(sqlite_url, "done", [hp_trial({"lr": 0.01}, {"lr": LR}, val_loss=[1.0, 0.5])])
    empty = hp_study(sqlite_url, "empty", [])
    accuracy = hp_study(sqlite_url, "acc", [hp_trial({"lr": 0.01}, {"lr": LR}, val_loss=[1.0, 0.5])],
                        config_values={"study.metric": "val_accuracy"})
    shown, note = info.comparable([load_study_data(s) for s in (done, empty, accuracy)])
    assert [d.name for d in shown] == ["done"]
    assert note == "Not shown: 'empty' (no completed trial), 'acc' (maximizes validation accuracy)."
    other = hp_study(sqlite_url, "other", [hp_trial({"lr": 0.02}, {"lr": LR}, val_loss=[1.0, 0.4])])
    shown, note = info.comparable([load_study_data(s) for s in (accuracy, done, other)])  # as `report --all` sorts them
    assert [d.name for d in shown] == ["done", "other"], "the objective most studies share, not the first's"
    assert note == "Not shown: 'acc' (maximizes validation accuracy)."


def test_a_waiting_retry_with_copied_attrs_is_not_counted_twice(sqlite_url):
    failed = hp_trial({"lr": 0.01, "dropout": 0.1}, DISTS, val_loss=[2.0, 1.5], epochs_requested=10,
                      state=TrialState.FAIL)
    created = hp_study(sqlite_url, "s", [failed], space=SPACE)
    created.enqueue_trial(failed.params, user_attrs=failed.user_attrs)  # as a heartbeat retry leaves it
    data = load_study_data(created)
    assert data.state_count("WAITING") == 1
    savings = info.pruning_savings(data)
    assert (savings.trials_measured, savings.epochs_requested, savings.not_run_other) == (1, 10, 8)
    assert learning_curves(data).total == 1


def test_timeline_turns_to_dots_when_bars_would_vanish(sqlite_url):
    trials = [hp_trial({"lr": 0.01, "dropout": 0.1}, DISTS, val_loss=[1.0, 0.5], epoch_seconds=2.0) for _ in range(6)]
    data = load_study_data(hp_study(sqlite_url, "s", trials, space=SPACE))
    bars = info.timeline(data)
    assert not bars.points and bars.note is None and bars.numbers == (0, 1, 2, 3, 4, 5)
    assert all(s == pytest.approx(4.1, abs=0.01) for s in bars.seconds)
    dots = info.timeline(data, max_bars=5)
    assert dots.points and dots.note.startswith("With 6 trials a bar per trial would be thinner than a pixel")


@pytest.mark.parametrize(("low", "high", "step", "best", "suggested"), [
    (100, 1000, 900, [1000, 1000, 1000], 1900),  # half a range out is 1450: the next step, 1900
    (32, 512, 1, [500, 510, 512], 752),           # whole numbers, written in full (not 7.52e+02)
])
def test_a_widened_int_range_stays_on_its_steps_and_prints_whole_numbers(sqlite_url, low, high, step, best, suggested):
    from optuna.distributions import IntDistribution

    units = IntDistribution(low, high, step=step)
    space = {"hidden_units": {"low": low, "high": high, **({"step": step} if step != 1 else {})}}
    trials = [hp_trial({"hidden_units": u}, {"hidden_units": units}, val_loss=[1.0, 0.1 + i / 100]) for i, u in enumerate(best)]
    trials += [hp_trial({"hidden_units": low}, {"hidden_units": units}, val_loss=[1.0, 0.9]) for _ in range(3)]
    [warning] = boundary_warnings(load_study_data(hp_study(sqlite_url, "s", trials, space=space)))
    assert (warning.param, warning.side, warning.suggested) == ("hidden_units", "high", suggested)
    assert f"search_space.hidden_units.high: {suggested}." in warning.message
    assert f"range {low} .. {high}" in warning.message


def test_an_empty_study_not_made_by_hpstudy_is_not_told_to_run_with_hpstudy(sqlite_url):
    import optuna

    foreign = optuna.create_study(storage=sqlite_url, study_name="foreign")
    assert "not created by hpstudy, which trains only studies it created" in info.why_no_values(load_study_data(foreign))
    own = load_study_data(hp_study(sqlite_url, "own", []))
    assert "run it with `hpstudy run`, or continue it with `hpstudy resume`" in info.why_no_values(own)


def test_wall_time_and_time_in_trials_leave_out_the_downtime_after_a_kill(sqlite_url):
    """Run 1 ends normally (10 s); run 2 is killed (no end) after its trial 1 ends at 25 s, while
    trial 2 runs; an hour later run 3 recovers trial 2 (failed, no end reason: its end is the
    recovery) and runs trial 3 (10 s). Concurrent workers count once."""
    import datetime as dt

    from optuna.trial import TrialState

    from hpstudy.storage.stored_config import RUN_ATTR_PREFIX

    t0 = dt.datetime(2026, 12, 2, 10, 0, 0)
    trials = [hp_trial({"lr": 0.01, "dropout": 0.1}, DISTS, val_loss=[1.0, 0.5]) for _ in range(4)]
    trials[2] = hp_trial({"lr": 0.01, "dropout": 0.1}, DISTS, val_loss=[1.0], state=TrialState.FAIL)
    trials[2].user_attrs.pop("end_reason")
    moments = [(0, 9), (15, 25), (26, 3600), (3600, 3610)]
    for trial, (start, end) in zip(trials, moments):
        trial.datetime_start, trial.datetime_complete = t0 + dt.timedelta(seconds=start), t0 + dt.timedelta(seconds=end)
    created = hp_study(sqlite_url, "s", trials, space=SPACE)
    for key, start, end in (("1", 0, 10), ("2", 14, None), ("3", 3599, 3611), ("3b", 3599, 3605)):
        run = {"started": (t0 + dt.timedelta(seconds=start)).isoformat(), "host": "h", "pid": 1}
        if end is not None:
            run["ended"] = (t0 + dt.timedelta(seconds=end)).isoformat()
        created.set_user_attr(f"{RUN_ATTR_PREFIX}{key}", run)
    summary = info.summarize(load_study_data(created))
    assert summary.wall_seconds == pytest.approx(10 + 10 + 12)  # runs 1 and 3 (3b within it), trial 1 of run 2
    assert summary.trial_seconds == pytest.approx(9 + 10 + 10) and summary.cut_by_a_crash == 1
    from hpstudy.reports.html import render_report
    from hpstudy.reports.sections import report_content

    page = render_report(report_content([created]), storage=sqlite_url)
    assert "29.0 s (not counting 1 trial cut by a crash)" in page and "32.0 s over 4 runs" in page
