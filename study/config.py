"""StudyConfig: the one validated, frozen description of a study, and how it is read.

A config comes from a preset, a YAML file (which may start from a preset with ``preset: NAME``),
and ``--set key.path=value`` overrides, merged in that order and validated once. Every problem is
a UserError with a one-line message that names the key and the fix.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from optuna.trial import BaseTrial
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PlainSerializer,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from hpstudy.search_spaces.catalog import NOT_IN_VARIANTS, PARAMETERS
from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.search_spaces.presets import DEFAULT_PRESET, Preset, get_preset
from hpstudy.search_spaces.space import SearchSpace
from hpstudy.study.errors import UserError, did_you_mean
from hpstudy.study.optuna_parts import build_pruner, build_sampler

SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc")
PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "threshold", "none")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
DEFAULT_STORAGE = "sqlite:///hpstudy.db"
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

#: Keys that say how a run goes, not what the study is: they may differ between runs of one study.
RUN_ONLY_KEYS = (
    ("study", "n_trials"),
    ("study", "timeout"),
    ("study", "budget_epochs"),
    ("storage",),
    ("train", "device"),
    ("train", "checkpoints"),
    ("train", "checkpoint_every"),
    ("train", "checkpoint_dir"),
    ("train", "keep_best_model"),
    ("train", "pack"),
    ("data", "root"),
    ("data", "download"),
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class SamplerConfig(_Section):
    """Which Optuna sampler draws the params, with its keyword options (the seed comes from study.seed)."""

    name: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    options: dict[str, Any] = Field(default_factory=dict)


class PrunerConfig(_Section):
    """Which Optuna pruner stops weak trials early, with its keyword options."""

    name: Literal[PRUNERS] = "median"  # type: ignore[valid-type]
    options: dict[str, Any] = Field(default_factory=dict)


class StudySection(_Section):
    """Name, goal and stopping rules of the study, and how it samples and prunes."""

    name: str = Field(default="hpstudy", min_length=1, max_length=200)
    metric: Literal["val_loss", "val_accuracy"] = "val_loss"
    direction: Literal["minimize", "maximize"] | None = None
    n_trials: PositiveInt = 20
    timeout: NonNegativeFloat | None = None
    budget_epochs: PositiveInt | None = None
    seed: NonNegativeInt = 0
    heartbeat_interval: PositiveInt = 5
    grace_period: PositiveInt = 20
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()

    @field_validator("name")
    @classmethod
    def _name_reads_as_written(cls, name: str) -> str:
        """A name is typed back on command lines: no blank name, no space at its ends, no control characters."""
        tidy = " ".join(name.split())
        if not tidy:
            raise ValueError("a study name cannot be blank; give one, e.g. --study-name digits-mlp")
        if name != name.strip() or not name.isprintable():
            raise ValueError(f"{name!r} has a space at an end or a control character; name it {tidy!r}")
        return name

    @model_validator(mode="after")
    def _grace_outlasts_heartbeat(self) -> StudySection:
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"study.grace_period ({self.grace_period} s) must be longer than "
                f"study.heartbeat_interval ({self.heartbeat_interval} s); raise grace_period"
            )
        return self

    @model_validator(mode="after")
    def _direction_fits_metric(self) -> StudySection:
        expected = "minimize" if self.metric == "val_loss" else "maximize"
        if self.direction is None:
            object.__setattr__(self, "direction", expected)
        elif self.direction != expected:
            raise ValueError(
                f"study.direction '{self.direction}' does not fit metric '{self.metric}'; "
                f"use direction: {expected}"
            )
        return self


class DataSection(_Section):
    """Which dataset, where it lives, and how the validation split is cut."""

    dataset: Literal[DATASETS] = "digits"  # type: ignore[valid-type]
    root: str = "data"
    download: bool = True
    verify_checksums: bool = True
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    train_subset: Annotated[int, Field(ge=2)] | None = None  # a training step needs two samples
    val_subset: PositiveInt | None = None


class ModelSection(_Section):
    """The model family; the searched params fill in its shape."""

    kind: Literal["mlp", "cnn"] = "mlp"
    per_layer_units: bool = False


class EarlyStoppingConfig(_Section):
    """Stop a trial when validation loss has not improved by ``min_delta`` for ``patience`` epochs."""

    patience: PositiveInt | None = None
    min_delta: NonNegativeFloat = 0.0


class SchedulerConfig(_Section):
    """Learning-rate schedule: none, or ReduceLROnPlateau on validation loss."""

    name: Literal["none", "plateau"] = "none"
    factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    patience: NonNegativeInt = 2


class TrainSection(_Section):
    """How each trial trains: device, evaluation batch, mixed precision (``amp``), ``torch.compile``,
    channels-last CNNs (``auto``: on CUDA), early stopping, LR schedule, checkpoints
    (``checkpoint_every`` epochs, or None: as often as 2 % of the training time allows;
    ``checkpoint_dir`` defaults to ``<sqlite file>.checkpoints`` beside a SQLite store, else
    ``$XDG_STATE_HOME/hpstudy/checkpoints``, ``~/.local/state/...``)."""

    device: str = "auto"
    eval_batch_size: PositiveInt = 4096
    deterministic: bool = False
    amp: Literal["off", "bf16", "fp16"] = "off"
    compile: bool = False
    channels_last: Literal["auto", "on", "off"] = "auto"
    pack: PositiveInt = 1
    checkpoints: bool = True
    checkpoint_every: PositiveInt | None = None
    checkpoint_dir: str | None = None
    keep_best_model: bool = False
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    scheduler: SchedulerConfig = SchedulerConfig()

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE_PATTERN.match(value):
            raise ValueError(f"unknown device '{value}'; use auto, cpu, cuda or cuda:N")
        return value

    @model_validator(mode="after")
    def _best_model_beside_the_checkpoints(self) -> TrainSection:
        if self.keep_best_model and not self.checkpoints:
            raise ValueError("train.keep_best_model needs train.checkpoints: true (the best model is kept in "
                             "the study's checkpoint folder); turn checkpoints on or keep_best_model off")
        return self


SearchSpaceField = Annotated[
    SearchSpace,
    BeforeValidator(SearchSpace.from_dict),
    PlainSerializer(lambda space: space.to_dict(), return_type=dict),
]


class StudyConfig(_Section):
    """Everything a study needs, validated. Build it with ``load_config`` or ``from_dict``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, arbitrary_types_allowed=True)

    study: StudySection = StudySection()
    storage: str = DEFAULT_STORAGE
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    search_space: SearchSpaceField = SearchSpace()
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _variants_fit_the_space(self) -> StudyConfig:
        _check_variants(self)
        return self

    @model_validator(mode="after")
    def _parts_fit_together(self) -> StudyConfig:
        build_sampler(self, seed=self.study.seed)
        build_pruner(self.study.pruner)
        if self.train.pack > 1:
            _check_packable(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``StudyConfig.from_dict(cfg.to_dict()) == cfg``."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StudyConfig:
        """Validate a config dict (from a file, a preset or the study's stored copy)."""
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            raise _as_user_error(exc) from None

    def identity(self) -> dict[str, Any]:
        """The config minus run-only keys: two runs with equal identities are the same study."""
        out = copy.deepcopy(self.to_dict())
        for path in RUN_ONLY_KEYS:
            node = out
            for key in path[:-1]:
                node = node[key]
            node.pop(path[-1], None)
        return out

    def sample(self, trial: BaseTrial) -> Hyperparams:
        """One trial's hyperparameters: the space sampled through ``trial``, variants applied."""
        return self.search_space.sample(trial, per_layer_units=self.model.per_layer_units, variants=self.variants)

    def grid_size(self) -> int:
        """How many points the grid of the searched params has (for the grid sampler)."""
        return math.prod(len(values) for values in self.search_space.grid(per_layer_units=self.model.per_layer_units).values())

    def with_overrides(self, overrides: Mapping[str, Any]) -> StudyConfig:
        """A new config with dotted keys (``study.n_trials``) replaced, validated again."""
        raw = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(raw, key, value)
        return StudyConfig.from_dict(raw)


def _check_variants(cfg: StudyConfig) -> None:
    """Each variant names known params with valid values that the space does not search, and every
    variant the space can pick exists."""
    for name, bundle in cfg.variants.items():
        if not isinstance(bundle, dict) or not bundle:
            raise UserError(f"variants.{name}: must be a mapping of params to values, e.g. {{optimizer: sgd, lr: 0.1}}")
        for key, value in bundle.items():
            if key not in PARAMETERS or key in NOT_IN_VARIANTS:
                allowed = [p for p in PARAMETERS if p not in NOT_IN_VARIANTS]
                raise UserError(f"variants.{name}: '{key}' cannot be set by a variant{did_you_mean(str(key), allowed)}")
            problem = PARAMETERS[key].problem_with(value)
            if problem:
                raise UserError(f"variants.{name}.{key}: {problem}")
            if key in cfg.search_space.searched:
                raise UserError(f"variants.{name}.{key}: {key} is also searched; a variant may set only unsearched params")
    spec = cfg.search_space.specs.get("variant")
    if spec is not None:
        for value in spec.grid_values() or []:
            if value not in cfg.variants:
                raise UserError(
                    f"search_space.variant: no variant named '{value}'{did_you_mean(str(value), cfg.variants)}; "
                    "define it under variants:"
                )


def _check_packable(cfg: StudyConfig) -> None:
    """Packed trials train MLPs without batch norm, in full precision, uncompiled."""
    problem = None
    if cfg.model.kind != "mlp":
        problem = "packing trains MLPs; set model.kind=mlp"
    elif cfg.search_space.spec("batch_norm").contains(True):
        problem = "packing does not support batch norm; set search_space.batch_norm=false"
    elif cfg.train.amp != "off" or cfg.train.compile:
        problem = "packing trains in full precision, uncompiled; set train.amp=off and train.compile=false"
    if problem:
        raise UserError(f"train.pack={cfg.train.pack}: {problem}, or drop --pack")


# ---------------------------------------------------------------- reading


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``) and refuses a key
    written twice in one mapping (plain YAML keeps the last and silently drops the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may repeat keys on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # SafeLoader's own check refuses it
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is written twice; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, *, source: str) -> Any:
    """Parse YAML text, or raise UserError naming ``source`` and the line of the problem."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UserError(f"{source}: not valid YAML{where} ({problem}); fix the syntax") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; refuse a missing, unreadable or non-mapping file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file '{path}' not found; check the path, or use --preset NAME")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"config file '{path}' cannot be read ({exc.__class__.__name__})") from None
    raw = parse_yaml(text, source=f"config file '{path}'")
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        raise UserError(
            f"config file '{path}' is {kind}, not a mapping; "
            f"write sections such as study:, data:, search_space:"
        )
    return raw


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``key.path=value`` and parse the value as YAML (``0.1`` a float, ``[a, b]`` a list)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip() or not re.fullmatch(r"[A-Za-z_][\w.]*", key.strip()):
        raise UserError(f"--set needs key.path=value, e.g. --set study.n_trials=50 (got '{item}')")
    return key.strip(), parse_yaml(text, source=f"--set {key.strip()}") if text.strip() else ""


def load_config(
    path: str | Path | None = None,
    *,
    preset: str | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
    quick: bool = False,
    repeats: int | None = None,
) -> StudyConfig:
    """Build the study config: preset (default when no file), then the file, then overrides.

    ``overrides`` are ``key.path=value`` strings (the CLI's ``--set``); ``values`` are dotted keys
    with typed values (the CLI's own flags, such as ``study.n_trials``), applied last. ``quick``
    shrinks a preset to its smoke-run size; ``repeats`` runs every grid point that many times
    (a ``seed`` param 0 .. repeats-1). A grid study without an explicit ``n_trials`` runs its whole
    grid.
    """
    raw: dict[str, Any] = {}
    file_raw = read_config_file(path) if path is not None else None
    preset_name = preset or (file_raw or {}).pop("preset", None)
    if preset_name is None and file_raw is None:
        preset_name = DEFAULT_PRESET
    if preset_name is not None:
        if not isinstance(preset_name, str):
            raise UserError(f"preset must be a name (got {preset_name!r}); `hpstudy spaces` lists them")
        chosen = get_preset(preset_name)
        raw = copy.deepcopy(dict(chosen.config))
        if quick:
            _apply(raw, copy.deepcopy(dict(chosen.quick)))
    elif quick:
        raise UserError("--quick shrinks a preset; use it with --preset NAME (or a file with preset: NAME)")
    if file_raw is not None:
        _merge(raw, file_raw)
    pairs = [*map(parse_override, overrides), *(values or {}).items()]
    if repeats is not None:
        if repeats < 1:
            raise UserError(f"--repeats must be at least 1 (got {repeats})")
        pairs.append(("search_space.seed", list(range(repeats))))
    for key, value in pairs:
        _set_dotted(raw, key, value)
        options_key = key.replace(".name", ".options")
        if key in _NAMED_PARTS and not any(k.startswith(options_key) for k, _ in pairs):
            _set_dotted(raw, options_key, {})  # options belong to the part they were written for
    if preset_name is not None and not _names_the_study(file_raw, pairs):
        _set_dotted(raw, "study.name", _preset_study_name(chosen, raw, quick=quick))
    cfg = StudyConfig.from_dict(raw)
    if repeats is not None and cfg.study.sampler.name != "grid":
        raise UserError("--repeats repeats grid points; use it with the grid sampler (the classic-experiment presets)")
    if cfg.study.sampler.name == "grid" and "n_trials" not in raw.get("study", {}):
        cfg = cfg.with_overrides({"study.n_trials": cfg.grid_size()})
    return cfg


def _names_the_study(file_raw: Mapping[str, Any] | None, pairs: Sequence[tuple[str, Any]]) -> bool:
    """True when the file, a ``--set`` or ``--study-name`` names the study itself."""
    in_file = isinstance((file_raw or {}).get("study"), Mapping) and "name" in file_raw["study"]
    return in_file or any(key == "study.name" or (key == "study" and isinstance(value, Mapping) and "name" in value)
                          for key, value in pairs)


def _preset_study_name(chosen: Preset, raw: Mapping[str, Any], *, quick: bool) -> str:
    """The preset's study name, marked with the dataset or model kind a run puts in place of the
    preset's (``digits-mlp`` on MNIST is ``mnist-mlp``, ``lr-sweep`` on it ``lr-sweep-mnist``) and
    ending ``-quick`` for the smoke-run size, so that none of them takes the preset's own study."""
    name = str(chosen.config["study"]["name"])
    for section, key in (("data", "dataset"), ("model", "kind")):
        own = chosen.config.get(section, {}).get(key)
        now = raw.get(section, {}).get(key, own) if isinstance(raw.get(section), Mapping) else own
        if isinstance(now, str) and now != own:
            words = name.split("-")
            name = "-".join(now if word == own else word for word in words) if own in words else f"{name}-{now}"
    return f"{name}-quick" if quick else name


def _apply(raw: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Merge ``overrides`` into ``raw``: dotted keys set one value, sections merge."""
    for key, value in overrides.items():
        if "." in key:
            _set_dotted(raw, key, value)
        else:
            _merge(raw, {key: value})


_NAMED_PARTS = ("study.sampler.name", "study.pruner.name")


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Deep-merge ``extra`` into ``base``; a search_space entry is replaced whole, not merged."""
    for key, value in extra.items():
        if key == "search_space" and isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key].update(value)
        elif key in ("sampler", "pruner") and isinstance(value, dict) and "options" not in value:
            base[key] = value  # a new sampler or pruner does not inherit the old one's options
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise UserError(
                f"--set {dotted}: '{prefix}' is a plain value ({child!r}), not a section; "
                f"set '{prefix}' itself"
            )
        node = child
    node[parts[-1]] = value


# ---------------------------------------------------------------- error messages


def _as_user_error(exc: ValidationError) -> UserError:
    error = exc.errors(include_url=False)[0]
    loc = tuple(str(p) for p in error["loc"])
    where = ".".join(loc) or "config"
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return UserError(f"unknown config key '{where}'{did_you_mean(loc[-1], allowed)}")
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        return UserError(message if message.startswith(("study.", "data.", "train.")) else f"{where}: {message}")
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return UserError(f"{where}: unknown value {error['input']!r}; choose from {expected}")
    got = error.get("input")
    return UserError(f"{where}: {message[0].lower()}{message[1:]} (got {got!r})")


def _allowed_keys(loc: Sequence[str]) -> list[str]:
    model: Any = StudyConfig
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))
