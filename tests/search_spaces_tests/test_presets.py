"""Presets: each is a valid config, and the default one searches what the issue asks for."""

from __future__ import annotations

import pytest

from hpstudy.search_spaces.params import FloatParam
from hpstudy.search_spaces.presets import DEFAULT_PRESET, PRESETS, get_preset
from hpstudy.study.config import load_config
from hpstudy.study.errors import UserError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config(name):
    cfg = load_config(preset=name)
    assert cfg.search_space.searched, "a preset searches something"
    assert PRESETS[name].description


def test_default_preset_searches_the_core_params_on_digits():
    cfg = load_config()
    assert cfg == load_config(preset=DEFAULT_PRESET)
    searched = set(cfg.search_space.searched)
    assert {"lr", "batch_size", "epochs", "n_layers", "hidden_units", "dropout", "initializer", "optimizer"} <= searched
    lr = cfg.search_space.specs["lr"]
    assert isinstance(lr, FloatParam) and lr.log
    assert cfg.data.dataset == "digits" and cfg.model.kind == "mlp"
    assert cfg.study.sampler.name == "tpe" and cfg.study.pruner.name == "median"
    assert cfg.study.n_trials == 20 and cfg.study.seed is not None


def test_unknown_preset_is_a_user_error():
    with pytest.raises(UserError, match="unknown preset 'defualt'; did you mean 'default'"):
        get_preset("defualt")
