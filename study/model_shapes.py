"""The shapes of the models hpstudy builds, worked out without building them (no torch here):
each conv block's channels and output size, and the parameter count of a whole model.

``models.py`` builds its CNNs from ``conv_blocks``, so the count and the built model never differ
(a test compares ``parameter_count`` with the parameters of built models).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

POOL_MIN_SIZE = 4  # max-pool a conv block's output only while it is at least this wide


@dataclass(frozen=True)
class ConvBlock:
    """One conv block: ``in_channels`` -> ``out_channels``, max-pooled or not, and its output size."""

    in_channels: int
    out_channels: int
    pooled: bool
    height: int
    width: int


def conv_blocks(
    *, input_shape: Sequence[int], channels: int, kernel_size: int, stride: int, n_conv: int
) -> list[ConvBlock]:
    """The ``n_conv`` conv blocks of a CNN for inputs ``(C, H, W)``: channels doubling per block,
    padding ``kernel_size // 2``, a 2x2 max-pool while the output is at least POOL_MIN_SIZE wide."""
    in_channels, height, width = input_shape
    padding = kernel_size // 2
    blocks = []
    for _ in range(n_conv):
        height = (height + 2 * padding - kernel_size) // stride + 1
        width = (width + 2 * padding - kernel_size) // stride + 1
        pooled = min(height, width) >= POOL_MIN_SIZE
        if pooled:
            height, width = height // 2, width // 2
        blocks.append(ConvBlock(in_channels, channels, pooled, height, width))
        in_channels, channels = channels, channels * 2
    return blocks


def dense_parameter_count(*, in_features: int, hidden_units: Sequence[int], n_classes: int, batch_norm: bool) -> int:
    """Parameters of the dense layers: per hidden layer a Linear (no bias under batch norm) and
    its BatchNorm1d (weight and bias), then the output Linear."""
    count = 0
    for width in hidden_units:
        count += in_features * width + (2 * width if batch_norm else width)
        in_features = width
    return count + in_features * n_classes + n_classes


def parameter_count(
    *,
    kind: str,
    input_shape: Sequence[int],
    n_classes: int,
    hidden_units: Sequence[int],
    batch_norm: bool,
    channels: int = 1,
    kernel_size: int = 1,
    stride: int = 1,
    n_conv: int = 0,
) -> int:
    """How many parameters ``models.build_model`` gives the model of ``kind`` ("mlp" or "cnn")."""
    if kind == "mlp":
        return dense_parameter_count(in_features=math.prod(input_shape), hidden_units=hidden_units,
                                     n_classes=n_classes, batch_norm=batch_norm)
    blocks = conv_blocks(input_shape=input_shape, channels=channels, kernel_size=kernel_size, stride=stride,
                         n_conv=n_conv)
    count = sum(conv_parameter_count(block, kernel_size=kernel_size, batch_norm=batch_norm) for block in blocks)
    last = blocks[-1] if blocks else None
    in_features = last.out_channels * last.height * last.width if last else math.prod(input_shape)
    return count + dense_parameter_count(in_features=in_features, hidden_units=hidden_units, n_classes=n_classes,
                                         batch_norm=batch_norm)


def conv_parameter_count(block: ConvBlock, *, kernel_size: int, batch_norm: bool) -> int:
    """Parameters of one conv block: its Conv2d (no bias under batch norm) and BatchNorm2d."""
    weights = block.in_channels * block.out_channels * kernel_size * kernel_size
    return weights + (2 * block.out_channels if batch_norm else block.out_channels)
