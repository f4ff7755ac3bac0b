"""Hyperparams: one trial's fully resolved hyperparameters, the record the training code reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from hpstudy.search_spaces.catalog import PARAMETERS, per_layer_name


@dataclass(frozen=True)
class Hyperparams:
    """Every knob of one trial. ``hidden_units`` holds one width per hidden layer."""

    lr: float
    batch_size: int
    epochs: int
    n_layers: int
    hidden_units: tuple[int, ...]
    dropout: float
    initializer: str
    init_std: float
    optimizer: str
    activation: str
    batch_norm: bool
    weight_decay: float
    momentum: float
    channels: int
    kernel_size: int
    stride: int
    n_conv: int
    lr_scaling: str
    lr_reference_batch: int
    patience: int | None
    min_delta: float | None
    plateau: bool | None
    variant: str | None
    seed: int

    @property
    def effective_lr(self) -> float:
        """The learning rate the optimizer uses: ``lr``, or ``lr x batch_size / lr_reference_batch``
        when ``lr_scaling`` is linear (the linear scaling rule)."""
        if self.lr_scaling == "linear":
            return self.lr * self.batch_size / self.lr_reference_batch
        return self.lr

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> Hyperparams:
        """Build from flat param names (``hidden_units`` or ``hidden_units_l0``...); defaults fill gaps."""
        merged = {name: info.default for name, info in PARAMETERS.items()}
        merged.update({k: v for k, v in values.items() if k in PARAMETERS})
        n_layers = int(merged["n_layers"])
        units = merged["hidden_units"]
        if isinstance(units, (list, tuple)):
            merged["hidden_units"] = tuple(int(u) for u in units)
        else:
            merged["hidden_units"] = tuple(
                int(values.get(per_layer_name(i), units)) for i in range(n_layers)
            )
        return cls(**{f.name: merged[f.name] for f in fields(cls)})

    def to_flat(self) -> dict[str, Any]:
        """A JSON-friendly dict; per-layer widths become a list."""
        out = asdict(self)
        out["hidden_units"] = list(self.hidden_units)
        return out
