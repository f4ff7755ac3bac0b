"""SearchSpace: parsing, sampling through real Optuna trials, defaults, per-layer widths, grids."""

from __future__ import annotations

import optuna
import pytest

from hpstudy.search_spaces.catalog import ACTIVATIONS, INITIALIZERS, OPTIMIZERS, PARAMETERS
from hpstudy.search_spaces.space import SearchSpace
from hpstudy.study.errors import UserError

EVERY_PARAM = {
    "lr": {"low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": [16, 32],
    "epochs": {"low": 1, "high": 5},
    "n_layers": {"low": 1, "high": 3},
    "hidden_units": {"low": 8, "high": 64},
    "dropout": {"low": 0.0, "high": 0.5},
    "initializer": list(INITIALIZERS),
    "init_std": {"low": 0.001, "high": 1.0, "log": True},
    "optimizer": list(OPTIMIZERS),
    "activation": list(ACTIVATIONS),
    "batch_norm": [True, False],
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "momentum": {"low": 0.5, "high": 0.99},
    "channels": [4, 8],
    "kernel_size": [3, 5],
    "stride": [1, 2],
    "n_conv": {"low": 1, "high": 2},
    "lr_scaling": ["none", "linear"],
    "lr_reference_batch": [32, 64],
    "patience": {"low": 1, "high": 5},
    "min_delta": {"low": 0.0, "high": 0.1},
    "plateau": [True, False],
    "variant": ["fast", "slow"],
    "seed": {"low": 0, "high": 3},
}
VARIANTS = {"fast": {"weight_decay": 0.0}, "slow": {"weight_decay": 0.0}}


def test_every_canonical_name_is_a_trial_param_when_searched():
    space = SearchSpace.from_dict({k: v for k, v in EVERY_PARAM.items() if k != "weight_decay"})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    hp = space.sample(trial, variants=VARIANTS)
    assert set(trial.params) == set(PARAMETERS) - {"weight_decay"}  # set by the variants here
    assert hp.lr == trial.params["lr"] and hp.optimizer == trial.params["optimizer"]
    assert len(hp.hidden_units) == trial.params["n_layers"]


def test_unsearched_params_take_fixed_or_default_values_and_are_not_trial_params():
    space = SearchSpace.from_dict({"lr": {"low": 1e-3, "high": 1e-1}, "dropout": 0.3})
    trial = optuna.create_study().ask()
    hp = space.sample(trial)
    assert set(trial.params) == {"lr"}
    assert hp.dropout == 0.3
    assert hp.optimizer == PARAMETERS["optimizer"].default
    assert hp.hidden_units == (PARAMETERS["hidden_units"].default,) * PARAMETERS["n_layers"].default


def test_per_layer_widths_are_separate_params():
    space = SearchSpace.from_dict({"n_layers": 3, "hidden_units": {"low": 8, "high": 512, "log": True}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    trial = study.ask()
    hp = space.sample(trial, per_layer_units=True)
    assert {"hidden_units_l0", "hidden_units_l1", "hidden_units_l2"} <= set(trial.params)
    assert "hidden_units" not in trial.params
    assert hp.hidden_units == tuple(trial.params[f"hidden_units_l{i}"] for i in range(3))


def test_round_trip_and_equality():
    space = SearchSpace.from_dict(EVERY_PARAM)
    again = SearchSpace.from_dict(space.to_dict())
    assert again == space and hash(again) == hash(space)
    assert SearchSpace.from_dict({"lr": 0.1}) != space


def test_unknown_parameter_suggests_the_nearest_name():
    with pytest.raises(UserError, match="unknown parameter 'learning_rate'"):
        SearchSpace.from_dict({"learning_rate": 0.1})
    with pytest.raises(UserError, match="did you mean 'dropout'"):
        SearchSpace.from_dict({"droput": 0.1})


def test_not_a_mapping_is_refused():
    with pytest.raises(UserError, match="must be a mapping"):
        SearchSpace.from_dict(["lr"])


def test_grid_of_stepped_and_categorical_params():
    space = SearchSpace.from_dict({"lr": [0.1, 0.01], "epochs": {"low": 2, "high": 6, "step": 2}, "dropout": 0.1})
    assert space.grid() == {"lr": [0.1, 0.01], "epochs": [2, 4, 6]}


def test_grid_refuses_a_continuous_range():
    with pytest.raises(UserError, match="grid sampler needs choices or a step for lr"):
        SearchSpace.from_dict({"lr": {"low": 0.001, "high": 0.1}}).grid()


def test_a_variant_brings_in_its_bundle():
    space = SearchSpace.from_dict({"variant": ["plain", "momentum"], "epochs": 2})
    variants = {"plain": {"optimizer": "sgd", "momentum": 0.0, "lr": 0.1}, "momentum": {"optimizer": "sgd", "momentum": 0.9}}
    for name in ("plain", "momentum"):
        trial = optuna.trial.FixedTrial({"variant": name})
        hp = space.sample(trial, variants=variants)
        assert hp.variant == name and hp.optimizer == "sgd" and hp.momentum == variants[name]["momentum"]
    assert space.sample(optuna.trial.FixedTrial({"variant": "plain"}), variants=variants).lr == 0.1


def test_linear_lr_scaling():
    from hpstudy.search_spaces.hyperparams import Hyperparams

    assert Hyperparams.from_flat({"lr": 0.01, "batch_size": 256}).effective_lr == 0.01
    scaled = Hyperparams.from_flat({"lr": 0.01, "batch_size": 256, "lr_scaling": "linear", "lr_reference_batch": 64})
    assert scaled.effective_lr == pytest.approx(0.04)


@pytest.mark.parametrize(("space", "kind", "variants", "reason"), [
    ({"momentum": {"low": 0.5, "high": 0.9}, "optimizer": "adam"}, "mlp", None,
     "momentum is searched, but only optimizer sgd or rmsprop uses it"),
    ({"momentum": {"low": 0.5, "high": 0.9}}, "mlp", None, "momentum is searched"),  # the default optimizer is adam
    ({"init_std": {"low": 0.01, "high": 1.0, "log": True}, "initializer": ["xavier_uniform", "orthogonal"]}, "mlp", None,
     "init_std is searched, but only initializer normal uses it"),
    ({"lr_reference_batch": [32, 256]}, "mlp", None, "lr_reference_batch is searched, but only lr_scaling linear"),
    ({"channels": [8, 16]}, "mlp", None, "channels is searched, but only a CNN uses it and model.kind is mlp"),
])
def test_a_searched_param_that_changes_no_trial_is_named(space, kind, variants, reason):
    (found,) = SearchSpace.from_dict(space).inert(model_kind=kind, variants=variants)
    assert found.startswith(reason)


@pytest.mark.parametrize(("space", "kind", "variants"), [
    ({"momentum": {"low": 0.5, "high": 0.9}, "optimizer": ["adam", "sgd"]}, "mlp", None),
    ({"momentum": {"low": 0.5, "high": 0.9}, "variant": ["a", "b"]}, "mlp", {"a": {"optimizer": "sgd"}, "b": {}}),
    ({"init_std": {"low": 0.01, "high": 1.0, "log": True}, "initializer": "normal"}, "mlp", None),
    ({"channels": [8, 16]}, "cnn", None),
])
def test_a_param_some_trial_uses_is_not(space, kind, variants):
    assert SearchSpace.from_dict(space).inert(model_kind=kind, variants=variants) == ()
