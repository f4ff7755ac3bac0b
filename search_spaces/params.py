"""Declarative parameter specs: a float or int range, a list of choices, or a fixed value.

Each spec knows how to ask an Optuna trial for a value (``suggest``), which Optuna distribution it
is (``to_distribution``), which values a grid search walks (``grid_values``) and how it is written
in a config (``to_dict``). ``parse_spec`` turns the config's form into a spec and checks it against
the parameter's catalog entry, so a bad range is refused before anything runs.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import BaseTrial

from hpstudy.search_spaces.catalog import ParamInfo
from hpstudy.study.errors import UserError, did_you_mean, quote

GRID_LIMIT = 10_000
MAX_STEPS = 1e15  # steps of a range: beyond about 2**53 a float cannot tell ``low + k * step`` apart


@dataclass(frozen=True)
class FloatParam:
    """A float drawn from [low, high], optionally on a log scale or a step grid."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial: BaseTrial, name: str) -> float:
        """Ask ``trial`` for this parameter."""
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def to_distribution(self) -> BaseDistribution:
        """The Optuna distribution this spec samples from."""
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        """True when ``value`` is a number this range can produce."""
        return _is_number(value) and self.to_distribution()._contains(float(value))  # noqa: SLF001

    def grid_count(self) -> int | None:
        """How many values ``grid_values`` walks (counted, not listed), or None for a continuous range."""
        if self.step is None:
            return None
        return int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1

    def canonical(self, value: Any) -> float:
        """``value`` (one ``contains`` accepts) as the float a trial of this range holds."""
        return float(value)

    def grid_values(self) -> list[float] | None:
        """The values a grid search walks, or None when the range is continuous."""
        count = self.grid_count()
        if count is None:
            return None
        return [float(v) for v in np.round(self.low + self.step * np.arange(count), 12)]

    def to_dict(self) -> dict[str, Any]:
        """The config form of this spec."""
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    def describe(self) -> str:
        """A short human-readable form, e.g. ``1e-05 .. 0.1 (log)``."""
        scale = " (log)" if self.log else f" step {self.step:g}" if self.step else ""
        return f"{self.low:g} .. {self.high:g}{scale}"


@dataclass(frozen=True)
class IntParam:
    """An integer drawn from [low, high], optionally on a log scale or with a step."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial: BaseTrial, name: str) -> int:
        """Ask ``trial`` for this parameter."""
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)

    def to_distribution(self) -> BaseDistribution:
        """The Optuna distribution this spec samples from."""
        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        """True when ``value`` is an integer this range can produce."""
        return (_is_number(value) and float(value).is_integer()
                and self.to_distribution()._contains(int(value)))  # noqa: SLF001

    def grid_count(self) -> int:
        """How many integers ``grid_values`` walks (counted, not listed)."""
        return (self.high - self.low) // self.step + 1

    def canonical(self, value: Any) -> int:
        """``value`` (one ``contains`` accepts, 64.0 say) as the int a trial of this range holds."""
        return int(value)

    def grid_values(self) -> list[int]:
        """Every integer a grid search walks."""
        return list(range(self.low, self.high + 1, self.step))

    def to_dict(self) -> dict[str, Any]:
        """The config form of this spec."""
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step != 1:
            out["step"] = self.step
        return out

    def describe(self) -> str:
        """A short human-readable form, e.g. ``16 .. 256 (log)``."""
        scale = " (log)" if self.log else f" step {self.step}" if self.step != 1 else ""
        return f"{self.low} .. {self.high}{scale}"


@dataclass(frozen=True)
class CategoricalParam:
    """One of a list of choices."""

    choices: tuple[Any, ...]

    def suggest(self, trial: BaseTrial, name: str) -> Any:
        """Ask ``trial`` for this parameter."""
        return trial.suggest_categorical(name, self.choices)

    def to_distribution(self) -> BaseDistribution:
        """The Optuna distribution this spec samples from."""
        return CategoricalDistribution(self.choices)

    def contains(self, value: Any) -> bool:
        """True when ``value`` is one of the choices."""
        return any(value == choice and type(value) is type(choice) for choice in self.choices) or (
            _is_number(value) and any(_is_number(c) and value == c for c in self.choices)
        )

    def canonical(self, value: Any) -> Any:
        """The choice ``value`` stands for (the int 64 for 64.0): what a trial of it holds."""
        return next((c for c in self.choices if value == c and type(value) is type(c)),
                    next((c for c in self.choices if _is_number(c) and value == c), value))

    def grid_count(self) -> int:
        """How many choices there are."""
        return len(self.choices)

    def grid_values(self) -> list[Any]:
        """Every choice, in order."""
        return list(self.choices)

    def to_dict(self) -> dict[str, Any]:
        """The config form of this spec."""
        return {"choices": list(self.choices)}

    def describe(self) -> str:
        """A short human-readable form, e.g. ``{adam, sgd}``."""
        return "{" + ", ".join(str(c) for c in self.choices) + "}"


@dataclass(frozen=True)
class Fixed:
    """A value that is not searched: every trial uses it."""

    value: Any

    def suggest(self, trial: BaseTrial, name: str) -> Any:
        """Return the fixed value; nothing is asked of the trial."""
        return self.value

    def to_distribution(self) -> BaseDistribution | None:
        """A fixed value has no distribution."""
        return None

    def contains(self, value: Any) -> bool:
        """True only for the fixed value itself."""
        return value == self.value

    def canonical(self, value: Any) -> Any:
        """The fixed value itself."""
        return self.value

    def grid_count(self) -> int:
        """One value."""
        return 1

    def grid_values(self) -> list[Any]:
        """The one value."""
        return [self.value]

    def to_dict(self) -> Any:
        """The config form: the plain value."""
        return self.value

    def describe(self) -> str:
        """The value itself."""
        return f"{self.value} (fixed)"


ParamSpec = Union[FloatParam, IntParam, CategoricalParam, Fixed]


def _is_number(value: Any) -> bool:
    """A real int or float that a 64-bit float can hold (huge ints would overflow ``float()``)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max

_RANGE_KEYS = {"low", "high", "log", "step"}


def parse_spec(name: str, raw: Any, info: ParamInfo) -> ParamSpec:
    """Turn the config form of parameter ``name`` into a spec, or raise UserError naming the fix.

    Forms: a plain value (fixed), a list (choices), ``{choices: [...]}``, or
    ``{low, high, log?, step?}`` for float and int parameters.
    """
    where = f"search_space.{name}"
    if isinstance(raw, (list, tuple)):
        raw = {"choices": list(raw)}
    if not isinstance(raw, dict):
        return Fixed(_checked_value(where, raw, info))
    if "choices" in raw:
        _refuse_unknown_keys(where, raw, {"choices"})
        return _parse_choices(where, raw["choices"], info)
    if info.kind in ("bool", "choice", "variant"):
        raise UserError(
            f"{where}: a {info.kind} parameter is searched with a list of choices, "
            f"e.g. {name}: [{', '.join(map(str, info.choices[:2] or (True, False)))}]"
        )
    _refuse_unknown_keys(where, raw, _RANGE_KEYS)
    if "low" not in raw or "high" not in raw:
        raise UserError(f"{where}: a range needs both low and high, e.g. {{low: 1, high: 10}}")
    return _parse_range(where, raw, info)


def _refuse_unknown_keys(where: str, raw: dict[str, Any], allowed: set[str]) -> None:
    for key in raw:
        if key not in allowed:
            raise UserError(f"{where}: unknown key {quote(key)}{did_you_mean(str(key), allowed)}")


def _checked_value(where: str, value: Any, info: ParamInfo) -> Any:
    problem = info.problem_with(value)
    if problem:
        raise UserError(f"{where}: {problem}")
    if info.kind == "int":
        return int(value)
    if info.kind == "float":
        return float(value)
    return value


def _parse_choices(where: str, choices: Any, info: ParamInfo) -> CategoricalParam:
    if not isinstance(choices, (list, tuple)):
        raise UserError(f"{where}: choices must be a list, e.g. choices: [a, b]")
    if not choices:
        raise UserError(f"{where}: choices is empty; list at least one value")
    values = tuple(_checked_value(where, c, info) for c in choices)
    if len(set(map(repr, values))) != len(values):
        raise UserError(f"{where}: choices repeat a value; list each value once")
    return CategoricalParam(values)


def _check_steps_reach_high(where: str, low: float, high: float, step: float, info: ParamInfo) -> None:
    """Refuse a stepped range whose high is not low plus a whole number of steps: Optuna would
    quietly search a shorter range than the one written (and the report would show the written one)."""
    steps = (high - low) / step
    if not steps <= MAX_STEPS:  # also catches an infinite count
        raise UserError(f"{where}.step: {step:g} cuts {low:g} .. {high:g} into more than {MAX_STEPS:.0e} steps, "
                        "finer than a float tells apart; use a larger step or drop it")
    if abs(steps - round(steps)) <= 1e-9 * max(1.0, steps):
        return
    below, above = (low + k * step for k in (math.floor(steps), math.ceil(steps)))
    if isinstance(step, int) and isinstance(low, int):
        below, above = int(below), int(above)
    fixes = " or ".join(f"{v:g}" for v in (below, above) if v >= low and not info.problem_with(v))
    raise UserError(f"{where}: high {high:g} is not low {low:g} plus a whole number of steps of {step:g}; "
                    f"set high to {fixes}")


def _check_step(where: str, step: Any, info: ParamInfo) -> None:
    """A step is a finite positive number (an integer for an int parameter), within the parameter's ceiling."""
    if not _is_number(step) or step <= 0:
        raise UserError(f"{where}.step: must be a finite positive number (got {quote(step)})")
    if info.kind == "int" and not float(step).is_integer():
        raise UserError(f"{where}.step: must be an integer for {where} (got {quote(step)})")
    if info.ceiling is not None and step > info.ceiling:
        raise UserError(f"{where}.step: must be at most {info.ceiling:g} (got {quote(step)})")


def _parse_range(where: str, raw: dict[str, Any], info: ParamInfo) -> FloatParam | IntParam:
    low = _checked_value(f"{where}.low", raw["low"], info)
    high = _checked_value(f"{where}.high", raw["high"], info)
    log = raw.get("log", False)
    step = raw.get("step")
    if not isinstance(log, bool):
        raise UserError(f"{where}.log: must be true or false (got {quote(log)})")
    if low > high:
        raise UserError(f"{where}: low ({low}) is greater than high ({high}); swap them")
    if log and low <= 0:
        raise UserError(f"{where}: a log range needs low > 0 (got low {low}); raise low or drop log")
    if log and step is not None:
        raise UserError(f"{where}: log and step cannot be combined; drop one of them")
    if step is not None:
        _check_step(where, step, info)
        _check_steps_reach_high(where, low, high, step, info)
    if info.kind == "int":
        return IntParam(int(low), int(high), log=log, step=int(step or 1))
    return FloatParam(float(low), float(high), log=log, step=None if step is None else float(step))


def grid_of(name: str, spec: ParamSpec) -> Sequence[Any]:
    """The grid values of ``spec``, or raise UserError when the range is continuous or too big."""
    count = spec.grid_count()
    if count is None:
        raise UserError(
            f"search_space.{name}: the grid sampler needs choices or a step for {name}; "
            f"add step or list the values"
        )
    if count > GRID_LIMIT:
        raise UserError(f"search_space.{name}: {count:,} grid values is too many (at most {GRID_LIMIT:,}); "
                        "use a larger step")
    return spec.grid_values()
