"""Models built from a trial's hyperparameters: an MLP or a small CNN, with the chosen initializer.

Plain PyTorch; nothing here knows of Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.study.model_shapes import conv_blocks

ACTIVATIONS: Mapping[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}

_WEIGHT_INITS: Mapping[str, Callable[..., object]] = {
    "normal": nn.init.normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
    "orthogonal": nn.init.orthogonal_,
}
#: Every initializer name: PyTorch's own ("default") plus the explicit ones.
INITIALIZER_NAMES = ("default", *_WEIGHT_INITS)


#: Dropout's random draws on the CPU: 16-bit lanes of 64-bit words, four mask entries per draw.
_LANES = 65536


def dropout_threshold(p: float) -> tuple[int, float]:
    """For dropout probability ``p``: the 16-bit threshold a lane must reach to keep its unit, and
    the scale of kept units, ``1 / P(keep)`` (``p`` is rounded to a multiple of 1/65536)."""
    dropped = round(p * _LANES)
    return dropped - _LANES // 2, _LANES / (_LANES - dropped)


def dropout_mask(shape: tuple[int, ...], p: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """An inverted-dropout mask of ``shape``, drawn on the CPU: float32, ``1/P(keep)`` where a unit
    is kept (with probability ``1 - p``), 0 where it is dropped.

    PyTorch's CPU generator (a Mersenne twister) costs about the same per draw whatever the type
    drawn, so one 64-bit draw gives four mask entries (its 16-bit lanes, each compared with
    ``dropout_threshold(p)``), and the comparison writes floats straight away (a boolean tensor
    is slow to make and to convert): about twice as fast as ``rand >= p`` made into floats, and
    four times as fast as the Bernoulli sampler behind ``nn.Dropout`` (a 128x128 mask, 2 cores).
    """
    threshold, scale = dropout_threshold(p)
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64)
    lanes = words.random_(-(2**63), None, generator=generator).view(torch.int16)[:count].view(shape)
    mask = torch.ge(lanes, threshold, out=torch.empty(shape))
    return mask.mul_(scale)


class Dropout(nn.Module):
    """Inverted dropout. On the CPU the mask comes from ``dropout_mask`` (four entries per random
    draw); on a GPU it is ``F.dropout`` itself."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return inputs
        if inputs.device.type != "cpu":
            return nn.functional.dropout(inputs, self.p, training=True)
        return inputs * dropout_mask(tuple(inputs.shape), self.p).to(inputs.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def build_model(hp: Hyperparams, *, kind: str, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The model of ``kind`` ("mlp" or "cnn") for inputs ``(C, H, W)``, initialized as ``hp`` says."""
    if kind == "mlp":
        model = mlp(hp, in_features=math.prod(input_shape), n_classes=n_classes)
    elif kind == "cnn":
        model = cnn(hp, input_shape=input_shape, n_classes=n_classes)
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    init_weights(model, hp.initializer, std=hp.init_std)
    return model


def mlp(hp: Hyperparams, *, in_features: int, n_classes: int) -> nn.Sequential:
    """Flatten, then (Linear → BatchNorm? → activation → Dropout) per hidden layer, then Linear."""
    return nn.Sequential(nn.Flatten(), *dense_stack(hp, in_features=in_features, n_classes=n_classes))


def cnn(hp: Hyperparams, *, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    """``n_conv`` blocks (Conv → BatchNorm? → activation → MaxPool while wide enough), channels
    doubling per block, then a dense head like the MLP's; ``model_shapes.conv_blocks`` plans them."""
    layers: list[nn.Module] = []
    blocks = conv_blocks(input_shape=input_shape, channels=hp.channels, kernel_size=hp.kernel_size,
                         stride=hp.stride, n_conv=hp.n_conv)
    for block in blocks:
        layers.append(
            nn.Conv2d(block.in_channels, block.out_channels, hp.kernel_size, stride=hp.stride,
                      padding=hp.kernel_size // 2, bias=not hp.batch_norm)
        )
        if hp.batch_norm:
            layers.append(nn.BatchNorm2d(block.out_channels))
        layers.append(ACTIVATIONS[hp.activation]())
        if block.pooled:
            layers.append(nn.MaxPool2d(2))
    layers.append(nn.Flatten())
    in_features = blocks[-1].out_channels * blocks[-1].height * blocks[-1].width if blocks else math.prod(input_shape)
    layers += dense_stack(hp, in_features=in_features, n_classes=n_classes)
    return nn.Sequential(*layers)


def dense_stack(hp: Hyperparams, *, in_features: int, n_classes: int) -> list[nn.Module]:
    """The hidden dense layers of ``hp.hidden_units`` and the output layer."""
    layers: list[nn.Module] = []
    for width in hp.hidden_units:
        layers.append(nn.Linear(in_features, width, bias=not hp.batch_norm))
        if hp.batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATIONS[hp.activation]())
        if hp.dropout > 0:
            layers.append(Dropout(hp.dropout))
        in_features = width
    layers.append(nn.Linear(in_features, n_classes))
    return layers


def init_weights(model: nn.Module, name: str, *, std: float = 0.01) -> None:
    """Re-initialize every Linear and Conv2d weight with ``name`` (biases to zero).

    ``default`` keeps PyTorch's own initialization; ``normal`` draws from N(0, std²).
    """
    if name == "default":
        return
    init = _WEIGHT_INITS[name]
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if name == "normal":
                init(module.weight, 0.0, std)
            else:
                init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
