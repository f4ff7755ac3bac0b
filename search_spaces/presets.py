"""Named study configs that run as they are: ``hpstudy run --preset NAME``; ``hpstudy spaces`` lists them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from hpstudy.search_spaces.catalog import INITIALIZERS, OPTIMIZERS
from hpstudy.study.errors import UserError, did_you_mean

DEFAULT_PRESET = "default"


@dataclass(frozen=True)
class Preset:
    """A named, documented config. ``config`` is a partial config: defaults fill the rest."""

    name: str
    description: str
    config: Mapping[str, Any]


def _preset(name: str, description: str, config: dict[str, Any]) -> Preset:
    return Preset(name, description, MappingProxyType(config))


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

_PRESET_LIST = [
    _preset(
        DEFAULT_PRESET,
        "MLP on the bundled digits: TPE over lr, batch size, epochs, depth, width, dropout, "
        "initializer and optimizer; median pruning; 20 trials",
        {
            "study": {
                "name": "digits-mlp",
                "n_trials": 20,
                "seed": 0,
                "sampler": {"name": "tpe"},
                "pruner": {"name": "median", "options": {"n_startup_trials": 5, "n_warmup_steps": 4}},
            },
            "data": {"dataset": "digits"},
            "model": {"kind": "mlp"},
            "search_space": _MLP_SPACE,
        },
    ),
    _preset(
        "digits-cnn",
        "small CNN on the bundled digits: TPE over channels, kernel size, stride, conv depth, "
        "dropout and lr; median pruning; 20 trials",
        {
            "study": {
                "name": "digits-cnn",
                "n_trials": 20,
                "seed": 0,
                "pruner": {"name": "median", "options": {"n_startup_trials": 5, "n_warmup_steps": 3}},
            },
            "data": {"dataset": "digits"},
            "model": {"kind": "cnn"},
            "search_space": {
                "lr": {"low": 1e-4, "high": 3e-2, "log": True},
                "batch_size": 64,
                "epochs": {"low": 5, "high": 20},
                "channels": [8, 16, 32],
                "kernel_size": [3, 5],
                "stride": [1, 2],
                "n_conv": {"low": 1, "high": 2},
                "n_layers": 1,
                "hidden_units": 64,
                "dropout": {"low": 0.0, "high": 0.5},
            },
        },
    ),
]

PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in _PRESET_LIST})


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or a UserError that lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(
            f"unknown preset '{name}'{did_you_mean(name, PRESETS)}; `hpstudy spaces` lists them"
        ) from None
