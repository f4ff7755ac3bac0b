"""StudyConfig: the one validated, frozen description of a study, and how it is read.

A config comes from a preset, a YAML file (which may start from a preset with ``preset: NAME``),
and ``--set key.path=value`` overrides, merged in that order and validated once. Every problem is
a UserError with a one-line message that names the key and the fix.
"""

from __future__ import annotations

import copy
import math
import os
import re
import stat
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from optuna.trial import BaseTrial
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from hpstudy.search_spaces.catalog import NOT_IN_VARIANTS, PARAMETERS
from hpstudy.search_spaces.params import GRID_LIMIT
from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.search_spaces.presets import DEFAULT_PRESET, Preset, get_preset
from hpstudy.search_spaces.space import SearchSpace
from hpstudy.storage import STORAGE_ENV
from hpstudy.study.errors import UserError, did_you_mean, quote, shorten
from hpstudy.study.model_size import check_model_size
from hpstudy.study.optuna_parts import build_pruner, build_sampler

SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc")
PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "threshold", "none")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
DEFAULT_STORAGE = "sqlite:///hpstudy.db"
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,4})?")

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


#: Upper bounds of counts and durations: beyond them a value is a typo, would never finish, or would
#: overflow what it is handed to (Python's sleep and thread waits, NumPy's 32-bit seeds).
MAX_TRIALS = 1_000_000
MAX_EPOCHS = 100_000
MAX_SECONDS = 10 * 365 * 24 * 3600  # ten years
MAX_SEED = 2**32 - 1
MAX_PACK = 1_024
MAX_THREADS = 1_024
MAX_COUNT = 2**31 - 1


def _up_to(ceiling: int | float, *, least: int = 1) -> Any:
    """A field type: an int (a float for a float ceiling) from ``least`` to ``ceiling``."""
    kind = float if isinstance(ceiling, float) else int
    floor = Field(gt=0) if least == 1 else Field(ge=least)  # "greater than 0", as PositiveInt says it
    return Annotated[kind, floor, Field(le=ceiling)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


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
    n_trials: _up_to(MAX_TRIALS) = 20  # type: ignore[valid-type]
    timeout: _up_to(float(MAX_SECONDS), least=0) | None = None  # type: ignore[valid-type]
    budget_epochs: _up_to(MAX_TRIALS * MAX_EPOCHS) | None = None  # type: ignore[valid-type]
    seed: _up_to(MAX_SEED, least=0) = 0  # type: ignore[valid-type]
    heartbeat_interval: _up_to(3600) = 5  # type: ignore[valid-type]
    grace_period: _up_to(7 * 24 * 3600) = 20  # type: ignore[valid-type]
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
            raise ValueError(f"{quote(name)} has a space at an end or a control character; name it {quote(tidy)}")
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
    train_subset: _up_to(MAX_COUNT, least=2) | None = None  # type: ignore[valid-type] # a step needs two samples
    val_subset: _up_to(MAX_COUNT) | None = None  # type: ignore[valid-type]

    @field_validator("root")
    @classmethod
    def _root_is_a_path(cls, value: str) -> str:
        return _path_text("data.root", value)


class ModelSection(_Section):
    """The model family; the searched params fill in its shape."""

    kind: Literal["mlp", "cnn"] = "mlp"
    per_layer_units: bool = False


class EarlyStoppingConfig(_Section):
    """Stop a trial when validation loss has not improved by ``min_delta`` for ``patience`` epochs."""

    patience: _up_to(MAX_EPOCHS) | None = None  # type: ignore[valid-type]
    min_delta: NonNegativeFloat = 0.0


class SchedulerConfig(_Section):
    """Learning-rate schedule: none, or ReduceLROnPlateau on validation loss."""

    name: Literal["none", "plateau"] = "none"
    factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    patience: _up_to(MAX_EPOCHS, least=0) = 2  # type: ignore[valid-type]


class TrainSection(_Section):
    """How each trial trains: device, evaluation batch, mixed precision (``amp``), ``torch.compile``,
    channels-last CNNs (``auto``: on CUDA), CPU threads (``auto``: measured per trial, see
    ``threads.py``; a number fixes them), early stopping, LR schedule, checkpoints
    (``checkpoint_every`` epochs, or None: as often as 2 % of the training time allows;
    ``checkpoint_dir`` defaults to ``<sqlite file>.checkpoints`` beside a SQLite store, else
    ``$XDG_STATE_HOME/hpstudy/checkpoints``, ``~/.local/state/...``)."""

    device: str = "auto"
    eval_batch_size: _up_to(MAX_COUNT) = 4096  # type: ignore[valid-type]
    deterministic: bool = False
    amp: Literal["off", "bf16", "fp16"] = "off"
    compile: bool = False
    channels_last: Literal["auto", "on", "off"] = "auto"
    pack: _up_to(MAX_PACK) = 1  # type: ignore[valid-type]
    threads: Literal["auto"] | _up_to(MAX_THREADS) = "auto"  # type: ignore[valid-type]
    checkpoints: bool = True
    checkpoint_every: _up_to(MAX_EPOCHS) | None = None  # type: ignore[valid-type]
    checkpoint_dir: str | None = None
    keep_best_model: bool = False
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    scheduler: SchedulerConfig = SchedulerConfig()

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE_PATTERN.fullmatch(value):
            raise ValueError(f"unknown device {quote(value)}; use auto, cpu, cuda or cuda:N")
        return value

    @field_validator("checkpoint_dir")
    @classmethod
    def _checkpoint_dir_is_a_path(cls, value: str | None) -> str | None:
        return None if value is None else _path_text("train.checkpoint_dir", value)

    @model_validator(mode="after")
    def _best_model_beside_the_checkpoints(self) -> TrainSection:
        if self.keep_best_model and not self.checkpoints:
            raise ValueError("train.keep_best_model needs train.checkpoints: true (the best model is kept in "
                             "the study's checkpoint folder); turn checkpoints on or keep_best_model off")
        return self


def _path_text(key: str, value: str) -> str:
    """``value`` if it can name a file: not empty, no NUL or other control character."""
    if not value or not value.isprintable():
        raise ValueError(f"{key}: {quote(value)} cannot name a folder (empty, or a control character in it); "
                         "give a path")
    return value


SearchSpaceField = Annotated[
    SearchSpace,
    BeforeValidator(SearchSpace.from_dict),
    PlainSerializer(lambda space: space.to_dict(), return_type=dict),
]


class StudyConfig(_Section):
    """Everything a study needs, validated. Build it with ``load_config`` or ``from_dict``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, arbitrary_types_allowed=True,
                              allow_inf_nan=False)

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
    def _largest_model_fits(self) -> StudyConfig:
        check_model_size(self)
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
                raise UserError(f"variants.{name}: {quote(key)} cannot be set by a variant{did_you_mean(str(key), allowed)}")
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
                    f"search_space.variant: no variant named {quote(value)}{did_you_mean(str(value), cfg.variants)}; "
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


#: Bounds on what any YAML input (a config file, a ``--set`` value, ``--params``) may hold, checked while
#: it is read, before a value is built: aliases can make a few lines stand for billions of values.
MAX_DEPTH = 32
MAX_VALUES = 100_000
MAX_SCALAR_CHARS = 10_000
MAX_CONFIG_BYTES = 1_000_000


class _TooLarge(yaml.MarkedYAMLError):
    """Input beyond MAX_DEPTH, MAX_VALUES or MAX_SCALAR_CHARS, or an alias that loops."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``), refuses a key
    written twice in one mapping (plain YAML keeps the last and silently drops the first), and
    measures every node as it is composed: its size with aliases expanded and its depth, refusing
    input beyond the bounds above before anything is constructed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open = 0
        self._measures: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, depth)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._measures:
                raise _TooLarge(None, None, "an alias refers to the value that contains it (aliases must not loop)",
                                event.start_mark)
            return super().compose_node(parent, index)
        self._open += 1
        try:
            if self._open > MAX_DEPTH:
                raise _TooLarge(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            node = super().compose_node(parent, index)
        finally:
            self._open -= 1
        self._measures[id(node)] = self._measure(node)
        return node

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        """(values, depth) of ``node`` with aliases expanded; its children are measured already."""
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_SCALAR_CHARS:
                raise _TooLarge(None, None, f"a value of {len(node.value)} characters is longer than the "
                                f"{MAX_SCALAR_CHARS} hpstudy reads", node.start_mark)
            return 1, 1
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
        size = 1 + sum(self._measures[id(child)][0] for child in children)
        depth = 1 + max((self._measures[id(child)][1] for child in children), default=0)
        if size > MAX_VALUES:
            raise _TooLarge(None, None, f"it stands for more than {MAX_VALUES:,} values (aliases expanded)",
                            node.start_mark)
        if depth > MAX_DEPTH:
            raise _TooLarge(None, None, f"nested more than {MAX_DEPTH} levels deep (aliases expanded)",
                            node.start_mark)
        return size, depth

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
                    None, None, f"key {quote(key)} is written twice; keep one", key_node.start_mark
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
    """Parse YAML text, or raise UserError naming ``source`` and the line of the problem.

    Input nested more than MAX_DEPTH levels, standing for more than MAX_VALUES values once its
    aliases are expanded, or holding a value longer than MAX_SCALAR_CHARS is refused as it is read.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except _TooLarge as exc:
        raise UserError(f"{source}: too large to read{_line_of(exc)}: {exc.problem}; write it smaller") from None
    except yaml.YAMLError as exc:
        problem = shorten(getattr(exc, "problem", None) or "syntax error")
        raise UserError(f"{source}: not valid YAML{_line_of(exc)} ({problem}); fix the syntax") from None
    except (ValueError, OverflowError):  # Python refuses the value a well-formed scalar stands for
        raise UserError(f"{source}: a value cannot be read (a number of too many digits, or a date that does "
                        "not exist); shorten it, or quote it to make it a string") from None


def _line_of(exc: yaml.YAMLError) -> str:
    """`` at line N`` for a YAML error that knows where it happened, else nothing."""
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; refuse a missing, unreadable, oversized or non-mapping
    file, and anything that is not a regular file (a directory, FIFO, socket or device) before it
    is opened."""
    path = Path(path)
    shown = quote(str(path))
    text = _read_regular_file(path, shown=shown)
    raw = parse_yaml(text, source=f"config file {shown}")
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        raise UserError(
            f"config file {shown} is {kind}, not a mapping; "
            f"write sections such as study:, data:, search_space:"
        )
    return raw


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _read_regular_file(path: Path, *, shown: str) -> str:
    """The text of the regular file ``path``; its type and size are checked before it is read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"config file {shown} not found; check the path, or use --preset NAME") from None
    except (OSError, ValueError) as exc:  # permission, a name too long, a NUL in the name
        raise UserError(f"config file {shown} cannot be read ({_reason(exc)}); check the path") from None
    for is_kind, kind in _FILE_KINDS:
        if is_kind(mode):
            raise UserError(f"config file {shown} is {kind}, not a file; give the path of a YAML file")
    try:
        with open(path, "rb", opener=_nonblocking) as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # replaced since it was checked
                raise UserError(f"config file {shown} is not a regular file; give the path of a YAML file")
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise UserError(f"config file {shown} is larger than {MAX_CONFIG_BYTES:,} bytes; a config is a "
                            "few lines of YAML: check the path")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {shown} cannot be read ({_reason(exc)})") from None


def _nonblocking(path: str, flags: int) -> int:
    """Open without waiting: a FIFO put in the file's place is never waited on."""
    return os.open(path, flags | os.O_NONBLOCK)


def _reason(exc: BaseException) -> str:
    """The short reason of an OS or decoding error, without Python's type names."""
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return "a NUL character in the path" if "null" in str(exc) else shorten(str(exc))


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``key.path=value`` and parse the value as YAML (``0.1`` a float, ``[a, b]`` a list)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip() or not re.fullmatch(r"[A-Za-z_][\w.]*", key.strip()):
        raise UserError(f"--set needs key.path=value, e.g. --set study.n_trials=50 (got {quote(item)})")
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
            raise UserError(f"preset must be a name (got {quote(preset_name)}); `hpstudy spaces` lists them")
        chosen = get_preset(preset_name)
        raw = copy.deepcopy(dict(chosen.config))
        if quick:
            _apply(raw, copy.deepcopy(dict(chosen.quick)))
    elif quick:
        raise UserError("--quick shrinks a preset; use it with --preset NAME (or a file with preset: NAME)")
    if file_raw is not None:
        _merge(raw, file_raw)
    flags = {**(values or {}), **_repeats_value(repeats)}
    pairs = [*map(parse_override, overrides), *flags.items()]
    _refuse_flag_and_set(flags, pairs[: len(overrides)])
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


def _repeats_value(repeats: int | None) -> dict[str, list[int]]:
    """The ``search_space.seed`` grid that ``--repeats R`` stands for (none without it)."""
    if repeats is None:
        return {}
    if not 1 <= repeats <= GRID_LIMIT:
        raise UserError(f"--repeats must be from 1 to {GRID_LIMIT:,} (got {quote(repeats)})")
    return {"search_space.seed": list(range(repeats))}


def _refuse_flag_and_set(flags: Mapping[str, Any], overrides: Sequence[tuple[str, Any]]) -> None:
    """Refuse a flag and a ``--set`` that give one key different values (the flag would silently win),
    whether the ``--set`` names the key itself or a section holding it."""
    given: dict[str, Any] = {}
    for key, value in overrides:
        _set_dotted(given, key, value)
    for key, value in flags.items():
        node: Any = given
        for part in key.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT and node != value:
            flag = FLAG_OF_KEY.get(key, f"the command's own {key}")
            raise UserError(f"{flag} and --set both set {key}, to different values; give it once")


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
_ABSENT = object()
#: The flag behind each key that ``load_config``'s ``values`` (and ``repeats``) set, for messages.
FLAG_OF_KEY: Mapping[str, str] = MappingProxyType({
    "study.n_trials": "--n-trials",
    "study.timeout": "--timeout",
    "study.budget_epochs": "--budget-epochs",
    "study.name": "--study-name",
    "study.seed": "--seed",
    "storage": f"--storage (or ${STORAGE_ENV})",
    "train.device": "--device",
    "train.pack": "--pack",
    "search_space.seed": "--repeats",
    "study.sampler": "--samplers",
})


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
                f"{shorten(dotted)}: {quote(prefix)} is a plain value ({quote(child)}), not a section; "
                f"set {quote(prefix)} itself"
            )
        node = child
    node[parts[-1]] = value


# ---------------------------------------------------------------- error messages


def _as_user_error(exc: ValidationError) -> UserError:
    error = exc.errors(include_url=False)[0]
    loc = tuple(str(p) for p in error["loc"])
    where = shorten(".".join(loc)) or "config"
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return UserError(f"unknown config key {quote(where)}{did_you_mean(loc[-1], allowed)}")
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        return UserError(message if message.startswith(("study.", "data.", "train.")) else f"{where}: {message}")
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return UserError(f"{where}: unknown value {quote(error['input'])}; choose from {expected}")
    got = error.get("input")
    return UserError(f"{where}: {message[0].lower()}{message[1:]} (got {quote(got)})")


def _allowed_keys(loc: Sequence[str]) -> list[str]:
    model: Any = StudyConfig
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))
