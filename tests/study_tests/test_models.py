"""Models: shapes, layers, initializers and activations, each checked on real modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpstudy.search_spaces.catalog import ACTIVATIONS as ACTIVATION_NAMES
from hpstudy.search_spaces.catalog import INITIALIZERS
from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.study.models import (
    ACTIVATIONS,
    INITIALIZER_NAMES,
    Dropout,
    build_model,
    dropout_mask,
    dropout_threshold,
    init_weights,
)


def hp(**values):
    return Hyperparams.from_flat(values)


def test_catalog_and_model_agree_on_names():
    assert set(INITIALIZER_NAMES) == set(INITIALIZERS)
    assert set(ACTIVATIONS) == set(ACTIVATION_NAMES)


def test_mlp_layers_follow_linear_bn_activation_dropout():
    model = build_model(hp(n_layers=2, hidden_units=32, batch_norm=True, dropout=0.2, activation="tanh"),
                        kind="mlp", input_shape=(1, 8, 8), n_classes=10)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "Tanh", "Dropout",
                     "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear"]
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)


def test_mlp_per_layer_widths():
    model = build_model(hp(n_layers=3, hidden_units_l0=40, hidden_units_l1=20, hidden_units_l2=10),
                        kind="mlp", input_shape=(1, 8, 8), n_classes=10)
    widths = [m.out_features for m in model if isinstance(m, nn.Linear)]
    assert widths == [40, 20, 10, 10]


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize(("kernel", "stride", "n_conv"), [(3, 1, 2), (5, 2, 3), (3, 2, 1)])
def test_cnn_output_shape_for_every_input_layout(shape, kernel, stride, n_conv):
    model = build_model(hp(channels=4, kernel_size=kernel, stride=stride, n_conv=n_conv, n_layers=1,
                           hidden_units=16, batch_norm=True),
                        kind="cnn", input_shape=shape, n_classes=10)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4 * 2**i for i in range(n_conv)]
    assert all(c.kernel_size == (kernel, kernel) and c.stride == (stride, stride) for c in convs)
    model.eval()
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_normal_initializer_uses_the_configured_std():
    torch.manual_seed(0)
    model = build_model(hp(initializer="normal", init_std=0.5, hidden_units=256, n_layers=1),
                        kind="mlp", input_shape=(1, 16, 16), n_classes=10)
    weight = model[1].weight
    assert weight.std().item() == pytest.approx(0.5, rel=0.05)
    assert torch.count_nonzero(model[1].bias) == 0


def test_orthogonal_initializer_gives_orthonormal_rows():
    layer = nn.Sequential(nn.Linear(64, 32))
    init_weights(layer, "orthogonal")
    w = layer[0].weight
    assert torch.allclose(w @ w.T, torch.eye(32), atol=1e-5)


@pytest.mark.parametrize(("name", "expected_std"), [
    ("xavier_uniform", (2 / (256 + 128)) ** 0.5),
    ("xavier_normal", (2 / (256 + 128)) ** 0.5),
    ("kaiming_uniform", (2 / 256) ** 0.5),  # PyTorch's default gain: leaky_relu(a=0), sqrt(2)
    ("kaiming_normal", (2 / 256) ** 0.5),
])
def test_xavier_and_kaiming_scale_with_fan(name, expected_std):
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(256, 128))
    init_weights(layer, name)
    assert layer[0].weight.std().item() == pytest.approx(expected_std, rel=0.05)


def test_default_initializer_keeps_pytorch_init():
    torch.manual_seed(0)
    a = build_model(hp(initializer="default"), kind="mlp", input_shape=(1, 8, 8), n_classes=10)
    torch.manual_seed(0)
    b = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    assert torch.equal(a[1].weight, b[1].weight)


@pytest.mark.parametrize("name", sorted(ACTIVATION_NAMES))
def test_each_activation_is_used(name):
    model = build_model(hp(activation=name, n_layers=1), kind="mlp", input_shape=(1, 8, 8), n_classes=10)
    assert type(model[2]) is type(ACTIVATIONS[name]())


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_dropout_keeps_units_with_probability_one_minus_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    layer = Dropout(p).train()
    out = layer(torch.ones(512, 1024))
    kept = (out != 0).float().mean().item()
    assert kept == pytest.approx(1 - p, abs=0.003)  # 524,288 draws: a few standard deviations
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)  # inverted dropout: same expectation
    assert out.unique().tolist() == [0.0, pytest.approx(1 / (1 - p), rel=1e-4)]


def test_dropout_masks_are_independent_across_entries_and_calls():
    torch.manual_seed(0)
    first, second = dropout_mask((256, 256), 0.5), dropout_mask((256, 256), 0.5)
    assert not torch.equal(first, second)
    assert first.dtype == torch.float32 and first.unique().tolist() == [0.0, 2.0]
    # neighbouring entries come from lanes of one 64-bit draw: they must still be uncorrelated
    a, b = first.flatten()[0::2], first.flatten()[1::2]
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.02
    assert dropout_mask((3, 5), 0.3).shape == (3, 5)  # sizes that are not a multiple of four


def test_dropout_is_the_identity_in_eval_mode_and_draws_from_the_given_generator():
    inputs = torch.randn(8, 16)
    assert torch.equal(Dropout(0.5).eval()(inputs), inputs)
    one, two = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(dropout_mask((7, 9), 0.4, generator=one), dropout_mask((7, 9), 0.4, generator=two))
    assert dropout_threshold(0.0) == (-32768, 1.0)
