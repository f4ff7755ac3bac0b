"""Running a study: check everything, load the data once, open the storage, optimize to a target.

``run_study`` starts or continues a study from a config; ``resume_study`` continues one from the
config stored in it. Both count ``n_trials`` as a target total of finished (complete + pruned)
trials across all runs, and stop at that target, at the timeout, or on Ctrl-C.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from hpstudy.storage.engine import open_storage
from hpstudy.storage.stored_config import (
    RunRecord,
    check_same_config,
    has_stored_config,
    save_config,
    stored_config,
)
from hpstudy.storage.studies import find_study, load_existing_study
from hpstudy.storage.urls import StorageLocation, parse_storage_url
from hpstudy.study.config import StudyConfig
from hpstudy.study.data import load_splits
from hpstudy.study.devices import describe_device, resolve_device
from hpstudy.study.errors import UserError
from hpstudy.study.objective import Objective
from hpstudy.study.optuna_parts import build_pruner, build_sampler

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

    @property
    def interrupted(self) -> bool:
        """True when Ctrl-C (or a termination signal) ended the run early."""
        return self.stop_reason == "interrupted"

    @property
    def finished(self) -> int:
        """Complete plus pruned trials in the study."""
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)


def run_study(cfg: StudyConfig, *, observer: RunObserver | None = None) -> RunResult:
    """Start the study ``cfg`` describes, or continue it if it exists with the same config."""
    location = parse_storage_url(cfg.storage)
    device = resolve_device(cfg.train.device)
    existing = find_study(location, cfg.study.name)
    if existing is not None:
        check_same_config(existing, cfg)
    splits = load_splits(cfg.data, seed=cfg.study.seed)
    storage = open_storage(location, mode="create")
    _create_if_missing(storage, cfg)
    study, seed = _load_for_run(storage, cfg)
    return _optimize(study, cfg, splits=splits, device=device, location=location, seed=seed, observer=observer)


def resume_study(
    *,
    storage_url: str,
    study_name: str,
    overrides: Mapping[str, Any] | None = None,
    observer: RunObserver | None = None,
) -> RunResult:
    """Continue ``study_name`` from its stored config; ``overrides`` may change run-only keys
    (``study.n_trials``, ``study.timeout``, ``train.device``...)."""
    location = parse_storage_url(storage_url)
    study = load_existing_study(location, study_name)
    cfg = stored_config(study).with_overrides({**(overrides or {}), "storage": storage_url})
    device = resolve_device(cfg.train.device)
    splits = load_splits(cfg.data, seed=cfg.study.seed)
    study, seed = _load_for_run(open_storage(location, mode="write"), cfg)
    return _optimize(study, cfg, splits=splits, device=device, location=location, seed=seed, observer=observer)


def _create_if_missing(storage: optuna.storages.BaseStorage, cfg: StudyConfig) -> None:
    study = optuna.create_study(
        storage=storage,
        study_name=cfg.study.name,
        direction=cfg.study.direction,
        load_if_exists=True,
    )
    if not has_stored_config(study):
        save_config(study, cfg)


def _load_for_run(storage: optuna.storages.BaseStorage, cfg: StudyConfig) -> tuple[optuna.Study, int]:
    """The study with this run's pruner and sampler, and the sampler's seed (derived so that a
    continued study draws new samples)."""
    study_id = storage.get_study_id_from_name(cfg.study.name)
    seed = session_seed(cfg.study.seed, len(storage.get_all_trials(study_id, deepcopy=False)))
    study = optuna.load_study(
        study_name=cfg.study.name,
        storage=storage,
        sampler=build_sampler(cfg, seed=seed),
        pruner=build_pruner(cfg.study.pruner),
    )
    return study, seed


def session_seed(study_seed: int, n_existing_trials: int, worker: int = 0) -> int:
    """The sampler seed of one run: the study seed itself for a fresh study's first worker, else
    derived from how many trials exist, so a resumed seeded study never replays its samples."""
    if n_existing_trials == 0 and worker == 0:
        return study_seed
    return int(np.random.SeedSequence([study_seed, n_existing_trials, worker]).generate_state(1)[0])


def count_states(study: optuna.Study) -> dict[str, int]:
    """Trials of ``study`` by state name."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _optimize(
    study: optuna.Study,
    cfg: StudyConfig,
    *,
    splits: Any,
    device: Any,
    location: StorageLocation,
    seed: int,
    observer: RunObserver | None,
) -> RunResult:
    target = cfg.study.n_trials
    started = time.perf_counter()
    before = len(study.get_trials(deepcopy=False))
    finished = _n_finished(study)
    device_name = describe_device(device)
    stop_reason = "target reached"
    run_record = RunRecord.start(study, sampler_seed=seed, device=device_name, target=target)
    if observer is not None:
        observer.started(study, target=target, finished=finished, device=device_name)
    if finished < target:
        objective = Objective(cfg, splits, device=device)
        callbacks = [_StopAtTarget(target)]
        if observer is not None:
            callbacks.append(lambda s, t: observer.trial_finished(s, t))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, timeout=cfg.study.timeout, callbacks=callbacks)
        except KeyboardInterrupt:
            stop_reason = "interrupted"
        except Exception as exc:
            run_record.finish(study, stop_reason=f"error: {exc!r}"[:500], trials=len(study.get_trials(deepcopy=False)) - before)
            raise
        else:
            if _n_finished(study) < target:
                stop_reason = "timeout"
    trials_this_run = len(study.get_trials(deepcopy=False)) - before
    run_record.finish(study, stop_reason=stop_reason, trials=trials_this_run)
    counts = count_states(study)
    return RunResult(
        study_name=study.study_name,
        storage=location.display(),
        counts=counts,
        target=target,
        best_trial=_best_trial(study),
        trials_this_run=trials_this_run,
        wall_seconds=time.perf_counter() - started,
        device=device_name,
        stop_reason=stop_reason,
    )


def _n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


class _StopAtTarget:
    """Stop the study once finished trials plus those still running reach the target."""

    def __init__(self, target: int) -> None:
        self.target = target

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        states = (*FINISHED_STATES, TrialState.RUNNING)
        if len(study.get_trials(deepcopy=False, states=states)) >= self.target:
            study.stop()
