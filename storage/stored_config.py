"""The study's own copy of its config, kept in the study's user attrs so `resume` needs nothing else."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import optuna

from hpstudy.storage.urls import StorageLocation, redact
from hpstudy.study import __version__
from hpstudy.study.config import StudyConfig
from hpstudy.study.errors import UserError

if TYPE_CHECKING:
    from hpstudy.study.checkpoints import CheckpointStore

CONFIG_ATTR = "hpstudy_config"
VERSION_ATTR = "hpstudy_version"
UID_ATTR = "hpstudy_uid"
RUN_ATTR_PREFIX = "hpstudy_run:"


def save_config(study: optuna.Study, cfg: StudyConfig) -> None:
    """Store ``cfg`` (with any storage password masked), the hpstudy version and a random id of the
    study (``study_uid``: a new one, unless a cut creation stored one already) on the study. The
    config goes last: a study with a config has everything, and one cut before it is half-made
    (``is_half_made``), which the next `hpstudy run` of that name adopts."""
    stored = cfg.to_dict()
    stored["storage"] = redact(cfg.storage)
    if study_uid(study) is None:
        study.set_user_attr(UID_ATTR, uuid.uuid4().hex)
    study.set_user_attr(VERSION_ATTR, __version__)
    study.set_user_attr(CONFIG_ATTR, stored)


def is_half_made(study: optuna.Study) -> bool:
    """True for a study that a run was cut while creating (Optuna's study row is one write, the
    config another): no stored config, no trials, no user attrs but the ones ``save_config``
    writes before the config. Nothing is lost by adopting it (``check_same_config``)."""
    return (not has_stored_config(study) and set(study.user_attrs) <= {UID_ATTR, VERSION_ATTR}
            and not study.get_trials(deepcopy=False))


def study_uid(study: optuna.Study) -> str | None:
    """The random id hpstudy gave the study when it made it (None for a study made before ids)."""
    uid = study.user_attrs.get(UID_ATTR)
    return uid if isinstance(uid, str) else None


def checkpoint_store(cfg: StudyConfig, location: StorageLocation, study: optuna.Study) -> CheckpointStore:
    """Where ``study``'s checkpoints (and best model) go: its config's ``train.checkpoint_dir``, else
    beside its SQLite file, in a folder named by the study's name and id."""
    from hpstudy.study.checkpoints import CheckpointStore, checkpoint_root  # torch: not for report-only readers

    return CheckpointStore(checkpoint_root(cfg.train.checkpoint_dir, location.sqlite_path), study.study_name,
                           study_uid(study))


def has_stored_config(study: optuna.Study) -> bool:
    """True when the study was created by hpstudy."""
    return CONFIG_ATTR in study.user_attrs


def stored_config(study: optuna.Study) -> StudyConfig:
    """The config the study was created with (its storage URL masked, also in a copy stored by an
    older hpstudy); UserError when the study was not made by hpstudy."""
    raw = study.user_attrs.get(CONFIG_ATTR)
    if raw is None and is_half_made(study):
        raise UserError(
            f"study '{study.study_name}' is half-made: a run was cut while creating it, before its config was "
            f"stored (it has no trials); run the same `hpstudy run CONFIG --study-name {study.study_name}` again, "
            "which adopts it"
        )
    if raw is None:
        raise UserError(
            f"study '{study.study_name}' was not created by hpstudy (no stored config), and hpstudy trains only "
            "studies it created; start one under a new name with `hpstudy run CONFIG --study-name NEW` "
            "(report, export, list and best read this one as it is)"
        )
    if isinstance(raw, dict) and isinstance(raw.get("storage"), str):  # stored before query passwords were masked
        raw = {**raw, "storage": redact(raw["storage"])}
    return StudyConfig.from_dict(raw)


def first_difference(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> str | None:
    """The dotted key of the first place two config dicts differ, with both values, or None."""
    for key in sorted(set(stored) | set(wanted)):
        here = f"{prefix}{key}"
        old, new = stored.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found = first_difference(old, new, f"{here}.")
            if found:
                return found
        elif old != new:
            return f"{here}: stored {old!r}, now {new!r}"
    return None


def check_same_config(study: optuna.Study, cfg: StudyConfig) -> None:
    """Refuse to continue ``study`` with a config that is not the one it was created with. A
    half-made study (``is_half_made``) of the same direction passes: the run stores its config."""
    if is_half_made(study):
        _check_adoptable(study, cfg)
        return
    difference = first_difference(stored_config(study).identity(), cfg.identity())
    if difference:
        raise UserError(
            f"study '{study.study_name}' exists with a different config ({difference}); "
            f"continue it as stored with `hpstudy resume --study-name {study.study_name}`, "
            f"choose a new --study-name, or start over after `hpstudy delete --study-name {study.study_name}`"
        )


def _check_adoptable(study: optuna.Study, cfg: StudyConfig) -> None:
    """Refuse to adopt a half-made study whose direction is not the config's (Optuna fixes it)."""
    wanted = [optuna.study.StudyDirection.MAXIMIZE if cfg.study.direction == "maximize" else optuna.study.StudyDirection.MINIMIZE]
    if list(study.directions) != wanted:
        made = ", ".join(d.name.lower() for d in study.directions)
        raise UserError(
            f"study '{study.study_name}' exists without a config or trials (a run was cut while creating it), "
            f"made to {made} where the config asks to {cfg.study.direction}; delete it with "
            f"`hpstudy delete --study-name {study.study_name}`, or choose a new --study-name"
        )


@dataclass
class RunRecord:
    """One run (or worker) of a study: when, where, with which sampler, pruner and seed.

    Kept as a study user attr under a key of its own, so concurrent workers never overwrite
    each other's records.
    """

    key: str
    started: str
    host: str
    pid: int
    sampler: str
    pruner: str
    sampler_seed: int
    device: str
    target: int
    hpstudy_version: str
    ended: str | None = None
    stop_reason: str | None = None
    trials: int | None = None
    pack: int = 1  # trials trained at once

    @classmethod
    def start(cls, study: optuna.Study, *, sampler_seed: int, device: str, target: int, pack: int = 1) -> RunRecord:
        """Write the record of a run that starts now."""
        now = _utc_now()
        record = cls(
            key=f"{RUN_ATTR_PREFIX}{now}:{socket.gethostname()}:{os.getpid()}",
            started=now,
            host=socket.gethostname(),
            pid=os.getpid(),
            sampler=type(study.sampler).__name__,
            pruner=type(study.pruner).__name__,
            sampler_seed=sampler_seed,
            device=device,
            target=target,
            hpstudy_version=__version__,
            pack=pack,
        )
        record._write(study)
        return record

    def finish(self, study: optuna.Study, *, stop_reason: str, trials: int) -> None:
        """Add the end time, why the run stopped and how many trials it started."""
        self.ended, self.stop_reason, self.trials = _utc_now(), stop_reason, trials
        self._write(study)

    def _write(self, study: optuna.Study) -> None:
        study.set_user_attr(self.key, {k: v for k, v in asdict(self).items() if k != "key"})


def recorded_runs(study: optuna.Study) -> list[dict[str, Any]]:
    """The run records of ``study``, oldest first."""
    runs = [value for key, value in study.user_attrs.items() if key.startswith(RUN_ATTR_PREFIX)]
    return sorted(runs, key=lambda run: run["started"])


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
