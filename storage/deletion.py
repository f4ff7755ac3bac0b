"""`hpstudy delete`: remove a study from its storage, and its checkpoint folder with it.

A study being trained is not deleted: its workers would go on writing trials into a study that
no longer exists. Trials left RUNNING by a dead worker (as `hpstudy check` finds them) do not count
as being trained. Planning reads the storage only; ``delete_study`` then removes the study through
Optuna (its trials, params, values and attrs go with it) before its checkpoints.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpstudy.storage.check import watched_study
from hpstudy.storage.engine import open_storage
from hpstudy.storage.recovery import abandoned_trials
from hpstudy.storage.stored_config import checkpoint_store
from hpstudy.storage.studies import load_existing_study
from hpstudy.storage.urls import StorageLocation
from hpstudy.study.errors import UserError


@dataclass(frozen=True)
class Deletion:
    """What deleting a study removes."""

    study_name: str
    storage: str
    trials: int
    checkpoints: Path | None  # the study's checkpoint folder, when there is one on disk

    def describe(self) -> str:
        """One line for the confirmation prompt and the summary."""
        where = f" and its checkpoints in {self.checkpoints}" if self.checkpoints is not None else ""
        return f"study '{self.study_name}' ({self.trials} trials) from {self.storage}{where}"


def plan_deletion(location: StorageLocation, study_name: str) -> Deletion:
    """What deleting ``study_name`` would remove; UserError when it does not exist or is being
    trained right now. Writes nothing."""
    load_existing_study(location, study_name)  # a UserError naming the studies there, when absent
    study, cfg, grace = watched_study(location, study_name, mode="read")
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    abandoned = abandoned_trials(study, grace_seconds=grace)
    live = sorted(t.number for t in running if t.number not in abandoned)
    if live:
        numbers = ", ".join(str(n) for n in live)
        raise UserError(
            f"study '{study_name}' is being trained (trial {numbers} running); stop its run first, "
            "then delete it"
        )
    folder = None
    if cfg is not None:
        store = checkpoint_store(cfg, location, study)
        folder = store.folder if store.folder.is_dir() else None
    return Deletion(study_name, location.display(), len(study.get_trials(deepcopy=False)), folder)


def delete_study(location: StorageLocation, plan: Deletion) -> None:
    """Delete the study of ``plan`` (from ``plan_deletion``), then its checkpoint folder."""
    optuna.delete_study(study_name=plan.study_name, storage=open_storage(location, mode="write"))
    if plan.checkpoints is not None:
        shutil.rmtree(plan.checkpoints, ignore_errors=True)
