"""The sweep view of real grid studies trained on digits: every record, finding and figure checked
against what the trials stored (computed here from Optuna's trials, not through the reports)."""

from __future__ import annotations

import html
import statistics

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bench.synthetic import add_synthetic_study
from hpstudy.reports import figures_for
from hpstudy.reports.sections import report_content
from hpstudy.reports.study_data import load_study_data
from hpstudy.reports.sweep_findings import sweep_findings
from hpstudy.reports.sweeps import MAX_VALUES, sweep_view
from hpstudy.study import trial_attrs
from tests.reports_tests import stored
from tests.reports_tests.builders import falling, hp_study, hp_trial
from tests.reports_tests.edge_studies import XSS


def load(url: str, name: str) -> optuna.Study:
    """Study ``name`` at ``url``."""
    return optuna.load_study(study_name=name, storage=url)


def traces(fig, **wanted):
    """The traces of ``fig`` whose attributes equal ``wanted``."""
    return [t for t in fig.data if all(getattr(t, k) == v for k, v in wanted.items())]


def test_lr_sweep_counts_divergence_and_chance_and_averages_the_stored_values(sweep_url):
    optuna_study = load(sweep_url, "lr-sweep")
    sweep = sweep_view(load_study_data(optuna_study))
    findings = sweep_findings(sweep)
    assert (sweep.param, sweep.series_param, sweep.log, sweep.categorical) == ("lr", None, True, False)
    assert sweep.x_values == tuple(sorted({t.params["lr"] for t in stored.finished(optuna_study)}))
    seen_diverged = seen_chance = 0
    for point in sweep.points:
        trials = stored.finished(optuna_study, lr=point.x)
        assert sorted(r.number for r in point.repeats) == sorted(t.number for t in trials)
        diverged = [t for t in trials if stored.diverged(t)]
        chance = [t for t in trials if stored.at_chance(t)]
        values = [t.value for t in stored.completed(trials)]
        assert (len(point.diverged), len(point.at_chance)) == (len(diverged), len(chance))
        assert point.final("val_loss", "best").values == pytest.approx(values), "best-epoch loss is the trial's value"
        line = next(line for line in findings if line.startswith(f"lr = {point.x:g}:"))
        if diverged:
            assert f"diverged in {len(diverged)} of {len(trials)} repeats" in line
        if chance:
            assert f"stuck at chance accuracy (0.10) in {len(chance)} of {len(trials)} repeats" in line
        if values:
            accuracies = [stored.at_best_epoch(t, "val_accuracy") for t in stored.completed(trials)]
            assert f"validation loss {stored.spread_text(values)}, accuracy {stored.spread_text(accuracies)}" in line
        seen_diverged += len(diverged)
        seen_chance += len(chance)
    assert seen_diverged and seen_chance, "the fixture shows both divergence and chance accuracy"
    means = {p.x: statistics.mean(t.value for t in stored.completed(stored.finished(optuna_study, lr=p.x)))
             for p in sweep.points if p.completed}
    best = min(means, key=means.get)
    assert any(line.startswith(f"Best: lr = {best:g}, validation loss") for line in findings)


def test_lr_sweep_figures_show_one_series_per_value_with_bands_and_marks(sweep_url):
    optuna_study = load(sweep_url, "lr-sweep")
    figures = figures_for([optuna_study])
    finals, curves = figures["sweep[lr-sweep]"], figures["sweep_curves[lr-sweep]"]
    learned = sorted({t.params["lr"] for t in stored.completed(stored.finished(optuna_study))})
    (best,) = traces(finals, name="at the best epoch", xaxis="x")
    assert list(best.x) == pytest.approx(learned), "x values are the swept values"
    for x, y, plus, minus in zip(best.x, best.y, best.error_y.array, best.error_y.arrayminus):
        values = [t.value for t in stored.completed(stored.finished(optuna_study, lr=x))]
        assert y == pytest.approx(statistics.mean(values))
        assert (y + plus, y - minus) == pytest.approx((max(values), min(values))), "error bars run min to max"
    diverged = [lr for lr in sorted({t.params["lr"] for t in stored.finished(optuna_study)})
                if any(stored.diverged(t) for t in stored.finished(optuna_study, lr=lr))]
    for marks in traces(finals, name="diverged repeats"):
        assert list(marks.x) == pytest.approx(diverged)
        assert list(marks.text) == [
            f"{sum(map(stored.diverged, stored.finished(optuna_study, lr=lr)))}/{len(stored.finished(optuna_study, lr=lr))} diverged"
            for lr in diverged
        ]
    assert len(traces(finals, name="diverged repeats")) == 2, "on the loss and the accuracy panel"
    assert finals.layout.xaxis.type == "log" and list(finals.layout.xaxis.tickvals) == pytest.approx(
        sorted({t.params["lr"] for t in stored.finished(optuna_study)})
    )
    drawn = [lr for lr in sorted({t.params["lr"] for t in stored.finished(optuna_study)})
             if not all(map(stored.diverged, stored.finished(optuna_study, lr=lr)))]
    for axis in ("x", "x2", "x3", "x4"):
        means = [t for t in curves.data if t.xaxis == axis and t.mode == "lines+markers"]
        assert sorted(t.name for t in means) == sorted(f"lr = {lr:g}" for lr in drawn), "one curve per value"
        assert len([t for t in curves.data if t.xaxis == axis and t.fill == "tonexty"]) == len(drawn), "a band each"
    lr = drawn[-1]
    kept = [t for t in stored.finished(optuna_study, lr=lr) if not stored.diverged(t)]
    (mean,) = [t for t in curves.data if t.xaxis == "x2" and t.name == f"lr = {lr:g}" and t.mode == "lines+markers"]
    assert list(mean.y) == pytest.approx(stored.per_epoch(kept, "val_loss", "mean"), abs=1e-6)
    index = curves.data.index(mean)
    high, low = curves.data[index - 2], curves.data[index - 1]
    assert list(low.y) == pytest.approx(stored.per_epoch(kept, "val_loss", "min"), abs=1e-6)
    assert list(high.y) == pytest.approx(stored.per_epoch(kept, "val_loss", "max"), abs=1e-6)


def test_two_params_draw_a_series_per_value_of_the_one_with_fewer_values(sweep_url):
    optuna_study = load(sweep_url, "lr-activation")
    sweep = sweep_view(load_study_data(optuna_study))
    assert (sweep.param, sweep.series_param, sweep.series_values) == ("lr", "activation", ("relu", "sigmoid"))
    for point in sweep.points:
        trials = stored.finished(optuna_study, lr=point.x, activation=point.series)
        assert [r.number for r in point.at_chance] == [t.number for t in trials if stored.at_chance(t)]
    assert any(point.at_chance for point in sweep.points)
    figures = figures_for([optuna_study])
    finals, curves = figures["sweep[lr-activation]"], figures["sweep_curves[lr-activation]"]
    findings = sweep_findings(sweep)
    for activation in ("relu", "sigmoid"):
        (best,) = traces(finals, name=f"activation = {activation}: at the best epoch", xaxis="x")
        means = {lr: statistics.mean(t.value for t in stored.completed(stored.finished(optuna_study, lr=lr, activation=activation)))
                 for lr in sorted({t.params["lr"] for t in stored.finished(optuna_study)})}
        assert list(best.x) == pytest.approx(list(means)) and list(best.y) == pytest.approx(list(means.values()))
        lowest = min(means, key=means.get)
        assert f"With activation = {activation} the best lr is {lowest:g} (validation loss" in " ".join(findings)
    pairs = {(t.params["lr"], t.params["activation"]) for t in stored.finished(optuna_study)}
    mean = {pair: statistics.mean(t.value for t in stored.completed(stored.finished(optuna_study, lr=pair[0], activation=pair[1])))
            for pair in pairs}
    best_lr, best_activation = min(mean, key=mean.get)
    (best_line,) = [line for line in findings if line.startswith("Best: ")]
    assert best_line.startswith(f"Best: lr = {best_lr:g} with activation = {best_activation}, validation loss")
    assert ("It is the largest lr swept" in best_line) == (best_lr == max(lr for lr, _ in pairs))
    row_titles = {a.text for a in curves.layout.annotations}
    assert {"activation = relu", "activation = sigmoid"} <= row_titles
    second_row = [t for t in curves.data if t.xaxis in ("x5", "x6", "x7", "x8") and t.mode == "lines+markers"]
    assert len(second_row) == 4 * 3, "the second row: 3 lr curves in each of the 4 panels"


def test_epochs_sweep_finds_where_validation_loss_is_lowest(sweep_url):
    optuna_study = load(sweep_url, "epochs-sweep")
    findings = sweep_findings(sweep_view(load_study_data(optuna_study)))
    longest = max(t.params["epochs"] for t in stored.finished(optuna_study))
    mean = stored.per_epoch(stored.finished(optuna_study, epochs=longest), "val_loss", "mean")
    lowest = min(range(len(mean)), key=mean.__getitem__)
    line = next(line for line in findings if line.startswith(f"epochs = {longest}: mean validation loss"))
    assert f"is lowest at epoch {lowest + 1} ({mean[lowest]:.3g})" in line
    rise = (mean[-1] - mean[lowest]) / mean[lowest]
    expected = "still falling" if lowest == len(mean) - 1 else "stays within 10%" if rise <= 0.1 else f"rising {rise:.0%}"
    assert expected in line
    last = {e: [stored.curve(t, "val_loss")[-1] for t in stored.finished(optuna_study, epochs=e)]
            for e in {t.params["epochs"] for t in stored.finished(optuna_study)}}
    best = min(last, key=lambda e: statistics.mean(last[e]))
    assert f"Validation loss at the last epoch is lowest for epochs = {best} ({stored.spread_text(last[best])})." in findings


def test_early_stopping_sweep_reports_epochs_run_against_requested(sweep_url):
    optuna_study = load(sweep_url, "patience-sweep")
    findings = sweep_findings(sweep_view(load_study_data(optuna_study)))
    stopped = 0
    for patience in (1, 3):
        trials = stored.completed(stored.finished(optuna_study, patience=patience))
        run = statistics.mean(t.user_attrs[trial_attrs.EPOCHS_RUN] for t in trials)
        requested = statistics.mean(t.user_attrs[trial_attrs.EPOCHS_REQUESTED] for t in trials)
        early = [t for t in trials if t.user_attrs[trial_attrs.END_REASON].startswith("early stopped")]
        at_stop = [stored.curve(t, "val_loss")[-1] for t in trials]
        assert (
            f"patience = {patience}: ran {run:.3g} of {requested:.3g} epochs on average (early stopped in {len(early)} "
            f"of {len(trials)} completed repeats); validation loss at the stop {stored.spread_text(at_stop)}"
        ) in " ".join(findings)
        stopped += len(early)
    assert stopped, "the fixture has trials that early stopping ended"


def test_one_categorical_param_without_repeats(sweep_url):
    optuna_study = load(sweep_url, "optimizer-once")
    sweep = sweep_view(load_study_data(optuna_study))
    assert sweep.categorical and sweep.x_values == ("sgd", "adam", "rmsprop"), "in the order of the choices"
    assert [len(p.repeats) for p in sweep.points] == [1, 1, 1]
    findings = sweep_findings(sweep)
    for trial in stored.finished(optuna_study):
        line = next(line for line in findings if line.startswith(f"optimizer = {trial.params['optimizer']}:"))
        assert f"validation loss {trial.value:.3g}, accuracy" in line and "over 1 completed repeat." in line
    finals = figures_for([optuna_study])["sweep[optimizer-once]"]
    assert list(finals.layout.xaxis.ticktext) == ["sgd", "adam", "rmsprop"]
    assert list(finals.layout.xaxis.tickvals) == [0, 1, 2]
    (best,) = traces(finals, name="at the best epoch", xaxis="x")
    assert best.mode == "markers", "no line between categories"


def test_a_sweep_where_every_trial_diverged_is_explained(sweep_url):
    optuna_study = load(sweep_url, "all-diverged")
    trials = stored.finished(optuna_study)
    assert trials and all(map(stored.diverged, trials))
    content = report_content([optuna_study])
    panels = {p.key: p for s in content.sections for p in s.panels}
    finals, curves = panels["sweep[all-diverged]"], panels["sweep_curves[all-diverged]"]
    assert curves.figure is None and curves.note == "No repeat recorded a finite loss, so there is no curve to draw."
    for lr in (1e8, 1e9):
        epochs = sorted({int(t.user_attrs[trial_attrs.END_REASON].split()[3]) for t in stored.finished(optuna_study, lr=lr)})
        at = f"at epoch {epochs[0]}" if len(epochs) == 1 else f"at epoch {epochs[0]} to {epochs[-1]}"
        assert f"lr = {lr:g}: diverged in 2 of 2 repeats ({at})." in finals.findings
    assert "No lr value completed a repeat without diverging: there is no best value." in finals.findings
    marks = traces(finals.figure, name="diverged repeats")
    assert [list(m.x) for m in marks] == [[1e8, 1e9]] * 2


def test_studies_that_are_not_sweeps_say_why(tmp_path):
    url = f"sqlite:///{tmp_path / 'not.db'}"
    wide = add_synthetic_study(url, "eight-params", n_trials=12, epochs=3)
    assert sweep_view(load_study_data(wide)).note.startswith("Not a sweep: the study searches 8 parameters")
    lr = FloatDistribution(1e-4, 1e-1, log=True)
    ranged = [hp_trial({"lr": 10 ** -(1 + i / 7)}, {"lr": lr}, val_loss=falling(2.0, 0.3, 3)) for i in range(4)]
    note = sweep_view(load_study_data(hp_study(url, "ranged", ranged))).note
    assert note.startswith("Not a sweep: lr is drawn from a continuous range, so no two trials share a value")
    epochs = IntDistribution(1, 40)
    many = [hp_trial({"epochs": e}, {"epochs": epochs}, val_loss=falling(2.0, 0.3, 3)) for e in range(1, MAX_VALUES + 2)]
    note = sweep_view(load_study_data(hp_study(url, "many", many, space={"epochs": {"low": 1, "high": 40}}))).note
    assert note.startswith(f"Not drawn as a sweep: the trials took too many different values (epochs {MAX_VALUES + 1})")
    seeds = CategoricalDistribution([0, 1, 2])
    repeats = [hp_trial({"seed": s}, {"seed": seeds}, val_loss=falling(2.0, 0.3, 3)) for s in (0, 1, 2)]
    note = sweep_view(load_study_data(hp_study(url, "seeds", repeats, space={"seed": [0, 1, 2]}))).note
    assert note == "Not a sweep: only the repeat index seed varies between trials."
    assert not [s for s in report_content([wide]).sections if s.key.startswith("sweep")], "no sweep section"


def test_variants_are_labelled_by_name_with_what_they_stand_for(tmp_path):
    variants = {"sgd_momentum": {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05}, XSS[0]: {"optimizer": "adam"}}
    dists = {"variant": CategoricalDistribution(list(variants)), "seed": CategoricalDistribution([0, 1])}
    pairs = [(name, seed) for name in variants for seed in (0, 1)]
    trials = [hp_trial({"variant": v, "seed": s}, dists, val_loss=falling(2.0, 0.3 + i / 10, 3)) for i, (v, s) in enumerate(pairs)]
    optuna_study = hp_study(f"sqlite:///{tmp_path / 'v.db'}", "variants", trials, space={"variant": list(variants), "seed": [0, 1]},
                     config_values={"variants": variants})
    sweep = sweep_view(load_study_data(optuna_study))
    assert sweep.categorical and sweep.x_values == tuple(variants)
    findings = sweep_findings(sweep)
    for name in variants:
        values = [t.value for t in stored.finished(optuna_study, variant=name)]
        assert f"variant = {name}: at the best epoch validation loss {stored.spread_text(values)}" in " ".join(findings)
    panels = {p.key: p for s in report_content([optuna_study]).sections for p in s.panels}
    finals = panels["sweep[variants]"]
    assert finals.note == f"Variants: sgd_momentum: optimizer = sgd, momentum = 0.9, lr = 0.05; {XSS[0]}: optimizer = adam."
    assert list(finals.figure.layout.xaxis.ticktext) == ["sgd_momentum", html.escape(XSS[0], quote=False)]
    (best,) = traces(finals.figure, name="at the best epoch", xaxis="x")
    assert best.customdata[0][0] == "variant = sgd_momentum (optimizer = sgd, momentum = 0.9, lr = 0.05)", "bundle in the hover"
    assert best.customdata[1][0] == html.escape(f"variant = {XSS[0]} (optimizer = adam)", quote=False)


@pytest.mark.parametrize(("slope", "hint"), [(1.0, None), (-1.0, "It is the largest dropout swept: a larger one may do better.")])
def test_the_best_value_at_an_end_of_the_sweep_is_pointed_out_unless_the_param_ends_there(tmp_path, slope, hint):
    dists = {"dropout": CategoricalDistribution([0.0, 0.2, 0.5])}
    trials = [hp_trial({"dropout": p}, dists, val_loss=falling(2.0, 0.5 + slope * p / 2, 3)) for p in (0.0, 0.2, 0.5)]
    findings = sweep_findings(sweep_view(load_study_data(hp_study(f"sqlite:///{tmp_path / 'd.db'}", "d", trials,
                                                                  space={"dropout": [0.0, 0.2, 0.5]}))))
    (best,) = [line for line in findings if line.startswith("Best: ")]
    assert best.startswith(f"Best: dropout = {0 if slope > 0 else 0.5},")
    assert (hint in best) if hint else "It is the" not in best, "dropout cannot go below 0"
