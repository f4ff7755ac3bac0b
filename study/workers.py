"""`hpstudy run --workers N`: N processes on one storage, coordinated only through the database.

The parent checks everything, creates the study, then starts N `hpstudy worker` processes (each
samples with its own seed and takes its device round-robin from ``devices``) and shows their
combined progress by reading the storage. Ctrl-C or SIGTERM to the parent is passed on to every
worker, which ends its trial as failed and queues it again, as a single run would.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import TrialState

from hpstudy.storage import STORAGE_ENV
from hpstudy.storage.engine import StorageUnavailable, open_storage
from hpstudy.storage.recovery import recover_abandoned_trials
from hpstudy.study.config import StudyConfig
from hpstudy.study.devices import resolve_device
from hpstudy.study.errors import UserError
from hpstudy.study.runner import (
    FINISHED_STATES,
    RunObserver,
    RunResult,
    best_model_file,
    best_trial_of,
    count_states,
    create_if_missing,
    epochs_run,
    prepare_run,
    stored_limits,
    reason_to_stop,
    why_study_stopped,
)

SUPERVISOR_ENV = "HPSTUDY_SUPERVISOR_PID"  # a worker started by `run --workers` ends when this process dies
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
POLL_SECONDS = 0.5
EXIT_TERMINATED = 143
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
WORKERS_PER_CORE = 4  # the most --workers a machine takes: each is a process with its own data and model
WORKERS_FAILED = "workers failed"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def most_workers() -> int:
    """The most workers one ``run --workers`` starts on this machine: ``WORKERS_PER_CORE`` per core."""
    return WORKERS_PER_CORE * usable_cores()


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers, the device each one trains on, and the CPU threads each may use (of
    ``cpu_threads``, the machine's share they split)."""

    count: int
    devices: tuple[str, ...]
    threads: int
    cpu_threads: int = 1

    @classmethod
    def make(cls, count: int, devices: Sequence[str] | None, default_device: str, *,
             cpu_threads: int | None = None) -> WorkerPlan:
        """Validate ``count`` (at least 1, at most ``most_workers()``) and assign ``devices``
        round-robin (every worker: the default). The workers share ``cpu_threads`` (default: this
        process's, ``torch.get_num_threads()``): PyTorch gives each process one thread per core,
        and N processes spinning N times as many threads as there are cores train many times
        slower than one."""
        if count < 1:
            raise UserError(f"--workers must be at least 1 (got {count})")
        if count > most_workers():
            raise UserError(
                f"--workers {count} is more than this machine takes: at most {most_workers()} ({WORKERS_PER_CORE} per "
                f"CPU core; each worker is a process with its own copy of the data and model); use --workers "
                f"{most_workers()} or fewer"
            )
        pool = list(devices) if devices else [default_device]
        for name in pool:
            resolve_device(name)
        budget = cpu_threads if cpu_threads is not None else torch.get_num_threads()
        return cls(count=count, devices=tuple(pool[i % len(pool)] for i in range(count)),
                   threads=max(1, budget // count), cpu_threads=budget)

    def limited_to(self, count: int) -> WorkerPlan:
        """This plan with at most ``count`` workers (the first ones), sharing the same threads."""
        count = max(0, min(count, self.count))
        return WorkerPlan(count=count, devices=self.devices[:count], threads=max(1, self.cpu_threads // max(count, 1)),
                          cpu_threads=self.cpu_threads)

    def describe(self, *, asked: int) -> str:
        """Where the workers train, e.g. ``cpu, 2 workers``; says why when fewer than ``asked``."""
        where = ", ".join(sorted(set(self.devices)))
        if self.count < asked:
            left = f"{self.count} trial{'s are' if self.count != 1 else ' is'} left"
            return f"{where}, {self.count} worker{'s' if self.count != 1 else ''} (not {asked}: {left})"
        return f"{where}, {self.count} worker{'s' if self.count != 1 else ''}"


def workers_with_work(cfg: StudyConfig, study: optuna.Study) -> int:
    """How many workers have a trial to run: one per trial left to the target (trials running
    elsewhere may yet fail), or one to wait on running trials once the target counts them; none
    once the study is done (its target, grid or epoch budget)."""
    trials = study.get_trials(deepcopy=False)
    running = any(t.state == TrialState.RUNNING for t in trials)
    if reason_to_stop(cfg, study) is not None:
        return 1 if running else 0
    return max(cfg.study.n_trials - sum(t.state in FINISHED_STATES for t in trials), 1)


def run_workers(cfg: StudyConfig, plan: WorkerPlan, *, observer: RunObserver | None = None) -> RunResult:
    """Run the study with ``plan.count`` worker processes, or as many as it has trials left to run
    (none when it is done), and wait for all of them. Trials left running by a worker that died
    are queued again as the run ends, so the next run retries them."""
    location, _device, _splits = prepare_run(cfg)
    storage = open_storage(location, mode="create")
    create_if_missing(storage, cfg)
    study = optuna.load_study(study_name=cfg.study.name, storage=storage)
    recovered = tuple(recover_abandoned_trials(study, grace_seconds=cfg.study.grace_period))
    ended_before = _ended(study)  # queued trials are not: this run may be the one to train them
    started = time.perf_counter()
    used = plan.limited_to(workers_with_work(cfg, study))
    if observer is not None:
        finished = len(study.get_trials(deepcopy=False, states=FINISHED_STATES))
        observer.started(study, target=cfg.study.n_trials, finished=finished, device=used.describe(asked=plan.count))
    processes: list[subprocess.Popen[bytes]] = []
    with _forwarded_signals(processes) as received:
        _start_workers(cfg, used, processes, received)
        _supervise(processes, study, observer, seen=ended_before)
    failures = worker_failures(processes)
    if failures:  # their trials are work left: the next run retries them
        recovered += tuple(recover_abandoned_trials(study, grace_seconds=cfg.study.grace_period))
    return RunResult(
        study_name=cfg.study.name,
        storage=location.display(),
        counts=count_states(study),
        target=cfg.study.n_trials,
        best_trial=best_trial_of(study),
        trials_this_run=len(_ended(study) - ended_before),
        wall_seconds=time.perf_counter() - started,
        device=", ".join(used.devices) or ", ".join(sorted(set(plan.devices))),
        stop_reason=_why_workers_stopped(cfg, processes, study, received=received),
        recovered=recovered,
        best_model=best_model_file(cfg, location, study),
        budget_epochs=cfg.study.budget_epochs,
        epochs_run=epochs_run(study.get_trials(deepcopy=False)),
        stored_limits=stored_limits(study),
        worker_failures=() if received else failures,
    )


def _start_workers(cfg: StudyConfig, plan: WorkerPlan, processes: list[subprocess.Popen[bytes]],
                   received: list[int]) -> None:
    """Start the workers into ``processes`` under ``_forwarded_signals``. Started under the
    forwarding handler, a worker has Python's own Ctrl-C handling even where this process was
    started with SIGINT ignored (``cmd &`` in a script), which it would otherwise inherit. A signal
    that comes while one starts reaches it too, and none starts after one came."""
    for index, device in enumerate(plan.devices):
        if received:
            return
        process = _start_worker(cfg, index, device, threads=plan.threads)
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)  # the handler sees it listed, or we send
        try:
            processes.append(process)
            missed = received[-1] if received else None
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
        if missed is not None:
            process.send_signal(missed)


def _start_worker(cfg: StudyConfig, index: int, device: str, *, threads: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "hpstudy.study.cli", "worker",
        "--study-name", cfg.study.name,
        "--worker-index", str(index + 1),
        "--device", device,
        "--n-trials", str(cfg.study.n_trials),
        "--pack", str(cfg.train.pack),
        "--quiet",
    ]
    if cfg.study.timeout is not None:
        command += ["--timeout", str(cfg.study.timeout)]
    if cfg.study.budget_epochs is not None:
        command += ["--budget-epochs", str(cfg.study.budget_epochs)]
    env = {**os.environ, STORAGE_ENV: cfg.storage, "OMP_NUM_THREADS": str(threads),  # PyTorch's thread count
           SUPERVISOR_ENV: str(os.getpid())}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)


def end_with_supervisor() -> None:
    """In a worker that ``run --workers`` started: be sent SIGTERM when that process dies (Linux),
    so that kill -9 on it never leaves its workers training unseen; the SIGTERM ends the worker's
    trial as failed and queues it again. Ends at once if the supervisor has already gone."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(supervisor):  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def _forwarded_signals(processes: list[subprocess.Popen[bytes]]) -> Iterator[list[int]]:
    """While open, Ctrl-C and SIGTERM are passed on to every running process of ``processes``
    (which may grow) instead of stopping this one; yields the signals received, in order."""
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _supervise(
    processes: list[subprocess.Popen[bytes]], study: optuna.Study, observer: RunObserver | None, *, seen: set[int]
) -> None:
    """Wait for the workers; report finished trials as they come. A storage that is away for a
    while only delays the reports: the workers meet it too, and say so themselves."""
    while any(p.poll() is None for p in processes):
        time.sleep(POLL_SECONDS)
        try:
            seen = _report_new(study, observer, seen)
        except StorageUnavailable:
            continue
    _report_new(study, observer, seen)


def _why_workers_stopped(
    cfg: StudyConfig, processes: list[subprocess.Popen[bytes]], study: optuna.Study, *, received: list[int]
) -> str:
    """The run's stop reason once every worker has exited (``received``: the signals passed on to
    them). A signal that came after every worker had ended on its own stopped nothing; a worker
    that failed on its own (``worker_failures`` says how) makes it ``WORKERS_FAILED``."""
    failed = [p.returncode for p in processes if p.returncode != 0]
    if received and failed:
        return "terminated" if signal.SIGTERM in received else "interrupted"
    if failed:
        return WORKERS_FAILED
    return why_study_stopped(cfg, study)


def worker_failures(processes: Sequence[subprocess.Popen[bytes]]) -> tuple[str, ...]:
    """How each worker that did not end cleanly ended, e.g. ``worker 2 (pid 4711) was killed by
    SIGKILL``, in start order (workers are numbered from 1, as their ``--worker-index``)."""
    return tuple(
        f"worker {number} (pid {process.pid}) {_how_it_ended(process.returncode)}"
        for number, process in enumerate(processes, start=1)
        if process.returncode not in (0, None)
    )


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == 2:
        return "stopped with exit code 2 (its one-line error is above)"
    return f"failed with exit code {code}"


def _ended(study: optuna.Study) -> set[int]:
    """Numbers of the trials that have ended: complete, pruned or failed."""
    return {t.number for t in study.get_trials(deepcopy=False, states=(*FINISHED_STATES, TrialState.FAIL))}


def _report_new(study: optuna.Study, observer: RunObserver | None, seen: set[int]) -> set[int]:
    if observer is None:
        return seen
    done = study.get_trials(deepcopy=False, states=(*FINISHED_STATES, TrialState.FAIL))
    for trial in sorted(done, key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number)):
        if trial.number not in seen:
            observer.trial_finished(study, trial)
    return seen | {t.number for t in done}
