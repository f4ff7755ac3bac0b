"""Running a study: check everything, load the data once, open the storage, optimize to a target.

``run_study`` starts or continues a study from a config; ``resume_study`` continues one from the
config stored in it (``worker`` joins one the same way, as one of several processes). All count
``n_trials`` as a target total of finished (complete + pruned) trials across runs and workers.
A run first recovers trials whose process died, then samples new ones, and stops at the target,
the timeout, the epoch budget, Ctrl-C or SIGTERM. An interrupted trial is failed and queued again
with the same params, so the next run retries it from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpstudy.storage.engine import Heartbeat, StorageUnavailable, open_storage
from hpstudy.storage.recovery import (
    RetryStaleTrial,
    WorkerIdentity,
    fail_and_retry,
    recover_abandoned_trials,
    started_but_unfinished,
)
from hpstudy.storage.stored_config import (
    RunRecord,
    check_same_config,
    checkpoint_store,
    has_stored_config,
    save_config,
    stored_config,
)
from hpstudy.storage.studies import find_study, load_existing_study
from hpstudy.storage.urls import StorageLocation, parse_storage_url
from hpstudy.study import trial_attrs
from hpstudy.study.checkpoints import BEST_MODEL_NAME, CheckpointStore, CheckpointWriter, check_checkpoint_root
from hpstudy.study.config import StudyConfig
from hpstudy.study.data import Splits, load_splits
from hpstudy.study.devices import describe_device, resolve_device
from hpstudy.study.interrupts import CleanupShield, Terminated, sigterm_as_interrupt
from hpstudy.study.models import build_model
from hpstudy.study.objective import ModelFactory, Objective
from hpstudy.study.optuna_parts import build_pruner, build_sampler
from hpstudy.study.pack_runner import PackedRun

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


class RunObserver(Protocol):
    """What a run tells its viewer (the CLI's progress display, or nothing)."""

    def started(self, study: optuna.Study, *, target: int, finished: int, device: str) -> None:
        """The run is about to sample its first trial."""

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A trial of this run has ended (any state)."""


@dataclass(frozen=True)
class RunResult:
    """How a run ended and what the study holds now."""

    study_name: str
    storage: str
    counts: Mapping[str, int]
    target: int
    best_trial: FrozenTrial | None
    trials_this_run: int
    wall_seconds: float
    device: str
    stop_reason: str
    recovered: tuple[int, ...] = ()
    best_model: Path | None = None  # ``train.keep_best_model``'s file, once there is one
    budget_epochs: int | None = None  # ``study.budget_epochs``
    epochs_run: int = 0  # by the study's finished trials, all runs together
    stored_limits: tuple[int, int | None] | None = None  # the stored config's n_trials and budget_epochs
    worker_failures: tuple[str, ...] = ()  # how each worker of ``run --workers`` that failed on its own ended

    def resume_flags(self) -> str:
        """The ``resume`` flags that go on with this run's work: its target and budget where they
        differ from the stored config's (``--n-trials`` and ``--budget-epochs`` count for one run),
        and for a study stopped by its epoch budget, that budget raised by as much again. A
        timeout counts per run, so it needs none."""
        stored_target, stored_budget = self.stored_limits or (self.target, self.budget_epochs)
        flags = f" --n-trials {self.target}" if self.target != stored_target else ""
        if self.stop_reason == "epoch budget spent" and self.budget_epochs is not None:
            flags += f" --budget-epochs {self.epochs_run + self.budget_epochs}"
        elif self.budget_epochs is not None and self.budget_epochs != stored_budget:
            flags += f" --budget-epochs {self.budget_epochs}"
        return flags

    @property
    def interrupted(self) -> bool:
        """True when Ctrl-C or SIGTERM ended the run early."""
        return self.stop_reason in ("interrupted", "terminated")

    @property
    def finished(self) -> int:
        """Complete plus pruned trials in the study."""
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)


def run_study(
    cfg: StudyConfig, *, observer: RunObserver | None = None, model_factory: ModelFactory = build_model
) -> RunResult:
    """Start the study ``cfg`` describes, or continue it if it exists with the same config.

    ``model_factory`` builds each trial's model (``build_model``'s signature): pass your own to
    tune a model family hpstudy does not ship.
    """
    location, device, splits = prepare_run(cfg)
    storage = open_storage(location, mode="create")
    create_if_missing(storage, cfg)
    return _run(cfg, location=location, device=device, splits=splits, observer=observer, model_factory=model_factory)


def prepare_run(cfg: StudyConfig) -> tuple[StorageLocation, torch.device, Splits]:
    """Every check a new run makes before it writes anything: storage URL, device, an existing
    study's config, the data. Returns what the run needs."""
    location = parse_storage_url(cfg.storage)
    device = resolve_device(cfg.train.device)
    if cfg.train.checkpoints:  # before anything is created: a run must not find out after its first trial
        check_checkpoint_root(cfg.train.checkpoint_dir, location.sqlite_path)
    existing = find_study(location, cfg.study.name)
    if existing is not None:
        check_same_config(existing, cfg)
    return location, device, load_splits(cfg.data, seed=cfg.study.seed)


def resume_study(
    *,
    storage_url: str,
    study_name: str,
    overrides: Mapping[str, Any] | None = None,
    worker_index: int = 0,
    observer: RunObserver | None = None,
) -> RunResult:
    """Continue ``study_name`` from its stored config; ``overrides`` may change run-only keys
    (``study.n_trials``, ``study.timeout``, ``train.device``...). ``worker_index`` tells workers
    of one study apart (each samples with its own seed)."""
    location = parse_storage_url(storage_url)
    cfg = resumed_config(storage_url=storage_url, study_name=study_name, overrides=overrides)
    device = resolve_device(cfg.train.device)
    if cfg.train.checkpoints:
        check_checkpoint_root(cfg.train.checkpoint_dir, location.sqlite_path)
    splits = load_splits(cfg.data, seed=cfg.study.seed)
    return _run(cfg, location=location, device=device, splits=splits, observer=observer, worker_index=worker_index)


def resumed_config(*, storage_url: str, study_name: str, overrides: Mapping[str, Any] | None = None) -> StudyConfig:
    """The stored config of ``study_name`` with ``overrides`` of run-only keys, on ``storage_url``."""
    study = load_existing_study(parse_storage_url(storage_url), study_name)
    return stored_config(study).with_overrides({**(overrides or {}), "storage": storage_url})


def create_if_missing(storage: optuna.storages.BaseStorage, cfg: StudyConfig) -> None:
    """Create the study (and store its config) unless it exists."""
    study = optuna.create_study(
        storage=storage, study_name=cfg.study.name, direction=cfg.study.direction, load_if_exists=True
    )
    if not has_stored_config(study):
        save_config(study, cfg)


def session_seed(study_seed: int, n_existing_trials: int, worker: int = 0) -> int:
    """The sampler seed of one run: the study seed itself for a fresh study's first worker, else
    derived from how many trials exist (and the worker), so a continued seeded study never
    replays its samples and two workers never draw the same ones."""
    if n_existing_trials == 0 and worker == 0:
        return study_seed
    return int(np.random.SeedSequence([study_seed, n_existing_trials, worker]).generate_state(1)[0])


def count_states(study: optuna.Study) -> dict[str, int]:
    """Trials of ``study`` by state name."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _run(
    cfg: StudyConfig,
    *,
    location: StorageLocation,
    device: torch.device,
    splits: Splits,
    observer: RunObserver | None,
    worker_index: int = 0,
    model_factory: ModelFactory = build_model,
) -> RunResult:
    heartbeat = Heartbeat(cfg.study.heartbeat_interval, cfg.study.grace_period, RetryStaleTrial())
    storage = open_storage(location, mode="write", heartbeat=heartbeat)
    study_id = storage.get_study_id_from_name(cfg.study.name)
    seed = session_seed(cfg.study.seed, len(storage.get_all_trials(study_id, deepcopy=False)), worker_index)
    study = optuna.load_study(
        study_name=cfg.study.name,
        storage=storage,
        sampler=build_sampler(cfg, seed=seed),
        pruner=build_pruner(cfg.study.pruner),
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.train.deterministic  # fastest kernels for fixed shapes
    if cfg.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    recovered = tuple(recover_abandoned_trials(study, grace_seconds=cfg.study.grace_period))
    return _optimize(study, cfg, splits=splits, device=device, location=location, seed=seed,
                     recovered=recovered, observer=observer, model_factory=model_factory, backend=storage)


def _optimize(
    study: optuna.Study,
    cfg: StudyConfig,
    *,
    splits: Splits,
    device: torch.device,
    location: StorageLocation,
    seed: int,
    recovered: tuple[int, ...],
    observer: RunObserver | None,
    model_factory: ModelFactory,
    backend: Any,
) -> RunResult:
    target = cfg.study.n_trials
    started = time.perf_counter()
    device_name = describe_device(device)
    run_record = RunRecord.start(study, sampler_seed=seed, device=device_name, target=target, pack=cfg.train.pack)
    if observer is not None:
        observer.started(study, target=target, finished=_n_finished(study), device=device_name)
    stop_reason = "target reached"
    writer = CheckpointWriter() if cfg.train.checkpoints else None
    checkpoints = checkpoint_store(cfg, location, study) if writer else None
    driver: _AdmitWithinTarget | PackedRun
    if cfg.train.pack > 1:
        driver = _packed_run(study, cfg, splits, device=device, backend=backend, observer=observer,
                             checkpoints=checkpoints, writer=writer)
    else:
        driver = _AdmitWithinTarget(
            Objective(
                cfg,
                splits,
                study=study,
                device=device,
                backend=backend,
                checkpoints=checkpoints,
                writer=writer,
                worker=WorkerIdentity.current().to_dict(),
                model_factory=model_factory,
            ),
            target,
        )
    # SIGTERM is an interrupt from here to the end of the cleanup; the cleanup shield, engaged
    # within, puts back this handler, so the two nest.
    with sigterm_as_interrupt():
        try:
            if isinstance(driver, PackedRun):
                stop_reason = _run_packed_until_stopped(study, cfg, driver)
            else:
                stop_reason = _optimize_until_stopped(study, cfg, driver, observer)
        except KeyboardInterrupt as exc:
            stop_reason = "terminated" if isinstance(exc, Terminated) else "interrupted"
            if isinstance(driver, _AdmitWithinTarget):  # a pack has queued its trials again already
                with driver.shield:  # engaged already when the objective had the trial
                    _requeue_interrupted(study, backend, driver.current_trial)
        except Exception as exc:
            outage = storage_outage(exc)
            if outage is None:
                run_record.finish(study, stop_reason=f"error: {exc!r}"[:500], trials=driver.calls)
                raise
            _requeue_after_outage(study, backend, driver)
            raise outage from None  # not what Optuna's own handling of it raised next
        finally:
            if isinstance(driver, _AdmitWithinTarget):
                driver.shield.release()  # after an error in Optuna's handling of an interrupt, say
            if writer is not None:
                writer.close()
    trials_this_run = driver.calls
    run_record.finish(study, stop_reason=stop_reason, trials=trials_this_run)
    return RunResult(
        study_name=study.study_name,
        storage=location.display(),
        counts=count_states(study),
        target=target,
        best_trial=best_trial_of(study),
        trials_this_run=trials_this_run,
        wall_seconds=time.perf_counter() - started,
        device=device_name,
        stop_reason=stop_reason,
        recovered=recovered,
        best_model=best_model_file(cfg, location, study),
        budget_epochs=cfg.study.budget_epochs,
        epochs_run=epochs_run(study.get_trials(deepcopy=False)),
        stored_limits=stored_limits(study),
    )


def stored_limits(study: optuna.Study) -> tuple[int, int | None]:
    """The stored config's ``n_trials`` and ``budget_epochs``: what a plain ``resume`` runs to."""
    stored = stored_config(study).study
    return stored.n_trials, stored.budget_epochs


def best_model_file(cfg: StudyConfig, location: StorageLocation, study: optuna.Study) -> Path | None:
    """The file ``train.keep_best_model`` keeps the best trial's weights in, if it exists."""
    if not cfg.train.keep_best_model:
        return None
    path = checkpoint_store(cfg, location, study).folder / BEST_MODEL_NAME
    return path if path.exists() else None


def _optimize_until_stopped(
    study: optuna.Study, cfg: StudyConfig, objective: _AdmitWithinTarget, observer: RunObserver | None
) -> str:
    """Optimize to the target. When the target is only reached by counting trials still running
    elsewhere (another worker's, or a dead process's not yet recognised), wait for them: once they
    finish the target is met, and if one fails or is recovered, this run trains its replacement."""
    target = cfg.study.n_trials
    deadline = _deadline(cfg)
    stop = _StopRule.from_config(cfg)
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [stop]
    if observer is not None:
        callbacks.append(observer.trial_finished)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if remaining == 0.0:
                return "timeout"
            stop.reason = stop.reason_to_stop(study)
            if stop.reason is None:
                study.optimize(objective, timeout=remaining, callbacks=callbacks, catch=(_SurplusTrial,))
                if stop.reason is None:
                    return "target reached" if _n_finished(study) >= target else "timeout"
            if _run_is_over(study, cfg, stop.reason):
                return stop.reason


def _packed_run(
    study: optuna.Study, cfg: StudyConfig, splits: Splits, *, device: torch.device, backend: Any,
    observer: RunObserver | None, checkpoints: CheckpointStore | None, writer: CheckpointWriter | None,
) -> PackedRun:
    stop = _StopRule.from_config(cfg)
    return PackedRun(
        study, cfg, splits, device=device, backend=backend, worker=WorkerIdentity.current().to_dict(),
        reason_to_stop=stop.reason_to_stop, callbacks=[observer.trial_finished] if observer is not None else [],
        checkpoints=checkpoints, writer=writer,
    )


def _run_packed_until_stopped(study: optuna.Study, cfg: StudyConfig, packed: PackedRun) -> str:
    """Run the pack to the target; as ``_optimize_until_stopped`` does, wait for trials running
    elsewhere that the target counts, and when one fails or is recovered, train its replacement."""
    deadline = _deadline(cfg)
    while True:
        reason = packed.run(deadline=deadline)
        if _run_is_over(study, cfg, reason):
            return reason


def _deadline(cfg: StudyConfig) -> float | None:
    """When ``study.timeout`` from now ends, on ``time.monotonic``'s clock; None without one."""
    return time.monotonic() + cfg.study.timeout if cfg.study.timeout is not None else None


def _run_is_over(study: optuna.Study, cfg: StudyConfig, reason: str) -> bool:
    """Whether a run that stopped for ``reason`` is over. "target reached" may count trials still
    running elsewhere (another worker's, or a dead process's not yet recognised): then wait a
    heartbeat interval and recover the abandoned ones, and the caller runs again to train any
    replacement."""
    if reason != "target reached" or _n_finished(study) >= cfg.study.n_trials:
        return True
    time.sleep(cfg.study.heartbeat_interval)
    recover_abandoned_trials(study, grace_seconds=cfg.study.grace_period)
    return False


def _n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def best_trial_of(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None when there is none yet."""
    try:
        return study.best_trial
    except ValueError:
        return None


def _requeue_interrupted(study: optuna.Study, backend: Any, number: int | None) -> None:
    """Queue a retry of the trial this process was in when it was interrupted: trial ``number``,
    which Optuna failed, when the objective had it; else the trial still running, which Optuna was
    starting or ending (or failing, when a second interrupt cut that short): it is failed here first."""
    if number is not None:
        failed = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if t.number == number), None)
        if failed is not None:
            RetryStaleTrial()(study, failed)
            return
    started = started_but_unfinished(backend)
    if started is not None:
        fail_and_retry(study, started)


def storage_outage(exc: BaseException) -> StorageUnavailable | None:
    """The ``StorageUnavailable`` that ``exc`` is or was raised while handling, if any. Optuna ends
    a trial in ``try``/``finally`` blocks that read and write the storage again: when it is away,
    the error that leaves ``study.optimize`` is Optuna's own (``UnboundLocalError``,
    ``AssertionError: Should not reach``), raised while handling the outage."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, StorageUnavailable):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _requeue_after_outage(study: optuna.Study, backend: Any, driver: _AdmitWithinTarget | PackedRun) -> None:
    """After the storage went away, queue again the trial this process was in, if the storage has
    come back (a pack has queued its trials again already, as far as it could). Otherwise the
    trial stays RUNNING and the next run recovers it (its process is gone by then)."""
    if not isinstance(driver, _AdmitWithinTarget):
        return
    with contextlib.suppress(StorageUnavailable):
        _requeue_interrupted(study, backend, driver.current_trial)


class _SurplusTrial(Exception):
    """A trial that started after other workers had already filled the target."""


class _AdmitWithinTarget:
    """Wraps the objective: a trial that would take the study past its target is not trained.

    Trials are ranked by start time (then number) among those complete, pruned or running; one
    ranked at the target or beyond is ended as failed, with the reason stored, and the study
    stops. This closes the race where several workers start a trial at the same moment.
    """

    def __init__(self, objective: Objective, target: int) -> None:
        self.objective = objective
        self.target = target
        self.calls = 0  # trials this process started
        self.current_trial: int | None = None  # the trial an interrupt now would stop, to queue again
        self.shield = CleanupShield(what="queuing the interrupted trial again")

    def __call__(self, trial: optuna.Trial) -> float:
        self.current_trial = trial.number  # first of all: Optuna fails the trial on any interrupt from here
        try:
            value = self._admit_then_train(trial)
        except KeyboardInterrupt:
            self.shield.engage()  # Optuna fails the trial next; a second Ctrl-C must not cut that short
            raise
        except StorageUnavailable:
            raise  # the trial is still this run's to queue again, once the storage is back
        except BaseException:
            self.current_trial = None
            raise
        self.current_trial = None
        return value

    def _admit_then_train(self, trial: optuna.Trial) -> float:
        self.calls += 1
        study = self.objective.study
        active = study.get_trials(deepcopy=False, states=(*FINISHED_STATES, TrialState.RUNNING))
        me = next((t for t in active if t.number == trial.number), None)
        if me is not None and me.datetime_start is not None:
            ahead = sum(
                1 for t in active
                if t.number != me.number and t.datetime_start is not None
                and (t.datetime_start, t.number) < (me.datetime_start, me.number)
            )
            if ahead >= self.target:
                trial.set_user_attr(trial_attrs.END_REASON, f"not run: the target of {self.target} was reached")
                study.stop()
                raise _SurplusTrial(f"target of {self.target} trials reached by other workers")
        return self.objective(trial)


class _StopRule:
    """Stop once finished plus running trials reach the target, or once the epochs run by the
    study's finished trials reach ``budget_epochs``. Checked before the first trial and after each."""

    def __init__(self, *, target: int, budget_epochs: int | None) -> None:
        self.target = target
        self.budget_epochs = budget_epochs
        self.reason: str | None = None

    @classmethod
    def from_config(cls, cfg: StudyConfig) -> _StopRule:
        """The rule for ``cfg``'s target and epoch budget."""
        return cls(target=cfg.study.n_trials, budget_epochs=cfg.study.budget_epochs)

    def reason_to_stop(self, study: optuna.Study, *, epochs_in_progress: int = 0) -> str | None:
        """Why the study should start no further trial, or None. ``epochs_in_progress``: epochs
        trained so far by this process's running trials (a pack's members), spent as much as the
        finished trials' epochs: a pack starts no trial once they reach the budget together."""
        trials = study.get_trials(deepcopy=False)
        active = sum(1 for t in trials if t.state in (*FINISHED_STATES, TrialState.RUNNING))
        if active >= self.target:
            return "target reached"
        if isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
            return "grid exhausted"
        if self.budget_epochs is not None and epochs_run(trials) + epochs_in_progress >= self.budget_epochs:
            return "epoch budget spent"
        return None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.reason = self.reason_to_stop(study)
        if self.reason is not None:
            study.stop()


def reason_to_stop(cfg: StudyConfig, study: optuna.Study) -> str | None:
    """Why ``study`` should start no further trial under ``cfg`` (its target, counting running
    trials; its grid; its epoch budget), or None while it has work left."""
    return _StopRule.from_config(cfg).reason_to_stop(study)


def why_study_stopped(cfg: StudyConfig, study: optuna.Study) -> str:
    """Why ``study`` stopped, once the processes that ran it have all ended on their own: its
    target, its grid or its epoch budget; otherwise ``study.timeout`` ran out."""
    reason = reason_to_stop(cfg, study)
    if reason is None:
        return "timeout" if cfg.study.timeout is not None else "target reached"
    return reason


def epochs_run(trials: list[FrozenTrial]) -> int:
    """Epochs trained by the complete and pruned trials of a study (its compute spent so far)."""
    return sum(int(t.user_attrs.get(trial_attrs.EPOCHS_RUN, 0)) for t in trials if t.state in FINISHED_STATES)
