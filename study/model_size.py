"""The largest model a search space can draw, counted before anything is built, and the limit on it.

The README promises that a trial which runs out of memory ends as pruned; a model with a trillion
parameters is no such trial but a typo, and allocating it can take the machine down first. So the
config is refused when the largest model its space can draw (times ``train.pack``, which trains
that many at once) has more than MAX_PARAMETERS parameters.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hpstudy.search_spaces.catalog import PARAMETERS
from hpstudy.search_spaces.params import IntParam, ParamSpec
from hpstudy.study.errors import UserError
from hpstudy.study.model_shapes import parameter_count

if TYPE_CHECKING:
    from hpstudy.study.config import StudyConfig

#: A billion float32 parameters: 4 GB of weights, about 16 GB with gradients and Adam's two moments.
MAX_PARAMETERS = 1_000_000_000
#: Input shape (C, H, W) and classes of each dataset, as ``data.load_splits`` gives them.
DATASET_SHAPES: Mapping[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10),
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}
#: The params that size a model, in the order ``parameter_count`` takes them.
SIZE_PARAMS = ("n_layers", "hidden_units", "batch_norm", "channels", "kernel_size", "stride", "n_conv")
_MLP_PARAMS = SIZE_PARAMS[:3]
_ENUMERATED = 16  # stride and n_conv change the size unevenly (pooling): up to this many values are all tried


def check_model_size(cfg: StudyConfig) -> None:
    """Refuse ``cfg`` when the largest model its space can draw, times ``train.pack``, has more than
    MAX_PARAMETERS parameters; the message names the param that most makes it so."""
    values, count = largest_model(cfg)
    total = count * cfg.train.pack
    if total <= MAX_PARAMETERS:
        return
    name = _most_to_blame(cfg, values)
    drawn = ", ".join(f"{key} {value}" for key, value in values.items() if key in _params_of(cfg.model.kind))
    packed = f" x {cfg.train.pack} packed" if cfg.train.pack > 1 else ""
    raise UserError(
        f"search_space.{name}: the largest model this space can draw ({cfg.model.kind} on {cfg.data.dataset}, "
        f"{drawn}) has {_number(count)} parameters{packed}, more than the {MAX_PARAMETERS:,} hpstudy builds "
        f"(4 bytes each, 4 times over to train); lower {name}"
    )


def _number(count: int) -> str:
    """``count`` with thousands separators, or rounded where it runs past 15 digits."""
    return f"{count:,}" if count < 10**15 else f"about {count:.1e}"


def largest_model(cfg: StudyConfig) -> tuple[dict[str, Any], int]:
    """The size params of the largest model ``cfg``'s space (and its variants) can draw, and its
    parameter count. Widths and channels count at their most, batch norm on where it can be, depth
    at both ends, stride and blocks at every value (up to 16 of them, else at their ends)."""
    best: tuple[dict[str, Any], int] = ({}, -1)
    for bundle in _reachable_variants(cfg):
        choices = {name: _candidates(name, cfg, bundle) for name in _params_of(cfg.model.kind)}
        for combination in itertools.product(*choices.values()):
            values = dict(zip(choices, combination))
            count = _count(cfg, values)
            if count > best[1]:
                best = (values, count)
    return best


def _params_of(kind: str) -> Sequence[str]:
    return SIZE_PARAMS if kind == "cnn" else _MLP_PARAMS


def _reachable_variants(cfg: StudyConfig) -> list[Mapping[str, Any]]:
    """The variant bundles the space can pick (just ``{}`` when it picks none)."""
    spec = cfg.search_space.specs.get("variant")
    names = spec.grid_values() if spec is not None else []
    return [cfg.variants[name] for name in names if name in cfg.variants] or [{}]


def _candidates(name: str, cfg: StudyConfig, bundle: Mapping[str, Any]) -> list[Any]:
    """The values of ``name`` among which the largest model lies."""
    if name in bundle:
        return [bundle[name]]
    spec = cfg.search_space.spec(name)
    if name in ("stride", "n_conv") and spec.grid_count() <= _ENUMERATED:
        return list(spec.grid_values())
    values = _ends(spec)
    if name == "batch_norm":
        return [True] if True in values else [False]
    if name == "kernel_size":  # an even kernel keeps one more row than the odd one below it
        return sorted({max(values), max(min(values), max(values) - 1)})
    if name in ("n_layers", "stride", "n_conv"):
        return sorted({min(values), max(values)})
    return [max(values)]  # widths and channels: more is always larger


def _ends(spec: ParamSpec) -> list[Any]:
    """An int range's two ends, else every value the spec can take (a few choices, or one)."""
    return [spec.low, spec.high] if isinstance(spec, IntParam) else list(spec.grid_values())


def _count(cfg: StudyConfig, values: Mapping[str, Any]) -> int:
    """The parameter count of the model of ``cfg``'s kind with size params ``values``."""
    input_shape, n_classes = DATASET_SHAPES[cfg.data.dataset]
    conv = {key: values[key] for key in SIZE_PARAMS[3:] if key in values}
    return parameter_count(kind=cfg.model.kind, input_shape=input_shape, n_classes=n_classes,
                           hidden_units=[values["hidden_units"]] * values["n_layers"],
                           batch_norm=values["batch_norm"], **conv)


def _most_to_blame(cfg: StudyConfig, values: Mapping[str, Any]) -> str:
    """The size param of the largest model that is furthest above its catalog default."""
    names = [name for name in _params_of(cfg.model.kind) if name not in ("batch_norm", "stride")]
    return max(names, key=lambda name: values[name] / PARAMETERS[name].default)
