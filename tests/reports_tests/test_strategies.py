"""Search strategies compared on real studies (grid, random and TPE on one space, two studies each):
best so far, bands, findings and figure checked against the values the trials stored."""

from __future__ import annotations

import statistics

import optuna
import pytest

from hpstudy.reports import figures_for
from hpstudy.reports.sections import report_content
from hpstudy.reports.strategies import strategy_comparisons, strategy_findings, why_no_strategy_comparison
from hpstudy.reports.study_data import load_study_data
from tests.reports_tests import stored
from tests.reports_tests.builders import LR, falling, hp_study, hp_trial
from tests.reports_tests.sweep_studies import STRATEGY_SAMPLERS, STRATEGY_TRIALS


def best_so_far(optuna_study: optuna.Study) -> list[float]:
    """The lowest value after each finished trial, in trial-number order (NaN before any)."""
    out, best = [], float("nan")
    for trial in stored.finished(optuna_study):
        if trial.value is not None and not best <= trial.value:
            best = trial.value
        out.append(best)
    return out


def test_samplers_are_grouped_and_averaged_from_the_stored_values(strategy_url):
    url, names = strategy_url
    studies = {name: optuna.load_study(study_name=name, storage=url) for name in names}
    (comparison,) = strategy_comparisons([load_study_data(s) for s in studies.values()])
    assert [g.sampler for g in comparison.groups] == sorted(STRATEGY_SAMPLERS)
    findings = strategy_findings(comparison)
    finals = {}
    for group in comparison.groups:
        runs = [best_so_far(studies[f"{group.sampler}-{seed}"]) for seed in (0, 1)]
        for run, expected in zip(group.runs, runs):
            assert list(run.by_trial) == pytest.approx(expected, nan_ok=True)
        assert group.by_trial.x == tuple(range(1, STRATEGY_TRIALS + 1))
        assert list(group.by_trial.mean) == pytest.approx([statistics.mean(pair) for pair in zip(*runs)])
        assert list(group.by_trial.low) == pytest.approx([min(pair) for pair in zip(*runs)])
        assert list(group.by_trial.high) == pytest.approx([max(pair) for pair in zip(*runs)])
        finals[group.sampler] = [run[-1] for run in runs]
        line = next(line for line in findings if line.startswith(f"{group.sampler} (2 studies of {STRATEGY_TRIALS} trials)"))
        assert f"best validation loss {stored.spread_text(finals[group.sampler])}, found after" in line
    tpe_line = next(line for line in findings if line.startswith("tpe "))
    target = statistics.mean(finals["grid"])
    reached = [next((k for k, v in enumerate(best_so_far(studies[f"tpe-{seed}"]), 1) if v <= target), None) for seed in (0, 1)]
    if any(reached):
        done = [k for k in reached if k]
        assert f"reached grid's final best ({target:.3g}) after {statistics.mean(done):.3g} trial" in tpe_line
    else:
        assert f"never reached grid's final best ({target:.3g})" in tpe_line


def test_strategy_figure_has_a_line_and_a_band_per_sampler_against_trials_and_time(strategy_url):
    url, names = strategy_url
    studies = [optuna.load_study(study_name=name, storage=url) for name in names]
    figure = figures_for(studies)["strategies"]
    for sampler in STRATEGY_SAMPLERS:
        lines = [t for t in figure.data if t.name == f"{sampler} (mean of 2 studies)"]
        assert [t.xaxis for t in lines] == ["x", "x2"], "against trials and against time"
        assert list(lines[0].x) == list(range(1, STRATEGY_TRIALS + 1))
        assert len({t.line.color for t in lines}) == 1
        bands = [t for t in figure.data if t.legendgroup == lines[0].name and t.fill == "tonexty"]
        assert len(bands) == 2, "a min-max band on each panel"
        own = [s for s in studies if s.study_name.startswith(f"{sampler}-")]
        finished_at = {
            s.study_name: [((t.datetime_complete - min(u.datetime_start for u in stored.finished(s))).total_seconds(), t.value)
                           for t in stored.finished(s)]
            for s in own
        }
        moments = sorted({moment for pairs in finished_at.values() for moment, _ in pairs})
        assert list(lines[1].x) == pytest.approx(moments, abs=1e-6), "every moment a trial finished"
        held = [  # per moment, the mean over studies of the best each had found by then (kept after it ended)
            statistics.mean(b for pairs in finished_at.values()
                            if (b := min((v for m, v in pairs if m <= moment and v is not None), default=None)) is not None)
            for moment in moments
        ]
        assert list(lines[1].y) == pytest.approx(held, abs=1e-6)
    colors = {t.line.color for t in figure.data if t.mode == "lines" and t.showlegend}
    assert len(colors) == len(STRATEGY_SAMPLERS)


def test_one_study_per_sampler_draws_no_band_and_says_so(strategy_url):
    url, _ = strategy_url
    studies = [optuna.load_study(study_name=f"{sampler}-0", storage=url) for sampler in STRATEGY_SAMPLERS]
    (section,) = [s for s in report_content(studies).sections if s.key == "strategies"]
    (panel,) = section.panels
    assert panel.note.startswith("One study per sampler, so no band: run each sampler with more seeds "
                                 "(`hpstudy compare --repeats 3`")
    assert not [t for t in panel.figure.data if t.fill == "tonexty"]
    assert len(panel.findings) == len(STRATEGY_SAMPLERS)


def test_studies_of_different_spaces_are_not_compared_and_the_difference_is_named(tmp_path):
    url = f"sqlite:///{tmp_path / 'apart.db'}"
    trials = [hp_trial({"lr": 10 ** -(1 + i / 3)}, {"lr": LR}, val_loss=falling(2.0, 0.3 + i / 10, 3)) for i in range(4)]
    first = hp_study(url, "random", trials, config_values={"study.sampler": {"name": "random"}})
    second = hp_study(url, "tpe", trials, space={"lr": {"low": 1e-4, "high": 0.5, "log": True}})
    loaded = [load_study_data(first), load_study_data(second)]
    assert strategy_comparisons(loaded) == ()
    note = why_no_strategy_comparison(loaded)
    assert note is not None and "'random' (random) and 'tpe' (tpe) differ in search_space.lr" in note
    assert why_no_strategy_comparison(loaded[:1]) is None


def test_samplers_none_of_whose_trials_completed_get_words_not_an_empty_figure(tmp_path):
    from optuna.trial import TrialState

    url = f"sqlite:///{tmp_path / 'pruned.db'}"
    trials = [hp_trial({"lr": 10 ** -(1 + i / 3)}, {"lr": LR}, val_loss=[2.0, 1.9], epochs_requested=6,
                       state=TrialState.PRUNED) for i in range(3)]
    studies = [hp_study(url, sampler, trials, config_values={"study.sampler": {"name": sampler}})
               for sampler in ("random", "tpe")]
    (section,) = [s for s in report_content(studies).sections if s.key == "strategies"]
    (panel,) = section.panels
    assert panel.figure is None
    assert panel.note == "No trial of these studies completed, so there is no best value to compare yet."
