"""Recovering trials left RUNNING by a process that died, and retrying interrupted ones.

Two ways to know a trial's process is gone:
- every trial records its worker (host, pid, process start time); a trial of this host whose
  process no longer exists is recovered at once;
- Optuna's heartbeats: a trial whose heartbeat is older than the grace period is failed by
  ``optuna.storages.fail_stale_trials`` (this covers workers on other machines).
Either way the trial is marked FAIL and a WAITING copy with the same params is queued, so the
next sampled trial is its retry; the retry inherits the original trial number through Optuna's
retry system attrs, which is how it finds its checkpoint. A trial whose worker is alive is never
touched.
"""

from __future__ import annotations

import copy
import datetime
import os
import socket
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from hpstudy.study import trial_attrs

WORKER_ATTR = trial_attrs.WORKER
#: User attrs that describe one attempt, not the trial's params: a retry does not inherit them.
ATTEMPT_ATTRS = frozenset({
    trial_attrs.WORKER, trial_attrs.CURVE, trial_attrs.END_REASON, trial_attrs.EPOCHS_RUN,
    trial_attrs.BEST_EPOCH, trial_attrs.VAL_ACCURACY, trial_attrs.RESUMED_FROM, trial_attrs.DEVICE,
    trial_attrs.TIMING,
})


@dataclass(frozen=True)
class WorkerIdentity:
    """Who runs a trial: host name, process id and the process's start time (guards pid reuse)."""

    host: str
    pid: int
    started: int | None

    @classmethod
    def current(cls) -> WorkerIdentity:
        """The identity of this process."""
        return cls(host=socket.gethostname(), pid=os.getpid(), started=process_start_time(os.getpid()))

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return asdict(self)

    @classmethod
    def from_attr(cls, value: Any) -> WorkerIdentity | None:
        """Read a stored identity; None when absent or malformed."""
        if not isinstance(value, dict) or "host" not in value or "pid" not in value:
            return None
        return cls(host=str(value["host"]), pid=int(value["pid"]), started=value.get("started"))

    def is_dead_here(self) -> bool:
        """True only when this identity belongs to this host and its process is gone."""
        if self.host != socket.gethostname():
            return False
        if not process_alive(self.pid):
            return True
        return self.started is not None and process_start_time(self.pid) not in (None, self.started)


def process_alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is None or stat[0] != "Z"


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), or None elsewhere."""
    stat = _proc_stat(pid)
    return int(stat[19]) if stat is not None else None


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) ", starting with state


class RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry callback, minus the attrs of the failed attempt (worker, curve, ...), and
    never twice for one trial: a trial whose retry is queued already (by the process that ran it,
    which was killed before it could mark the trial failed) gets no second one."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            super().__init__()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if has_retry(study, trial.number):
            return
        clean = copy.deepcopy(trial)
        clean.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ATTEMPT_ATTRS}
        clean.system_attrs = copy.deepcopy(trial.system_attrs)
        super().__call__(study, clean)


def has_retry(study: optuna.Study, number: int) -> bool:
    """True when a trial of ``study`` is the retry of trial ``number`` (the last in its retry
    history), whatever its state."""
    return any(t.system_attrs.get("retry_history", [None])[-1:] == [number] for t in study.get_trials(deepcopy=False))


def fail_and_retry(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Mark a RUNNING trial FAIL and queue its retry; False when another process got there first."""
    storage = study._storage  # noqa: SLF001 - Optuna offers no public call to fail a trial by id
    try:
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):  # noqa: SLF001
            return False
    except UpdateFinishedTrialError:
        return False
    RetryStaleTrial()(study, storage.get_trial(trial._trial_id))  # noqa: SLF001
    return True


def started_but_unfinished(backend: Any) -> FrozenTrial | None:
    """The trial this process set running last through ``backend`` (a ``RetryingRDBStorage``: the
    storage under Optuna's cache), if it is still running: what an interrupt that came while
    Optuna was starting a trial, before any code of ours had it, leaves behind."""
    trial_id = getattr(backend, "started_trial_id", None)
    if trial_id is None:
        return None
    trial = backend.get_trial(trial_id)
    return trial if trial.state == TrialState.RUNNING else None


def dead_local_trials(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials of ``study`` whose worker ran on this host and is gone."""
    found = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = WorkerIdentity.from_attr(trial.user_attrs.get(WORKER_ATTR))
        if worker is not None and worker.is_dead_here():
            found.append(trial)
    return found


def stale_trials(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials whose heartbeat is older than the storage's grace period."""
    storage = study._storage  # noqa: SLF001
    if not hasattr(storage, "_get_stale_trial_ids") or storage.get_heartbeat_interval() is None:
        return []
    stale_ids = set(storage._get_stale_trial_ids(study._study_id))  # noqa: SLF001
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t._trial_id in stale_ids]  # noqa: SLF001


def unclaimed_trials(study: optuna.Study, *, grace_seconds: float) -> list[FrozenTrial]:
    """RUNNING trials that never recorded a worker although they started over ``grace_seconds``
    ago: an hpstudy worker writes its identity first thing, so such a trial's process died between
    Optuna creating the trial and that write (before any heartbeat, which a stale check needs)."""
    now = datetime.datetime.now()
    return [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trial_attrs.WORKER not in t.user_attrs and t.datetime_start is not None
        and (now - t.datetime_start).total_seconds() > grace_seconds
    ]


def abandoned_trials(study: optuna.Study, *, grace_seconds: float) -> dict[int, FrozenTrial]:
    """RUNNING trials whose worker is gone (dead here, silent past the grace period, or never
    claimed), by number."""
    return {
        t.number: t
        for t in [*dead_local_trials(study), *stale_trials(study), *unclaimed_trials(study, grace_seconds=grace_seconds)]
    }


def recover_abandoned_trials(study: optuna.Study, *, grace_seconds: float) -> list[int]:
    """Fail and re-queue every trial whose worker is gone (``abandoned_trials``); returns the
    numbers of the trials recovered by this call."""
    recovered = []
    for number, trial in sorted(abandoned_trials(study, grace_seconds=grace_seconds).items()):
        if fail_and_retry(study, trial):
            recovered.append(number)
    return recovered
