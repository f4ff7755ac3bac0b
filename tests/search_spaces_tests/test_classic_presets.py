"""The classic-experiment presets: what each one sweeps, and that each runs end to end (quick) on digits."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from hpstudy.search_spaces.presets import PRESETS
from hpstudy.study import trial_attrs
from hpstudy.study.config import load_config
from hpstudy.study.errors import UserError
from hpstudy.study.runner import run_study

SWEEPS = {
    "lr-sweep": {"lr", "optimizer"},
    "batch-size-sweep": {"batch_size", "lr_scaling"},
    "epochs-sweep": {"epochs"},
    "initializer-compare": {"variant", "activation"},
    "activation-compare": {"activation"},
    "optimizer-compare": {"variant"},
    "batchnorm-dropout": {"batch_norm", "dropout"},
    "early-stopping": {"variant", "plateau"},
}


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_classic_experiments_are_repeated_grids_of_one_or_two_params(name):
    cfg = load_config(preset=name)
    assert cfg.study.sampler.name == "grid" and cfg.study.pruner.name == "none"
    assert set(cfg.search_space.searched) - {"seed"} == SWEEPS[name]
    assert cfg.search_space.specs["seed"].choices == (0, 1, 2)
    assert cfg.study.n_trials == cfg.grid_size(), "the whole grid, every point three times"
    assert cfg.data.dataset == "digits"


def test_lr_sweep_covers_the_course_values_with_plain_sgd_and_adam():
    cfg = load_config(preset="lr-sweep")
    assert cfg.search_space.specs["lr"].choices == (1.0, 0.1, 0.01, 0.001, 0.0001)
    assert cfg.search_space.specs["optimizer"].choices == ("sgd", "adam")
    assert cfg.search_space.specs["momentum"].value == 0.0


def test_initializer_compare_has_both_normal_stds_and_both_activations():
    cfg = load_config(preset="initializer-compare")
    stds = {v.get("init_std") for v in cfg.variants.values() if v.get("initializer") == "normal"}
    assert stds == {1.0, 0.01}
    assert set(cfg.search_space.specs["activation"].choices) == {"sigmoid", "relu"}


def test_repeats_and_quick():
    assert load_config(preset="lr-sweep", repeats=5).study.n_trials == 5 * 10
    quick = load_config(preset="lr-sweep", quick=True)
    assert quick.data.train_subset == 400 and quick.search_space.specs["epochs"].value == 4
    with pytest.raises(UserError, match="--repeats repeats grid points"):
        load_config(preset="default", repeats=2)
    with pytest.raises(UserError, match="--quick shrinks a preset"):
        load_config(__file__.replace(".py", ".yaml"), quick=True)


@pytest.mark.parametrize("name", sorted(set(PRESETS) - set(SWEEPS)))
def test_every_search_preset_runs_end_to_end_quickly(name, sqlite_url):
    """The sweeps run end to end in tests/e2e/test_preset_reports.py, with their reports."""
    cfg = load_config(preset=name, quick=True, values={"storage": sqlite_url, "train.device": "cpu"})
    result = run_study(cfg)
    trials = optuna.load_study(study_name=cfg.study.name, storage=sqlite_url).get_trials()
    assert result.finished == len(trials) == cfg.study.n_trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.FAIL)]
    for trial in trials:
        searched = set(cfg.search_space.searched)
        assert searched <= set(trial.params) | ({"hidden_units"} if cfg.model.per_layer_units else set())
        assert trial.user_attrs[trial_attrs.CURVE]["val_loss"], "every trial trained"


def test_variants_set_their_bundle_on_each_trial(sqlite_url):
    cfg = load_config(preset="optimizer-compare", quick=True, values={"storage": sqlite_url, "train.device": "cpu"})
    run_study(cfg)
    for trial in optuna.load_study(study_name=cfg.study.name, storage=sqlite_url).get_trials():
        bundle = cfg.variants[trial.params["variant"]]
        hyperparams = trial.user_attrs[trial_attrs.HYPERPARAMS]
        assert all(hyperparams[key] == value for key, value in bundle.items())
        assert trial.user_attrs[trial_attrs.CURVE]["lr"][0] == pytest.approx(bundle["lr"])


def test_linear_lr_scaling_reaches_the_optimizer(sqlite_url):
    cfg = load_config(preset="batch-size-sweep", quick=True, values={"storage": sqlite_url, "train.device": "cpu"})
    run_study(cfg)
    for trial in optuna.load_study(study_name=cfg.study.name, storage=sqlite_url).get_trials():
        used = trial.user_attrs[trial_attrs.CURVE]["lr"][0]
        scale = trial.params["batch_size"] / 64 if trial.params["lr_scaling"] == "linear" else 1.0
        assert used == pytest.approx(0.01 * scale)


def test_early_stopping_params_stop_trials(sqlite_url):
    cfg = load_config(preset="early-stopping", quick=True, values={"storage": sqlite_url, "train.device": "cpu"})
    run_study(cfg)
    trials = optuna.load_study(study_name=cfg.study.name, storage=sqlite_url).get_trials()
    off = [t for t in trials if t.params["variant"] == "off"]
    assert all(t.user_attrs[trial_attrs.EPOCHS_RUN] == 40 for t in off)
    stopped = [t for t in trials if t.user_attrs[trial_attrs.END_REASON].startswith("early stopped")]
    assert stopped, "patience 2 stops once validation loss turns up"
    assert all(t.params["variant"] == "patience_2" and t.user_attrs[trial_attrs.EPOCHS_RUN] < 40 for t in stopped)
