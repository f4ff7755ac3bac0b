"""The parameter count worked out without torch equals that of the model ``build_model`` builds,
and the dataset shapes the size check assumes are the ones the data loader gives."""

from __future__ import annotations

import itertools

import pytest

from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.study.config import load_config
from hpstudy.study.data import load_splits
from hpstudy.study.model_shapes import parameter_count
from hpstudy.study.model_size import DATASET_SHAPES
from hpstudy.study.models import build_model

SHAPES = [(1, 8, 8), (3, 7, 5), (1, 28, 28), (3, 32, 32)]


def built_and_counted(kind, input_shape, **values):
    hp = Hyperparams.from_flat({"dropout": 0.1, **values})
    model = build_model(hp, kind=kind, input_shape=input_shape, n_classes=10)
    counted = parameter_count(kind=kind, input_shape=input_shape, n_classes=10, hidden_units=list(hp.hidden_units),
                              batch_norm=hp.batch_norm, channels=hp.channels, kernel_size=hp.kernel_size,
                              stride=hp.stride, n_conv=hp.n_conv)
    return sum(p.numel() for p in model.parameters()), counted


@pytest.mark.parametrize(("shape", "n_layers", "batch_norm"), itertools.product(SHAPES, (0, 1, 3), (False, True)))
def test_mlp_count_is_the_built_models(shape, n_layers, batch_norm):
    built, counted = built_and_counted("mlp", shape, n_layers=n_layers, hidden_units=24, batch_norm=batch_norm)
    assert built == counted


@pytest.mark.parametrize(("shape", "kernel_size", "stride", "n_conv"),
                         itertools.product(SHAPES, (1, 2, 3, 4), (1, 2, 3), (0, 1, 4)))
def test_cnn_count_is_the_built_models(shape, kernel_size, stride, n_conv):
    built, counted = built_and_counted("cnn", shape, channels=3, kernel_size=kernel_size, stride=stride,
                                       n_conv=n_conv, n_layers=1, hidden_units=8, batch_norm=n_conv == 1)
    assert built == counted


def test_the_digits_shape_is_what_the_loader_gives():
    splits = load_splits(load_config().data, seed=0)
    assert (splits.input_shape, splits.n_classes) == DATASET_SHAPES["digits"]
