"""The hyperparameters hpstudy knows: their canonical names, kinds, defaults and allowed values.

A search space may only name parameters listed here. A parameter the space leaves out takes its
default, so every trial trains a fully specified model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

INITIALIZERS = (
    "default",
    "normal",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
)
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu")
LR_SCALINGS = ("none", "linear")

Kind = Literal["float", "int", "bool", "choice", "variant"]


@dataclass(frozen=True)
class ParamInfo:
    """What one canonical hyperparameter is and which values it accepts."""

    kind: Kind
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    minimum_exclusive: bool = False
    maximum_exclusive: bool = False
    choices: tuple[str, ...] = ()

    def problem_with(self, value: Any) -> str | None:
        """Describe why ``value`` is not allowed for this parameter, or return None when it is."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"must be true or false (got {value!r})"
        if self.kind == "variant":
            return None if isinstance(value, str) and value else f"must be a variant name (got {value!r})"
        if self.kind == "choice":
            if value in self.choices:
                return None
            return f"unknown value {value!r}; choose from {', '.join(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number (got {value!r})"
        if self.kind == "int" and not float(value).is_integer():
            return f"must be an integer (got {value!r})"
        if not math.isfinite(value):
            return f"must be finite (got {value!r})"
        return self._range_problem(value)

    def _range_problem(self, value: float) -> str | None:
        low_ok = self.minimum is None or (
            value > self.minimum if self.minimum_exclusive else value >= self.minimum
        )
        high_ok = self.maximum is None or (
            value < self.maximum if self.maximum_exclusive else value <= self.maximum
        )
        if low_ok and high_ok:
            return None
        return f"must be in {self.allowed_range()} (got {value!r})"

    def allowed_range(self) -> str:
        """The allowed interval in mathematical notation, e.g. ``[0, 1)`` or ``(0, inf)``."""
        left = "(" if self.minimum_exclusive or self.minimum is None else "["
        right = ")" if self.maximum_exclusive or self.maximum is None else "]"
        low = "-inf" if self.minimum is None else _fmt(self.minimum)
        high = "inf" if self.maximum is None else _fmt(self.maximum)
        return f"{left}{low}, {high}{right}"


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _positive_int(default: int, description: str) -> ParamInfo:
    return ParamInfo("int", default, description, minimum=1)


PARAMETERS: dict[str, ParamInfo] = {
    "lr": ParamInfo("float", 1e-3, "learning rate", minimum=0.0, minimum_exclusive=True),
    "batch_size": _positive_int(64, "training batch size"),
    "epochs": _positive_int(20, "training epochs (the most a trial may run)"),
    "n_layers": ParamInfo("int", 2, "hidden dense layers", minimum=0),
    "hidden_units": _positive_int(128, "units per hidden dense layer"),
    "dropout": ParamInfo(
        "float", 0.0, "dropout probability", minimum=0.0, maximum=1.0, maximum_exclusive=True
    ),
    "initializer": ParamInfo("choice", "default", "weight initializer", choices=INITIALIZERS),
    "init_std": ParamInfo(
        "float", 0.01, "std of the 'normal' initializer", minimum=0.0, minimum_exclusive=True
    ),
    "optimizer": ParamInfo("choice", "adam", "optimizer", choices=OPTIMIZERS),
    "activation": ParamInfo("choice", "relu", "activation function", choices=ACTIVATIONS),
    "batch_norm": ParamInfo("bool", False, "batch normalization after each layer"),
    "weight_decay": ParamInfo("float", 0.0, "L2 weight decay", minimum=0.0),
    "momentum": ParamInfo(
        "float", 0.9, "momentum (sgd, rmsprop)", minimum=0.0, maximum=1.0, maximum_exclusive=True
    ),
    "channels": _positive_int(16, "channels of the first conv block (doubled per block)"),
    "kernel_size": _positive_int(3, "conv kernel size"),
    "stride": _positive_int(1, "conv stride"),
    "n_conv": _positive_int(2, "conv blocks"),
    "lr_scaling": ParamInfo(
        "choice", "none", "'linear': the lr used is lr x batch_size / lr_reference_batch", choices=LR_SCALINGS
    ),
    "lr_reference_batch": _positive_int(64, "the batch size at which a linearly scaled lr is lr itself"),
    "patience": ParamInfo("int", None, "early stopping patience in epochs (default: train.early_stopping)", minimum=1),
    "min_delta": ParamInfo("float", None, "early stopping: the least improvement that counts", minimum=0.0),
    "plateau": ParamInfo("bool", None, "ReduceLROnPlateau on validation loss (default: train.scheduler)"),
    "variant": ParamInfo("variant", None, "a named bundle of params from the config's variants section"),
    "seed": ParamInfo("int", 0, "repeat index: trials differing only in seed are repeats", minimum=0),
}

#: Parameters a variant may not set: they say which repeat or which variant a trial is.
NOT_IN_VARIANTS = frozenset({"seed", "variant"})

PER_LAYER_PREFIX = "hidden_units_l"


def per_layer_name(index: int) -> str:
    """The trial param name of hidden layer ``index``'s width when widths are sampled per layer."""
    return f"{PER_LAYER_PREFIX}{index}"
