"""Named study configs that run as they are: ``hpstudy run --preset NAME``; ``hpstudy spaces`` lists them.

Besides the default search there are the classic experiments new practitioners learn from (a
learning-rate sweep, batch sizes, epochs, initializers, activations, optimizers, batch norm and
dropout, early stopping), each a grid repeated over seeds (``--repeats R``), and two TPE searches.
Every preset runs offline on the bundled digits; ``--set data.dataset=mnist`` and the like move it.
``quick`` is a smaller version of the same experiment (``--quick``) for smoke runs and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hpstudy.search_spaces.catalog import INITIALIZERS, OPTIMIZERS
from hpstudy.study.errors import UserError, did_you_mean, quote
from hpstudy.study.optuna_parts import PRUNER_DEFAULTS

DEFAULT_PRESET = "default"
REPEATS = 3  # seeds per grid point in the classic experiments
QUICK_DATA = {"train_subset": 400, "val_subset": 200}


@dataclass(frozen=True)
class Preset:
    """A named, documented config. ``config`` is a partial config: defaults fill the rest.
    ``quick`` holds dotted overrides that shrink it to a smoke run of the same experiment."""

    name: str
    description: str
    config: Mapping[str, Any]
    quick: Mapping[str, Any] = field(default_factory=dict)


def _preset(name: str, description: str, config: dict[str, Any], quick: dict[str, Any]) -> Preset:
    return Preset(name, description, MappingProxyType(config), MappingProxyType({"data": QUICK_DATA, **quick}))


def _sweep(name: str, description: str, space: dict[str, Any], *, quick_space: dict[str, Any],
           variants: dict[str, dict[str, Any]] | None = None, data: dict[str, Any] | None = None) -> Preset:
    """A classic experiment: a grid over ``space`` (fixed values fill the rest) repeated over seeds,
    no pruning, so every point runs its full course."""
    config: dict[str, Any] = {
        "study": {"name": name, "seed": 0, "sampler": {"name": "grid"}, "pruner": {"name": "none"}},
        "data": {"dataset": "digits", **(data or {})},
        "model": {"kind": "mlp"},
        "search_space": {**_CLASSIC_BASE, **space, "seed": list(range(REPEATS))},
    }
    if variants:
        config["variants"] = variants
    quick = {"search_space": {**config["search_space"], **quick_space, "seed": [0]}}
    return _preset(name, description, config, quick)


def _search(name: str, description: str, space: dict[str, Any], *, study_name: str, n_trials: int,
            kind: str = "mlp") -> Preset:
    """A TPE search with the default median pruning; quick: 4 trials of 2-3 epochs."""
    config = {
        "study": {"name": study_name, "n_trials": n_trials, "seed": 0, "sampler": {"name": "tpe"}, "pruner": _MEDIAN},
        "data": {"dataset": "digits"},
        "model": {"kind": kind},
        "search_space": space,
    }
    return _preset(name, description, config, {"study": {"n_trials": 4}, "search_space.epochs": {"low": 2, "high": 3}})


#: The default pruning, its options written out so the stored config shows them.
_MEDIAN = {"name": "median", "options": dict(PRUNER_DEFAULTS["median"])}

#: The fixed model of the classic experiments: what each sweep does not vary.
_CLASSIC_BASE: dict[str, Any] = {
    "lr": 1e-3, "batch_size": 64, "epochs": 20, "n_layers": 2, "hidden_units": 128, "dropout": 0.0,
    "optimizer": "adam", "momentum": 0.0, "activation": "relu", "initializer": "default",
}

_MLP_SPACE: dict[str, Any] = {
    "lr": {"low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": [32, 64, 128, 256],
    "epochs": {"low": 10, "high": 40},
    "n_layers": {"low": 1, "high": 3},
    "hidden_units": {"low": 32, "high": 256, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "initializer": list(INITIALIZERS),
    "optimizer": list(OPTIMIZERS),
}
_STOPPING = {
    "off": {"patience": 60},  # as long as the run: never stops early
    "patience_2": {"patience": 2, "min_delta": 0.0},
    "patience_5": {"patience": 5, "min_delta": 0.0},
    "patience_10": {"patience": 10, "min_delta": 0.0},
    "patience_5_delta_0.01": {"patience": 5, "min_delta": 0.01},
}
_TUNED_LRS = {"sgd": 0.1, "sgd_momentum": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}

_PRESET_LIST = [
    _search(
        DEFAULT_PRESET,
        "MLP on the bundled digits: TPE over lr, batch size, epochs, depth, width, dropout, "
        "initializer and optimizer; median pruning; 20 trials",
        _MLP_SPACE,
        study_name="digits-mlp",
        n_trials=20,
    ),
    _sweep(
        "lr-sweep",
        "learning rate 1 .. 0.0001 with plain SGD and with Adam; the largest rates diverge or stall at chance",
        {"lr": [1.0, 0.1, 0.01, 0.001, 0.0001], "optimizer": ["sgd", "adam"]},
        quick_space={"lr": [1.0, 0.01], "epochs": 4},
    ),
    _sweep(
        "batch-size-sweep",
        "batch size 16 .. 1024 with SGD+momentum at lr 0.01, fixed and scaled linearly with the batch size (reference 64)",
        {"batch_size": [16, 32, 64, 128, 256, 512, 1024], "lr_scaling": ["none", "linear"],
         "optimizer": "sgd", "momentum": 0.9, "lr": 0.01, "lr_reference_batch": 64},
        quick_space={"batch_size": [32, 256], "epochs": 3},
    ),
    _sweep(
        "epochs-sweep",
        "5 .. 100 epochs of a wide MLP on 300 training images: where validation loss turns up while training loss falls",
        {"epochs": [5, 10, 20, 40, 60, 80, 100], "hidden_units": 256},
        quick_space={"epochs": [5, 30]},
        data={"train_subset": 300},
    ),
    _sweep(
        "initializer-compare",
        "default, normal (std 1 and 0.01), Xavier, He/Kaiming and orthogonal initialization, each with sigmoid and ReLU (3 hidden layers, SGD+momentum)",
        {"variant": ["default", "normal_std1", "normal_std0.01", "xavier_uniform", "kaiming_normal", "orthogonal"],
         "activation": ["sigmoid", "relu"], "n_layers": 3, "optimizer": "sgd", "momentum": 0.9, "lr": 0.05, "epochs": 15},
        quick_space={"variant": ["default", "normal_std1"], "epochs": 3},
        variants={
            "default": {"initializer": "default"},
            "normal_std1": {"initializer": "normal", "init_std": 1.0},
            "normal_std0.01": {"initializer": "normal", "init_std": 0.01},
            "xavier_uniform": {"initializer": "xavier_uniform"},
            "kaiming_normal": {"initializer": "kaiming_normal"},
            "orthogonal": {"initializer": "orthogonal"},
        },
    ),
    _sweep(
        "activation-compare",
        "sigmoid, tanh, ReLU, leaky ReLU and GELU in a 3-layer MLP trained with SGD+momentum",
        {"activation": ["sigmoid", "tanh", "relu", "leaky_relu", "gelu"], "n_layers": 3, "optimizer": "sgd",
         "momentum": 0.9, "lr": 0.05, "epochs": 15},
        quick_space={"activation": ["sigmoid", "relu"], "epochs": 3},
    ),
    _sweep(
        "optimizer-compare",
        "SGD (lr 0.1), SGD+momentum 0.9 (lr 0.05), Adam (lr 0.001), AdamW (lr 0.001, weight decay 0.01), "
        "RMSprop (lr 0.001): each at a fixed good lr for it",
        {"variant": list(_TUNED_LRS)},
        quick_space={"variant": ["sgd", "adam"], "epochs": 3},
        variants={
            "sgd": {"optimizer": "sgd", "momentum": 0.0, "lr": _TUNED_LRS["sgd"]},
            "sgd_momentum": {"optimizer": "sgd", "momentum": 0.9, "lr": _TUNED_LRS["sgd_momentum"]},
            "adam": {"optimizer": "adam", "lr": _TUNED_LRS["adam"]},
            "adamw": {"optimizer": "adamw", "lr": _TUNED_LRS["adamw"], "weight_decay": 0.01},
            "rmsprop": {"optimizer": "rmsprop", "momentum": 0.0, "lr": _TUNED_LRS["rmsprop"]},
        },
    ),
    _sweep(
        "batchnorm-dropout",
        "MLP in-100-100-10 (Linear, BatchNorm, ReLU, Dropout) with and without batch norm and dropout 0.5",
        {"batch_norm": [False, True], "dropout": [0.0, 0.5], "hidden_units": 100, "epochs": 30},
        quick_space={"epochs": 3},
    ),
    _sweep(
        "early-stopping",
        "early stopping off, or with patience 2, 5, 10 (min delta 0) or 5 (min delta 0.01), each with "
        "ReduceLROnPlateau off and on; 60 epochs on 300 training images: epochs saved and final loss",
        {"variant": list(_STOPPING), "plateau": [False, True], "epochs": 60, "hidden_units": 256},
        quick_space={"variant": ["off", "patience_2"], "epochs": 40},
        variants=_STOPPING,
        data={"train_subset": 300},
    ),
    _search(
        "cnn",
        "small CNN on the bundled digits (8x8; MNIST or CIFAR-10 layout with --set data.dataset=...): TPE over "
        "channels, kernel size 3/5, stride 1/2, conv depth, dropout and lr; median pruning; 20 trials",
        {
            "lr": {"low": 1e-4, "high": 3e-2, "log": True}, "batch_size": 64, "epochs": {"low": 5, "high": 20},
            "channels": [8, 16, 32], "kernel_size": [3, 5], "stride": [1, 2], "n_conv": {"low": 1, "high": 3},
            "n_layers": 1, "hidden_units": 64, "dropout": {"low": 0.0, "high": 0.5},
        },
        study_name="cnn",
        n_trials=20,
        kind="cnn",
    ),
    _search(
        "mlp-mnist",
        "the full MLP search of the mission (lr, batch size, epochs, hidden units, dropout, initializer) sized for "
        "MNIST (--set data.dataset=mnist); digits offline by default; TPE, median pruning, 30 trials",
        {
            "lr": {"low": 1e-4, "high": 1e-1, "log": True}, "batch_size": [32, 64, 128, 256],
            "epochs": {"low": 5, "high": 30}, "n_layers": 2, "hidden_units": {"low": 32, "high": 512, "log": True},
            "dropout": {"low": 0.0, "high": 0.5}, "initializer": list(INITIALIZERS),
        },
        study_name="digits-mlp-full",
        n_trials=30,
    ),
    _preset(
        "search-strategies",
        "a gridded MLP space (lr x width x dropout x batch size, 168 points) for `hpstudy compare`: grid vs random "
        "vs TPE at 30 trials each",
        {
            "study": {"name": "strategies", "n_trials": 30, "seed": 0, "pruner": {"name": "none"}},
            "data": {"dataset": "digits"},
            "model": {"kind": "mlp"},
            "search_space": {
                "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "hidden_units": [32, 64, 128, 256],
                "dropout": [0.0, 0.2, 0.4], "batch_size": [32, 128], "epochs": 10, "n_layers": 1, "optimizer": "adam",
            },
        },
        {"study": {"n_trials": 6}, "search_space.epochs": 2},
    ),
]

PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in _PRESET_LIST})


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or a UserError that lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(
            f"unknown preset {quote(name)}{did_you_mean(name, PRESETS)}; `hpstudy spaces` lists them"
        ) from None
