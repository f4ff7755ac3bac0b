"""SearchSpace: canonical parameter name -> spec, read from a config's ``search_space`` section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.trial import BaseTrial

from hpstudy.search_spaces.catalog import PARAMETERS, per_layer_name
from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.search_spaces.params import Fixed, ParamSpec, grid_of, parse_spec
from hpstudy.study.errors import UserError, did_you_mean, quote


#: Params that change a trial only when another param takes one of some values.
ACTS_ONLY_WITH: Mapping[str, tuple[str, tuple[str, ...]]] = MappingProxyType({
    "momentum": ("optimizer", ("sgd", "rmsprop")),
    "init_std": ("initializer", ("normal",)),
    "lr_reference_batch": ("lr_scaling", ("linear",)),
})
#: Params only a CNN uses.
CNN_ONLY = ("channels", "kernel_size", "stride", "n_conv")


@dataclass(frozen=True)
class SearchSpace:
    """What a study may try. Parameters not named take their catalog default."""

    specs: Mapping[str, ParamSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ordered = {name: self.specs[name] for name in PARAMETERS if name in self.specs}
        object.__setattr__(self, "specs", MappingProxyType(ordered))

    @classmethod
    def from_dict(cls, raw: Any) -> SearchSpace:
        """Parse and validate a ``search_space`` section; raise UserError naming the first problem."""
        if isinstance(raw, SearchSpace):
            return raw
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise UserError(
                f"search_space must be a mapping of parameter names to specs (got {type(raw).__name__})"
            )
        specs = {}
        for name, spec in raw.items():
            if name not in PARAMETERS:
                raise UserError(
                    f"search_space: unknown parameter {quote(name)}{did_you_mean(str(name), PARAMETERS)}"
                )
            specs[name] = parse_spec(name, spec, PARAMETERS[name])
        return cls(specs)

    def to_dict(self) -> dict[str, Any]:
        """The config form, in catalog order; ``from_dict(to_dict())`` gives an equal space."""
        return {name: spec.to_dict() for name, spec in self.specs.items()}

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    @property
    def searched(self) -> tuple[str, ...]:
        """Names of the parameters that vary between trials."""
        return tuple(name for name, spec in self.specs.items() if not isinstance(spec, Fixed))

    def inert(self, *, model_kind: str, variants: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[str, ...]:
        """Why each searched param that can change no trial of this space is inert, in words:
        ``momentum`` where no optimizer that uses it is ever tried, ``channels`` for an MLP... Its
        values are still drawn and stored, and the report would rank a param that did nothing."""
        reasons = []
        for name in self.searched:
            if name in CNN_ONLY and model_kind != "cnn":
                reasons.append(f"{name} is searched, but only a CNN uses it and model.kind is {model_kind}")
            if name in ACTS_ONLY_WITH:
                other, wanted = ACTS_ONLY_WITH[name]
                tried = {*(self.spec(other).grid_values() or ()),
                         *(bundle[other] for bundle in (variants or {}).values() if other in bundle)}
                if not tried & set(wanted):
                    reasons.append(f"{name} is searched, but only {other} {' or '.join(wanted)} uses it, which no "
                                   f"trial of this space tries")
        return tuple(reasons)

    def spec(self, name: str) -> ParamSpec:
        """The spec of ``name``: the configured one, or the catalog default as a fixed value."""
        return self.specs.get(name, Fixed(PARAMETERS[name].default))

    def sample(
        self,
        trial: BaseTrial,
        *,
        per_layer_units: bool = False,
        variants: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Hyperparams:
        """Ask ``trial`` for every searched parameter and resolve the rest to fixed or default values.

        With ``per_layer_units`` each hidden layer ``i`` gets its own width ``hidden_units_l{i}``,
        drawn from the ``hidden_units`` spec. A ``variant`` value brings in its bundle of params
        from ``variants``.
        """
        values: dict[str, Any] = {}
        for name in PARAMETERS:
            if name == "hidden_units" and per_layer_units:
                spec = self.spec(name)
                for i in range(int(values["n_layers"])):
                    layer = per_layer_name(i)
                    values[layer] = spec.suggest(trial, layer)
                continue
            values[name] = self.spec(name).suggest(trial, name)
        if values.get("variant") is not None:
            values.update((variants or {})[values["variant"]])
        return Hyperparams.from_flat(values)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions of the searched parameters (shared widths only)."""
        out = {}
        for name, spec in self.specs.items():
            dist = spec.to_distribution()
            if dist is not None:
                out[name] = dist
        return out

    def grid(self, *, per_layer_units: bool = False) -> dict[str, list[Any]]:
        """The grid of every searched parameter, for Optuna's GridSampler."""
        if per_layer_units and "hidden_units" in self.searched:
            raise UserError(
                "the grid sampler cannot search per-layer widths; set model.per_layer_units=false"
            )
        return {name: list(grid_of(name, self.specs[name])) for name in self.searched}

    def describe(self) -> dict[str, str]:
        """Name -> short text of each configured parameter, e.g. ``lr: 1e-05 .. 0.1 (log)``."""
        return {name: spec.describe() for name, spec in self.specs.items()}
