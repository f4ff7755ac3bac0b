"""Running a study with packed trials (``train.pack: K`` / ``--pack K``): the Optuna side of packing.

Trials are asked from the study (``study.ask``) until K are in training, trained together by a
``PackTrainer``, reported epoch by epoch, pruned or finished one by one (``study.tell``), and
replaced by new asks at once. Optuna's heartbeats only run inside ``optimize()``, so this loop keeps
its trials alive itself: a thread records a heartbeat for every trial it holds, and each trial
carries its worker's identity, so a killed pack's trials are recovered like any others. Ctrl-C or
SIGTERM fails every held trial and queues it again. Each member writes checkpoints as a trial
alone does (the same file, the same form: ``PackTrainer.training_state``), so a retry continues
from its last checkpoint, packed or alone.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpstudy.storage.engine import params_in_one_write
from hpstudy.storage.recovery import RetryStaleTrial, fail_and_retry, started_but_unfinished
from hpstudy.study import trial_attrs
from hpstudy.study.config import StudyConfig
from hpstudy.study.data import Splits
from hpstudy.study.errors import UserError
from hpstudy.study.interrupts import CleanupShield
from hpstudy.study.checkpoints import CheckpointStore, CheckpointWriteError, CheckpointWriter
from hpstudy.study.objective import (
    Attempt,
    CheckpointPolicy,
    begin_attempt,
    checkpoint_of,
    keep_if_best,
    restore_checkpoint,
    resume_attempt,
    resume_command,
    schedule_of,
    start_attrs,
)
from hpstudy.study.packing import Member, PackTrainer, packable_problem
from hpstudy.study.reporting import CompletedTrials, EpochReporter
from hpstudy.study.training import EpochResult

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


@dataclass
class _Held:
    """A trial this run is training in the pack."""

    trial: optuna.Trial
    trial_id: int
    member: Member
    attempt: Attempt
    reporter: EpochReporter
    policy: CheckpointPolicy


class _Heartbeats(threading.Thread):
    """Records a heartbeat for every held trial every ``interval`` seconds (what ``optimize()``
    does for its one trial), so other workers never take a live packed trial for a dead one."""

    def __init__(self, backend: Any, held: dict[int, _Held], interval: float) -> None:
        super().__init__(name="hpstudy-pack-heartbeats", daemon=True)
        self.backend, self.held, self.interval = backend, held, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            for trial_id in [entry.trial_id for entry in list(self.held.values())]:
                try:
                    self.backend.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 - a finished trial, or a passing database error
                    continue


class PackedRun:
    """Trains the study's trials K at a time until the stop rule, the timeout or an interrupt."""

    def __init__(
        self,
        study: optuna.Study,
        cfg: StudyConfig,
        splits: Splits,
        *,
        device: torch.device,
        backend: Any,
        worker: dict[str, Any],
        reason_to_stop: Callable[..., str | None],
        callbacks: list[TrialCallback],
        checkpoints: CheckpointStore | None = None,
        writer: CheckpointWriter | None = None,
    ) -> None:
        self.study, self.cfg, self.device, self.backend, self.worker = study, cfg, device, backend, worker
        self.checkpoints, self.writer = (checkpoints, writer) if checkpoints is not None and writer is not None else (None, None)
        self.reason_to_stop = reason_to_stop
        self.callbacks = callbacks
        self.trainer = PackTrainer(splits.to(device), device=device, eval_batch_size=cfg.train.eval_batch_size)
        self.completed = CompletedTrials(study)
        self.held: dict[int, _Held] = {}
        self.calls = 0
        self.stop_reason: str | None = None
        self._maximize = cfg.study.direction == "maximize"

    def run(self, *, deadline: float | None = None) -> str:
        """Train until there is nothing left to start and nothing left in the pack, or until
        ``deadline`` (``time.monotonic()``) has passed; the reason. May be called again."""
        self.stop_reason = None
        heartbeats = _Heartbeats(self.backend, self.held, self.cfg.study.heartbeat_interval)
        heartbeats.start()
        try:
            while True:
                if deadline is not None and time.monotonic() > deadline and self.stop_reason is None:
                    self.stop_reason = "timeout"
                self._fill()
                if not self.trainer.members:
                    break
                for member, result in self.trainer.round():
                    self._after_epoch(self._entry(member), result)
        except BaseException as exc:
            with CleanupShield(what="queuing the packed trials again"):
                cut = self._abandon(exc)
            if isinstance(exc, CheckpointWriteError):  # the disk refused a checkpoint: say how to go on
                raise exc.stopped(cut, resume=resume_command(self.cfg)) from None
            raise
        finally:
            heartbeats.stopped.set()
        return self.stop_reason or "target reached"

    # ------------------------------------------------------------ trials in and out

    def _fill(self) -> None:
        while self.stop_reason is None and len(self.held) < self.cfg.train.pack:
            in_progress = sum(entry.member.epoch for entry in self.held.values())
            reason = self.reason_to_stop(self.study, epochs_in_progress=in_progress)
            if reason is not None:
                self.stop_reason = reason
                return
            self._start_one()

    def _start_one(self) -> None:
        began = time.perf_counter()
        with warnings.catch_warnings():  # "heartbeat is supposed to be used with optimize": it is kept here
            warnings.simplefilter("ignore", UserWarning)
            trial = self.study.ask()
        self.calls += 1
        trial_id = trial._trial_id  # noqa: SLF001 - Optuna's storage calls take the id
        # A first heartbeat at once, as optimize() beats when its trial starts: another host can
        # only tell a dead pack's trials by their heartbeats, and the beating thread waits an interval.
        self.backend.record_heartbeat(trial_id)
        self.backend.set_trial_user_attrs(trial_id, {trial_attrs.WORKER: self.worker})  # recognisable if killed
        with params_in_one_write(self.backend, trial_id):
            hp = self.cfg.sample(trial)
        problem = packable_problem(hp, model_kind=self.cfg.model.kind)
        if problem is not None:
            self.study.tell(trial, state=TrialState.FAIL)
            raise UserError(f"--pack: {problem}; run without --pack")
        attempt = begin_attempt(self.cfg, self.backend.get_trial(trial_id), hp, started=began)
        self.backend.set_trial_user_attrs(trial_id, start_attrs(attempt, device=self.device))
        self.completed.refresh()
        reporter = EpochReporter(self.study, trial, trial_id=trial_id, backend=self.backend, completed=self.completed)
        member = self._add_member(trial, trial_id, attempt, reporter)
        policy = CheckpointPolicy(every_epochs=self.cfg.train.checkpoint_every)
        self.held[trial.number] = _Held(trial, trial_id, member, attempt, reporter, policy)
        attempt.timing["sample"] = time.perf_counter() - began

    def _add_member(self, trial: optuna.Trial, trial_id: int, attempt: Attempt, reporter: EpochReporter) -> Member:
        """Put the trial in the pack, continuing the lineage's checkpoint (written packed or alone)
        when there is a usable one; else (none, or one that cannot be used) from epoch 0."""
        stopping, plateau = schedule_of(self.cfg.train, attempt.hp)

        def add(resume: tuple[dict[str, Any], int] | None) -> Member:
            return self.trainer.add(trial.number, attempt.hp, seed=attempt.seed, early_stopping=stopping,
                                    plateau=plateau, resume=resume)

        resumed = None
        if self.checkpoints is not None:
            resumed = restore_checkpoint(self.checkpoints, attempt.lineage,
                                         lambda saved: add((saved["training"], len(saved["scores"]))),
                                         epochs=attempt.hp.epochs, trial_number=trial.number)
        if resumed is None:
            return add(None)
        saved, member = resumed
        resume_attempt(attempt, saved, reporter)
        self.backend.set_trial_user_attrs(
            trial_id, {trial_attrs.RESUMED_FROM: {"trial": attempt.lineage, "epoch": attempt.resumed_from}}
        )
        return member

    def _checkpoint(self, entry: _Held, result: EpochResult) -> None:
        """Write the member's checkpoint when its policy says one is due (never after its last epoch:
        the trial is about to end)."""
        if self.writer is None or self.checkpoints is None or not result.finite:
            return
        if result.epoch >= entry.member.hp.epochs or entry.member.stopped_early or not entry.policy.due(result.seconds):
            return
        with entry.attempt.timed("checkpoint"):
            began = time.perf_counter()
            state = checkpoint_of(entry.attempt, self.trainer.training_state(entry.member), metric=self.cfg.study.metric)
            self.writer.submit(self.checkpoints.path(entry.attempt.lineage), state)
            entry.policy.written(time.perf_counter() - began + self.writer.last_write_seconds)

    def _entry(self, member: Member) -> _Held:
        return self.held[member.key]  # type: ignore[index]

    def _after_epoch(self, entry: _Held, result: EpochResult) -> None:
        attempt, member = entry.attempt, entry.member
        attempt.timing["train"] += result.train_seconds
        attempt.timing["validate"] += result.val_seconds
        score = result.val_accuracy if self.cfg.study.metric == "val_accuracy" else result.val_loss
        attempt.observe(result, score, maximize=self._maximize)
        with attempt.timed("report_prune"):
            entry.reporter.report(score, result.epoch)
        self._checkpoint(entry, result)
        with attempt.timed("report_prune"):
            prune = result.finite and entry.reporter.should_prune()
        if not result.finite:
            attempt.end_reason = f"diverged at epoch {result.epoch} (loss {result.train_loss})"
            self._finish(entry, TrialState.PRUNED)
        elif prune:
            attempt.end_reason = f"pruned at epoch {result.epoch}"
            self._finish(entry, TrialState.PRUNED)
        elif result.epoch >= member.hp.epochs or member.stopped_early:
            if member.stopped_early:
                attempt.end_reason = f"early stopped at epoch {result.epoch}"
            self._finish(entry, TrialState.COMPLETE)

    def _finish(self, entry: _Held, state: TrialState) -> None:
        with entry.attempt.timed("record"):
            entry.reporter.flush()
            if state == TrialState.COMPLETE and self.cfg.train.keep_best_model and self.checkpoints is not None:
                keep_if_best(self.checkpoints, self.completed, entry.attempt, self.trainer.model_of(entry.member),
                             trial_number=entry.trial.number, maximize=self._maximize)
            self.trainer.remove(entry.member)
            del self.held[entry.trial.number]
            if self.writer is not None and self.checkpoints is not None:  # finished: no retry will need it
                self.writer.discard(self.checkpoints.path(entry.attempt.lineage))
        self.backend.set_trial_user_attrs(entry.trial_id, entry.attempt.record())
        if state == TrialState.COMPLETE:
            frozen = self._tell(entry, values=entry.attempt.best_score)
        else:
            frozen = self._tell(entry, state=state)
        for callback in self.callbacks:
            callback(self.study, frozen)

    def _tell(self, entry: _Held, **outcome: Any) -> FrozenTrial:
        """``study.tell``; a grid sampler's request to stop the study (which Optuna only allows
        inside ``optimize``) ends this run instead, once the trial is stored."""
        try:
            return self.study.tell(entry.trial, **outcome)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise
            self.stop_reason = "grid exhausted"
            return self.backend.get_trial(entry.trial_id)

    def _abandon(self, exc: BaseException) -> list[int]:
        """End every held trial as failed after an interrupt or an error, and queue it again; the
        numbers of the trials it ended."""
        cut = sorted(self.held)
        for entry in list(self.held.values()):
            entry.attempt.end_reason = f"stopped by {type(exc).__name__} at epoch {entry.member.epoch}"
            try:
                entry.reporter.flush()
                self.backend.set_trial_user_attrs(entry.trial_id, entry.attempt.record())
                frozen = self.study.tell(entry.trial, state=TrialState.FAIL)
                RetryStaleTrial()(self.study, frozen)
            except Exception:  # noqa: BLE001 - keep ending the others; recovery handles the rest
                continue
        self.held.clear()
        started = started_but_unfinished(self.backend)  # asked, but interrupted before it was held
        if started is not None:
            fail_and_retry(self.study, started)
        if self.writer is not None:  # the retries continue from these checkpoints (or, where a write
            self.writer.flush(raise_errors=False)  # failed, from the one before)
        return cut
