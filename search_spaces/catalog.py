"""The hyperparameters hpstudy knows: their canonical names, kinds, defaults and allowed values.

A search space may only name parameters listed here. A parameter the space leaves out takes its
default, so every trial trains a fully specified model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from hpstudy.study.errors import quote

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
    ceiling: float | None = None  # the largest value hpstudy trains with, beyond ``maximum``
    ceiling_reason: str = ""

    def problem_with(self, value: Any) -> str | None:
        """Describe why ``value`` is not allowed for this parameter, or return None when it is."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"must be true or false (got {quote(value)})"
        if self.kind == "variant":
            return None if isinstance(value, str) and value else f"must be a variant name (got {quote(value)})"
        if self.kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return None
            return f"unknown value {quote(value)}; choose from {', '.join(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number (got {quote(value)})"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be finite (got {quote(value)})"
        if self.kind == "int" and isinstance(value, float) and not value.is_integer():
            return f"must be an integer (got {quote(value)})"
        return self._range_problem(value) or self._ceiling_problem(value)

    def _ceiling_problem(self, value: float) -> str | None:
        if self.ceiling is None or value <= self.ceiling:
            return None
        return f"must be at most {_fmt(self.ceiling)}, {self.ceiling_reason} (got {quote(value)})"

    def _range_problem(self, value: float) -> str | None:
        low_ok = self.minimum is None or (
            value > self.minimum if self.minimum_exclusive else value >= self.minimum
        )
        high_ok = self.maximum is None or (
            value < self.maximum if self.maximum_exclusive else value <= self.maximum
        )
        if low_ok and high_ok:
            return None
        return f"must be in {self.allowed_range()} (got {quote(value)})"

    def allowed_range(self) -> str:
        """The allowed interval in mathematical notation, e.g. ``[0, 1)`` or ``(0, inf)``."""
        left = "(" if self.minimum_exclusive or self.minimum is None else "["
        right = ")" if self.maximum_exclusive or self.maximum is None else "]"
        low = "-inf" if self.minimum is None else _fmt(self.minimum)
        high = "inf" if self.maximum is None else _fmt(self.maximum)
        return f"{left}{low}, {high}{right}"


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


#: Ceilings: values beyond them are typos, or would overflow the 32-bit floats a model trains in,
#: build a model no machine holds, or never finish.
FLOAT_CEILING = 1e10
_FLOAT_REASON = "far beyond any value that trains (a typo?)"
INT_CEILING = 2**31 - 1
_INT_REASON = "the largest 32-bit integer"
_BATCH_CEILING = 2**20
_BATCH_REASON = "more than any dataset here holds"
_EPOCH_CEILING = 100_000
_EPOCH_REASON = "a trial of more epochs would not finish"
_SIZE_REASON = "beyond which no machine holds the model"


def _positive_int(default: int | None, description: str, ceiling: int = INT_CEILING, reason: str = _INT_REASON) -> ParamInfo:
    return ParamInfo("int", default, description, minimum=1, ceiling=ceiling, ceiling_reason=reason)


def _float(default: float | None, description: str, **bounds: Any) -> ParamInfo:
    return ParamInfo("float", default, description, ceiling=FLOAT_CEILING, ceiling_reason=_FLOAT_REASON, **bounds)


PARAMETERS: dict[str, ParamInfo] = {
    "lr": _float(1e-3, "learning rate", minimum=0.0, minimum_exclusive=True),
    "batch_size": _positive_int(64, "training batch size", _BATCH_CEILING, _BATCH_REASON),
    "epochs": _positive_int(20, "training epochs (the most a trial may run)", _EPOCH_CEILING, _EPOCH_REASON),
    "n_layers": ParamInfo("int", 2, "hidden dense layers", minimum=0, ceiling=1_000, ceiling_reason=_SIZE_REASON),
    "hidden_units": _positive_int(128, "units per hidden dense layer", 2**20, _SIZE_REASON),
    "dropout": ParamInfo(
        "float", 0.0, "dropout probability", minimum=0.0, maximum=1.0, maximum_exclusive=True
    ),
    "initializer": ParamInfo("choice", "default", "weight initializer", choices=INITIALIZERS),
    "init_std": _float(0.01, "std of the 'normal' initializer", minimum=0.0, minimum_exclusive=True),
    "optimizer": ParamInfo("choice", "adam", "optimizer", choices=OPTIMIZERS),
    "activation": ParamInfo("choice", "relu", "activation function", choices=ACTIVATIONS),
    "batch_norm": ParamInfo("bool", False, "batch normalization after each layer"),
    "weight_decay": _float(0.0, "L2 weight decay", minimum=0.0),
    "momentum": ParamInfo(
        "float", 0.9, "momentum (sgd, rmsprop)", minimum=0.0, maximum=1.0, maximum_exclusive=True
    ),
    "channels": _positive_int(16, "channels of the first conv block (doubled per block)", 2**16, _SIZE_REASON),
    "kernel_size": _positive_int(3, "conv kernel size", 255, _SIZE_REASON),
    "stride": _positive_int(1, "conv stride", 255, _SIZE_REASON),
    "n_conv": _positive_int(2, "conv blocks", 64, _SIZE_REASON),
    "lr_scaling": ParamInfo(
        "choice", "none", "'linear': the lr used is lr x batch_size / lr_reference_batch", choices=LR_SCALINGS
    ),
    "lr_reference_batch": _positive_int(64, "the batch size at which a linearly scaled lr is lr itself",
                                        _BATCH_CEILING, _BATCH_REASON),
    "patience": _positive_int(None, "early stopping patience in epochs (default: train.early_stopping)",
                              _EPOCH_CEILING, _EPOCH_REASON),
    "min_delta": _float(None, "early stopping: the least improvement that counts", minimum=0.0),
    "plateau": ParamInfo("bool", None, "ReduceLROnPlateau on validation loss (default: train.scheduler)"),
    "variant": ParamInfo("variant", None, "a named bundle of params from the config's variants section"),
    "seed": ParamInfo("int", 0, "repeat index: trials differing only in seed are repeats", minimum=0,
                      ceiling=INT_CEILING, ceiling_reason=_INT_REASON),
}

#: Parameters a variant may not set: they say which repeat or which variant a trial is.
NOT_IN_VARIANTS = frozenset({"seed", "variant"})

PER_LAYER_PREFIX = "hidden_units_l"


def per_layer_name(index: int) -> str:
    """The trial param name of hidden layer ``index``'s width when widths are sampled per layer."""
    return f"{PER_LAYER_PREFIX}{index}"
