"""The Optuna objective: sample params, build, train epoch by epoch, report, prune. It glues
``search_spaces`` (what to try) to ``training`` (how to train), checkpoints every epoch so a retried
trial continues where its killed attempt stopped, and records what reports need."""

from __future__ import annotations

import contextlib
import gc
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import optuna
import torch

from optuna.trial import FrozenTrial

from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.storage.engine import params_in_one_write
from hpstudy.storage.recovery import RetryStaleTrial
from hpstudy.storage.urls import parse_storage_url, storage_option
from hpstudy.study import trial_attrs
from hpstudy.study.checkpoints import BadCheckpoint, CheckpointStore, CheckpointWriteError, CheckpointWriter, cpu_copy
from hpstudy.study.config import StudyConfig, TrainSection
from hpstudy.study.data import Splits
from hpstudy.study.errors import shorten
from hpstudy.study.models import build_model
from hpstudy.study.optimizers import build_optimizer
from hpstudy.study.reporting import CompletedTrials, EpochReporter
from hpstudy.study.threads import ThreadTuner, can_probe, training_step_probe
from hpstudy.study.training import (
    EarlyStopping,
    EpochResult,
    Precision,
    Scheduler,
    TrainingParts,
    fit,
    restore_training_state,
    training_state,
    warm_up,
)

ModelFactory = Callable[..., torch.nn.Module]
Restored = TypeVar("Restored")
OUT_OF_MEMORY = (torch.cuda.OutOfMemoryError, MemoryError)
#: What torch's CPU allocator (and a device's, where it raises a bare RuntimeError) says when an
#: allocation fails.
OUT_OF_MEMORY_WORDS = ("can't allocate memory", "out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` is a failed memory allocation: CUDA's, Python's, or the RuntimeError of
    torch's CPU allocator."""
    if isinstance(exc, OUT_OF_MEMORY):
        return True
    return type(exc) is RuntimeError and any(words in str(exc) for words in OUT_OF_MEMORY_WORDS)


def trial_seed(study_seed: int, trial_number: int, repeat: int | None = None) -> int:
    """The torch seed of one trial: derived from the study seed and the trial number, or, when the
    space searches ``seed`` (repeats), from that repeat index so repeats share nothing else."""
    key = [study_seed, 1, repeat] if repeat is not None else [study_seed, 0, trial_number]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


@dataclass
class LearningCurve:
    """Per-epoch measurements of one trial, as plain lists (JSON-ready, NaN as None)."""

    train_loss: list[float | None] = field(default_factory=list)
    train_accuracy: list[float | None] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)
    lr: list[float | None] = field(default_factory=list)
    epoch_seconds: list[float | None] = field(default_factory=list)

    def append(self, result: EpochResult) -> None:
        """Add one epoch."""
        for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            getattr(self, name).append(_json_float(getattr(result, name)))
        self.epoch_seconds.append(round(result.seconds, 6))

    def __len__(self) -> int:
        return len(self.val_loss)

    def to_dict(self) -> dict[str, list[float | None]]:
        """The stored form."""
        return {name: list(values) for name, values in vars(self).items()}

    @classmethod
    def from_dict(cls, stored: dict[str, list[float | None]]) -> LearningCurve:
        """Rebuild from ``to_dict``'s form (a checkpoint's history)."""
        return cls(**{name: list(stored.get(name, [])) for name in vars(cls())})


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass
class Attempt:
    """What one attempt at a trial tracks while it trains: its curve, best epoch, end reason and
    where its time went."""

    hp: Hyperparams
    lineage: int
    seed: int
    curve: LearningCurve = field(default_factory=LearningCurve)
    best_epoch: int | None = None
    best_score: float | None = None
    best_accuracy: float | None = None
    end_reason: str = "completed"
    resumed_from: int = 0
    threads: int | None = None  # CPU threads it trained with
    started: float = field(default_factory=time.perf_counter)
    timing: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the time spent inside the block to ``timing[phase]``."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.timing[phase] += time.perf_counter() - began

    def timing_record(self) -> dict[str, float]:
        """Seconds per phase, and the whole trial's wall time as ``total``."""
        record = {phase: round(seconds, 6) for phase, seconds in self.timing.items()}
        record["total"] = round(time.perf_counter() - self.started, 6)
        return record

    def observe(self, result: EpochResult, score: float, *, maximize: bool) -> None:
        """Add an epoch to the curve and keep the best one."""
        self.curve.append(result)
        if result.finite and (self.best_score is None or (score > self.best_score if maximize else score < self.best_score)):
            self.best_epoch, self.best_score, self.best_accuracy = result.epoch, score, result.val_accuracy

    def record(self) -> dict[str, Any]:
        """The user attrs a finished attempt leaves on its trial."""
        attrs: dict[str, Any] = {
            trial_attrs.CURVE: self.curve.to_dict(),
            trial_attrs.HYPERPARAMS: self.hp.to_flat(),
            trial_attrs.EPOCHS_REQUESTED: self.hp.epochs,
            trial_attrs.EPOCHS_RUN: len(self.curve),
            trial_attrs.END_REASON: self.end_reason,
        }
        if self.best_epoch is not None:
            attrs[trial_attrs.BEST_EPOCH] = self.best_epoch
            attrs[trial_attrs.VAL_ACCURACY] = self.best_accuracy
        attrs[trial_attrs.TIMING] = self.timing_record()
        if self.threads is not None:
            attrs[trial_attrs.THREADS] = self.threads
        return attrs


def begin_attempt(cfg: StudyConfig, frozen: FrozenTrial, hp: Hyperparams, *, started: float) -> Attempt:
    """The attempt for a trial that has just started: its lineage (the original trial when it is a
    retry) and its torch seed (inherited by a retry, else derived)."""
    lineage = trial_attrs.lineage(frozen)
    seed = frozen.user_attrs.get(trial_attrs.TRIAL_SEED)
    if seed is None:
        repeat = hp.seed if "seed" in cfg.search_space.searched else None
        seed = trial_seed(cfg.study.seed, lineage, repeat)
    return Attempt(hp=hp, lineage=lineage, seed=seed, started=started)


def schedule_of(train: TrainSection, hp: Hyperparams) -> tuple[tuple[int, float] | None, tuple[float, int] | None]:
    """Early stopping (patience, min delta) and ReduceLROnPlateau (factor, patience) for one trial:
    its own ``patience``/``min_delta``/``plateau`` params when the space sets them, else the
    ``train`` section's. None where off."""
    patience = hp.patience if hp.patience is not None else train.early_stopping.patience
    min_delta = hp.min_delta if hp.min_delta is not None else train.early_stopping.min_delta
    plateau = hp.plateau if hp.plateau is not None else train.scheduler.name == "plateau"
    stopping = (patience, min_delta) if patience is not None else None
    return stopping, ((train.scheduler.factor, train.scheduler.patience) if plateau else None)


def start_attrs(attempt: Attempt, *, device: torch.device) -> dict[str, Any]:
    """The user attrs written once an attempt knows its params: its seed and device."""
    return {trial_attrs.TRIAL_SEED: attempt.seed, trial_attrs.DEVICE: str(device)}


def checkpoint_of(attempt: Attempt, state: dict[str, Any], *, metric: str) -> dict[str, Any]:
    """What a checkpoint holds: a CPU copy of the training state (``training.training_state``'s
    form, whether the trial trains alone or packed), the curve so far, the scores it reported and
    its best epoch."""
    curve = attempt.curve.val_accuracy if metric == "val_accuracy" else attempt.curve.val_loss
    return {
        "training": cpu_copy(state),
        "curve": attempt.curve.to_dict(),
        "scores": [value if value is not None else math.nan for value in curve],
        "best_epoch": attempt.best_epoch,
        "best_score": attempt.best_score,
        "best_accuracy": attempt.best_accuracy,
    }


#: What a checkpoint dict holds (``checkpoint_of``), and the training state within it.
CHECKPOINT_KEYS = ("training", "curve", "scores", "best_epoch", "best_score", "best_accuracy")
TRAINING_KEYS = ("model", "optimizer", "generator", "torch_rng")


def checked_checkpoint(saved: dict[str, Any], *, epochs: int) -> str | None:
    """What is wrong with checkpoint ``saved`` of a trial of ``epochs`` epochs (a problem in a few
    words), or None when it has ``checkpoint_of``'s form: a file that a damaged disk or another
    program left checksum-sound but not a checkpoint is refused before any of it is used."""
    missing = [key for key in CHECKPOINT_KEYS if key not in saved]
    training = saved.get("training")
    if missing or not isinstance(training, dict):
        return f"not a checkpoint: no {', '.join(missing) or 'training state'}"
    if any(key not in training for key in TRAINING_KEYS):
        return "not a checkpoint: its training state is incomplete"
    try:
        curve = LearningCurve.from_dict(saved["curve"])
        scores = [float(value) for value in saved["scores"]]
    except (TypeError, ValueError, AttributeError):
        return "not a checkpoint: its learning curve is malformed"
    if not 1 <= len(curve) <= epochs or len(scores) != len(curve) or any(
            len(values) != len(curve) for values in curve.to_dict().values()):
        return f"not a checkpoint of this trial: {len(curve)} epochs recorded of {epochs}"
    return None


def discard_bad_checkpoint(store: CheckpointStore, lineage: int, problem: BadCheckpoint, *, trial_number: int) -> None:
    """Say in one line that the checkpoint of ``lineage`` cannot be used and that trial
    ``trial_number`` starts again from epoch 0 (its params kept), and delete the file: it would
    be refused again, and the new attempt writes its own."""
    retry = f" (retry of trial {lineage})" if lineage != trial_number else ""
    print(f"hpstudy: warning: {problem}; trial {trial_number}{retry} starts again from epoch 0",
          file=sys.stderr, flush=True)
    with contextlib.suppress(OSError):  # a folder in its place, say: the write that replaces it says so
        store.remove(lineage)


def restore_checkpoint(
    store: CheckpointStore, lineage: int, restore: Callable[[dict[str, Any]], Restored], *, epochs: int, trial_number: int,
) -> tuple[dict[str, Any], Restored] | None:
    """The checkpoint of ``lineage`` (checksum and form verified) and what ``restore`` made of it
    (a model built and restored from it, a pack member), or None when there is none, or when it
    cannot be used: then one line says so, the file is deleted, and the trial starts from epoch 0
    with its params. A checkpoint never costs the trial."""
    try:
        saved = store.load(lineage)
        if saved is None:
            return None
        problem = checked_checkpoint(saved, epochs=epochs)
        if problem is not None:
            raise BadCheckpoint(store.path(lineage), problem)
        try:
            return saved, restore(saved)
        except Exception as exc:  # noqa: BLE001 - shapes, keys or types that do not fit this trial
            reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
            raise BadCheckpoint(store.path(lineage), f"does not fit this trial: {reason}") from None
    except BadCheckpoint as problem:
        discard_bad_checkpoint(store, lineage, problem, trial_number=trial_number)
        return None


def resume_command(cfg: StudyConfig) -> str:
    """The command that continues ``cfg``'s study (storage password masked)."""
    return f"hpstudy resume --study-name {cfg.study.name}{storage_option(parse_storage_url(cfg.storage).display())}"


def queue_cut_trial(study: optuna.Study, backend: Any, trial_id: int) -> None:
    """Queue the retry of a trial a failed checkpoint write is about to end (Optuna then marks it
    failed): it continues from the last checkpoint that made it to disk. Queued first, so a kill
    in between leaves a trial that recovery fails without queuing it twice."""
    RetryStaleTrial()(study, backend.get_trial(trial_id))


def resume_attempt(attempt: Attempt, saved: dict[str, Any], reporter: EpochReporter) -> None:
    """Continue ``attempt`` from checkpoint ``saved``: its curve and best epoch, and its scores
    reported again under this trial (the training state is the caller's to restore)."""
    attempt.curve = LearningCurve.from_dict(saved["curve"])
    attempt.best_epoch, attempt.best_score = saved["best_epoch"], saved["best_score"]
    attempt.best_accuracy = saved["best_accuracy"]
    attempt.resumed_from = len(attempt.curve)
    for epoch, value in enumerate(saved["scores"], start=1):
        reporter.report(value, epoch)


class CheckpointPolicy:
    """When to checkpoint: every ``every_epochs`` epochs, or (``None``) whenever the training time
    since the last checkpoint is at least ``1 / budget`` times what a checkpoint costs, so that
    checkpoints take at most ``budget`` of the training time. A long epoch is checkpointed every
    time; a 10 ms epoch every few epochs."""

    def __init__(self, *, every_epochs: int | None, budget: float = 0.02) -> None:
        self.every_epochs = every_epochs
        self.budget = budget
        self.cost = 0.0  # seconds the last checkpoint cost (main thread and writer thread)
        self._epochs = 0
        self._seconds = 0.0

    def due(self, epoch_seconds: float) -> bool:
        """Count one more epoch; True when a checkpoint is due now."""
        self._epochs += 1
        self._seconds += epoch_seconds
        if self.every_epochs is not None:
            return self._epochs >= self.every_epochs
        return self._seconds * self.budget >= self.cost

    def written(self, cost: float) -> None:
        """A checkpoint was just taken; it cost ``cost`` seconds."""
        self.cost, self._epochs, self._seconds = cost, 0, 0.0


def keep_if_best(
    checkpoints: CheckpointStore, completed: CompletedTrials, attempt: Attempt, model: torch.nn.Module, *,
    trial_number: int, maximize: bool,
) -> None:
    """``train.keep_best_model``: save ``model``'s weights as the study's best model when the
    attempt, about to complete, beats every complete trial (read afresh)."""
    score = attempt.best_score
    if score is None:
        return
    completed.refresh()
    values = [t.value for t in completed.get() if t.value is not None]
    if values and not (score > max(values) if maximize else score < min(values)):
        return
    checkpoints.save_best_model(
        cpu_copy(model.state_dict()), {"trial": trial_number, "value": score, "hyperparams": attempt.hp.to_flat()}
    )


class Objective:
    """Callable objective for ``study.optimize``: one call trains one trial.

    ``backend`` is the RDB storage under ``study`` (batched writes; without it every value is
    written through Optuna one by one). ``checkpoints`` with a ``writer`` turns checkpoints on;
    ``worker`` is recorded on each trial so a dead worker's trials can be recognised;
    ``model_factory`` builds the model (``build_model``'s signature).
    """

    def __init__(
        self,
        cfg: StudyConfig,
        splits: Splits,
        *,
        study: optuna.Study,
        device: torch.device,
        backend: Any = None,
        checkpoints: CheckpointStore | None = None,
        writer: CheckpointWriter | None = None,
        worker: dict[str, Any] | None = None,
        model_factory: ModelFactory = build_model,
    ) -> None:
        self.cfg = cfg
        self.channels_last = cfg.model.kind == "cnn" and (
            cfg.train.channels_last == "on" or (cfg.train.channels_last == "auto" and device.type == "cuda")
        )
        self.splits = splits.to(device, channels_last=self.channels_last)
        self.study = study
        self.device = device
        self.backend = backend if backend is not None else study._storage  # noqa: SLF001
        self.checkpoints = checkpoints
        self.writer = writer
        self.worker = worker
        self.model_factory = model_factory
        self.completed = CompletedTrials(study)
        threads = cfg.train.threads
        self.threads = ThreadTuner(setting=None if threads == "auto" else threads, available=torch.get_num_threads())
        warm_up()
        self._maximize = cfg.study.direction == "maximize"

    def __call__(self, trial: optuna.Trial) -> float:
        began = time.perf_counter()
        trial_id = trial._trial_id  # noqa: SLF001 - Optuna's storage calls take the id
        if self.worker is not None:  # first of all: a kill from here on leaves a recognisable trial
            self._set_attrs(trial, trial_id, {trial_attrs.WORKER: self.worker})
        frozen = self.backend.get_trial(trial_id)
        with params_in_one_write(self.backend, trial_id):
            hp = self.cfg.sample(trial)
        attempt = begin_attempt(self.cfg, frozen, hp, started=began)
        self._set_attrs(trial, trial_id, start_attrs(attempt, device=self.device))
        self.completed.refresh()
        reporter = EpochReporter(self.study, trial, trial_id=trial_id, backend=self.backend, completed=self.completed)
        attempt.timing["sample"] = time.perf_counter() - began
        out_of_memory = None
        try:
            self._train(trial, attempt, reporter)
        except optuna.TrialPruned:
            self._finish(trial, trial_id, attempt, reporter, keep_checkpoint=False)
            raise
        except BaseException as exc:
            if is_out_of_memory(exc):
                out_of_memory = f"out of memory at epoch {len(attempt.curve) + 1}: {shorten(str(exc), limit=200)}"
            else:
                attempt.end_reason = f"stopped by {type(exc).__name__} at epoch {len(attempt.curve) + 1}"
                self._finish(trial, trial_id, attempt, reporter, keep_checkpoint=True)  # a retry continues from it
                raise
        if out_of_memory is not None:  # outside the except block, so the traceback's tensors are gone
            self._free_memory()
            attempt.end_reason = out_of_memory
            self._finish(trial, trial_id, attempt, reporter, keep_checkpoint=False)
            raise optuna.TrialPruned(out_of_memory)
        if len(attempt.curve) < hp.epochs:
            attempt.end_reason = f"early stopped at epoch {len(attempt.curve)}"
        self._finish(trial, trial_id, attempt, reporter, keep_checkpoint=False)
        assert attempt.best_score is not None, "fit yields at least one epoch"
        return attempt.best_score

    # ------------------------------------------------------------ training

    def _train(self, trial: optuna.Trial, attempt: Attempt, reporter: EpochReporter) -> None:
        policy = CheckpointPolicy(every_epochs=self.cfg.train.checkpoint_every)
        with attempt.timed("setup"):
            model, optimizer, parts = self._resume(trial, attempt, reporter) or self._build(attempt)
        with self._stopped_by_the_disk(trial):
            self._fit(trial, attempt, reporter, model, optimizer, parts, policy)

    def _fit(
        self,
        trial: optuna.Trial,
        attempt: Attempt,
        reporter: EpochReporter,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        parts: TrainingParts,
        policy: CheckpointPolicy,
    ) -> None:
        """Train epoch by epoch from where the attempt stands: report, checkpoint, prune."""
        hp = attempt.hp
        for result in self._epochs(model, optimizer, hp, parts, start_epoch=len(attempt.curve) + 1):
            attempt.timing["train"] += result.train_seconds
            attempt.timing["validate"] += result.val_seconds
            score = self._score(result)
            attempt.observe(result, score, maximize=self._maximize)
            with attempt.timed("report_prune"):
                reporter.report(score, result.epoch)
            if not result.finite:
                attempt.end_reason = f"diverged at epoch {result.epoch} (loss {result.train_loss})"
                raise optuna.TrialPruned(attempt.end_reason)
            if self.writer is not None and policy.due(result.seconds):
                with attempt.timed("checkpoint"):
                    started = time.perf_counter()
                    self._checkpoint(attempt, training_state(model, optimizer, parts))
                    policy.written(time.perf_counter() - started + self.writer.last_write_seconds)
            with attempt.timed("report_prune"):
                prune = reporter.should_prune()
            if prune:
                attempt.end_reason = f"pruned at epoch {result.epoch}"
                raise optuna.TrialPruned(attempt.end_reason)
        if self.cfg.train.keep_best_model and self.checkpoints is not None:
            keep_if_best(self.checkpoints, self.completed, attempt, model, trial_number=trial.number,
                         maximize=self._maximize)

    def _build(self, attempt: Attempt) -> tuple[torch.nn.Module, torch.optim.Optimizer, TrainingParts]:
        """The seeded model, its optimizer, and the parts ``fit`` needs (batch-order generator,
        LR scheduler, early stopping)."""
        hp, train_cfg = attempt.hp, self.cfg.train
        torch.manual_seed(attempt.seed)
        model = self.model_factory(
            hp, kind=self.cfg.model.kind, input_shape=self.splits.input_shape, n_classes=self.splits.n_classes
        ).to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        optimizer = build_optimizer(model, hp)
        attempt.threads = self._choose_threads(model, hp)
        if train_cfg.compile:
            model = torch.compile(model)
        stopping, plateau = schedule_of(train_cfg, hp)
        scheduler = Scheduler(optimizer, factor=plateau[0], patience=plateau[1]) if plateau else None
        early_stopping = EarlyStopping(*stopping) if stopping else None
        generator = torch.Generator(device=self.device).manual_seed(attempt.seed)
        parts = TrainingParts(generator, scheduler, early_stopping, Precision.make(train_cfg.amp, self.device))
        return model, optimizer, parts

    def _choose_threads(self, model: torch.nn.Module, hp: Hyperparams) -> int | None:
        """Set the CPU threads this trial trains with (``train.threads``), timing a few steps on a
        copy of ``model`` when they are ``auto``. None on a GPU, where they do not matter."""
        if self.device.type != "cpu":
            return None
        splits = self.splits
        if not (can_probe(model) and len(splits.x_train) >= 2):
            return self.threads.apply(None)

        def probe() -> Callable[[], None]:
            return training_step_probe(model, lambda scratch: build_optimizer(scratch, hp), splits.x_train,
                                       splits.y_train, batch_size=max(2, hp.batch_size))

        return self.threads.apply(probe)

    def _epochs(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        hp: Hyperparams,
        parts: TrainingParts,
        *,
        start_epoch: int,
    ) -> Iterator[EpochResult]:
        splits = self.splits
        return fit(
            model,
            optimizer,
            (splits.x_train, splits.y_train, splits.x_val, splits.y_val),
            epochs=hp.epochs,
            batch_size=hp.batch_size,
            parts=parts,
            eval_batch_size=self.cfg.train.eval_batch_size,
            start_epoch=start_epoch,
        )

    # ------------------------------------------------------------ checkpoints

    def _resume(
        self, trial: optuna.Trial, attempt: Attempt, reporter: EpochReporter
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer, TrainingParts] | None:
        """The model, optimizer and parts restored from the lineage's checkpoint, its epochs
        re-reported; None when there is no usable checkpoint (then training starts afresh)."""
        if self.checkpoints is None:
            return None
        resumed = restore_checkpoint(self.checkpoints, attempt.lineage, lambda saved: self._restored(attempt, saved),
                                     epochs=attempt.hp.epochs, trial_number=trial.number)
        if resumed is None:
            return None
        saved, restored = resumed
        resume_attempt(attempt, saved, reporter)
        trial.set_user_attr(trial_attrs.RESUMED_FROM, {"trial": attempt.lineage, "epoch": attempt.resumed_from})
        return restored

    def _restored(
        self, attempt: Attempt, saved: dict[str, Any]
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer, TrainingParts]:
        model, optimizer, parts = self._build(attempt)
        restore_training_state(saved["training"], model, optimizer, parts)
        return model, optimizer, parts

    @contextlib.contextmanager
    def _stopped_by_the_disk(self, trial: optuna.Trial) -> Iterator[None]:
        """A checkpoint the disk refused ends the run as the README says: the trial is queued again
        (it continues from its last checkpoint on disk) and the error says which file, why and how
        to go on. Optuna marks the trial failed as the error passes."""
        try:
            yield
        except CheckpointWriteError as exc:
            queue_cut_trial(self.study, self.backend, trial._trial_id)  # noqa: SLF001 - storage calls take the id
            raise exc.stopped([trial.number], resume=resume_command(self.cfg)) from None

    def _checkpoint(self, attempt: Attempt, state: dict[str, Any]) -> None:
        assert self.checkpoints is not None and self.writer is not None
        self.writer.submit(self.checkpoints.path(attempt.lineage), checkpoint_of(attempt, state, metric=self.cfg.study.metric))

    # ------------------------------------------------------------ bookkeeping

    def _finish(
        self, trial: optuna.Trial, trial_id: int, attempt: Attempt, reporter: EpochReporter, *, keep_checkpoint: bool
    ) -> None:
        with attempt.timed("record"):
            reporter.flush()
            if self.checkpoints is not None and self.writer is not None:
                if keep_checkpoint:  # a write that failed leaves the one before: the retry goes on from it
                    self.writer.flush(raise_errors=False)
                else:
                    self.writer.discard(self.checkpoints.path(attempt.lineage))
        self._set_attrs(trial, trial_id, attempt.record())

    def _set_attrs(self, trial: optuna.Trial, trial_id: int, attrs: dict[str, Any]) -> None:
        """Write user attrs in one transaction when the storage can, else one by one."""
        if hasattr(self.backend, "set_trial_user_attrs"):
            self.backend.set_trial_user_attrs(trial_id, attrs)
        else:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)

    def _free_memory(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _score(self, result: EpochResult) -> float:
        return result.val_accuracy if self.cfg.study.metric == "val_accuracy" else result.val_loss
