"""`hpstudy enqueue`: queue known params; the study's next trials run them before sampling anew."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from hpstudy.search_spaces.catalog import PER_LAYER_PREFIX
from hpstudy.search_spaces.params import Fixed
from hpstudy.storage.engine import open_storage
from hpstudy.storage.stored_config import stored_config
from hpstudy.storage.studies import load_existing_study
from hpstudy.storage.urls import StorageLocation
from hpstudy.study.errors import UserError, did_you_mean, quote, shorten

ENQUEUED_ATTR = "enqueued"


@dataclass(frozen=True)
class Queued:
    """What ``enqueue_params`` did: the sets it queued, the trials now waiting in all, the trials
    finished, and the target a plain ``hpstudy resume`` runs to (the stored ``study.n_trials``)."""

    queued: int
    waiting: int
    finished: int
    target: int

    @property
    def beyond_target(self) -> int:
        """How many waiting trials a run to the stored target leaves waiting (it stops at the target)."""
        return max(0, self.finished + self.waiting - self.target)


def enqueue_params(location: StorageLocation, study_name: str, params: Any) -> Queued:
    """Check ``params`` (one mapping or a list of them) against the study's stored space and queue
    them. Nothing is queued unless every set is valid."""
    batch = params if isinstance(params, list) else [params]
    if not batch:
        raise UserError("--params is an empty list; give at least one set of params")
    cfg = stored_config(load_existing_study(location, study_name))
    checked = [_check(cfg.search_space, entry, cfg.model.per_layer_units) for entry in batch]
    study = optuna.load_study(study_name=study_name, storage=open_storage(location, mode="write"))
    for entry in checked:
        study.enqueue_trial(entry, user_attrs={ENQUEUED_ATTR: True})
    trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.COMPLETE, TrialState.PRUNED))
    waiting = sum(trial.state == TrialState.WAITING for trial in trials)
    return Queued(queued=len(checked), waiting=waiting, finished=len(trials) - waiting, target=cfg.study.n_trials)


def _check(space: Any, entry: Any, per_layer_units: bool) -> dict[str, Any]:
    if not isinstance(entry, Mapping) or not entry:
        raise UserError(f"--params: each set must be a non-empty JSON object of param names to values (got {quote(entry)})")
    checked = {}
    for name, value in entry.items():
        spec_name = "hidden_units" if per_layer_units and str(name).startswith(PER_LAYER_PREFIX) else name
        if spec_name not in space.searched:
            if spec_name in space.specs and isinstance(space.specs[spec_name], Fixed):
                raise UserError(f"--params: {quote(name)} is fixed at {quote(space.specs[spec_name].value)} in this study; leave it out")
            raise UserError(
                f"--params: {quote(name)} is not searched by this study{did_you_mean(str(name), space.searched)}"
            )
        spec = space.specs[spec_name]
        if not spec.contains(value):
            raise UserError(f"--params: {shorten(str(name))}={quote(value)} is outside the study's space ({spec.describe()})")
        checked[name] = spec.canonical(value)  # 64.0 runs as the batch size 64, not as a float
    return checked
