"""Small real studies for report tests: trials made with ``optuna.trial.create_trial`` carrying the
user attrs hpstudy's objective writes, added to real Optuna studies on real SQLite files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from hpstudy.storage.stored_config import save_config
from hpstudy.study import trial_attrs
from hpstudy.study.config import load_config

LR = FloatDistribution(1e-4, 1e-1, log=True)
DROPOUT = FloatDistribution(0.0, 0.5)
OPTIMIZER = CategoricalDistribution(["sgd", "adam", "rmsprop"])
UNITS = IntDistribution(16, 256, log=True)


def hp_trial(
    params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    *,
    val_loss: Sequence[float | None],
    state: TrialState = TrialState.COMPLETE,
    epochs_requested: int | None = None,
    epoch_seconds: float = 0.5,
    train_loss: Sequence[float | None] | None = None,
    extra_attrs: Mapping[str, Any] | None = None,
) -> FrozenTrial:
    """A finished trial as hpstudy records it: ``val_loss`` per epoch run (None where not finite),
    value = best epoch (COMPLETE) or last epoch (PRUNED), none when FAIL."""
    run = len(val_loss)
    finite = [v for v in val_loss if v is not None]
    train = list(train_loss) if train_loss is not None else [None if v is None else v * 0.8 for v in val_loss]
    best_epoch = val_loss.index(min(finite)) + 1 if finite else None
    attrs: dict[str, Any] = {
        trial_attrs.CURVE: {
            "train_loss": train,
            "train_accuracy": [None if v is None else round(1 - v / 3, 4) for v in train],
            "val_loss": list(val_loss),
            "val_accuracy": [None if v is None else round(1 - v / 2.5, 4) for v in val_loss],
            "lr": [params.get("lr", 1e-3)] * run,
            "epoch_seconds": [epoch_seconds] * run,
        },
        trial_attrs.HYPERPARAMS: dict(params),
        trial_attrs.EPOCHS_REQUESTED: epochs_requested or run,
        trial_attrs.EPOCHS_RUN: run,
        trial_attrs.END_REASON: {TrialState.COMPLETE: "completed", TrialState.PRUNED: f"pruned at epoch {run}"}.get(
            state, f"stopped by RuntimeError at epoch {run + 1}"
        ),
        trial_attrs.DEVICE: "cpu",
        **(extra_attrs or {}),
    }
    if best_epoch is not None:
        attrs[trial_attrs.BEST_EPOCH] = best_epoch
        attrs[trial_attrs.VAL_ACCURACY] = round(1 - min(finite) / 2.5, 4)
    value = None
    if state == TrialState.COMPLETE:
        value = min(finite)
    elif state == TrialState.PRUNED and val_loss and val_loss[-1] is not None:
        value = val_loss[-1]
    trial = create_trial(
        state=state,
        value=value,
        params=dict(params),
        distributions=dict(distributions),
        user_attrs=attrs,
        intermediate_values={epoch + 1: v for epoch, v in enumerate(val_loss) if v is not None},
    )
    trial.datetime_start = trial.datetime_complete - dt.timedelta(seconds=epoch_seconds * run + 0.1)
    return trial


def hp_study(
    url: str,
    name: str,
    trials: Sequence[FrozenTrial],
    *,
    space: Mapping[str, Any] | None = None,
    config_values: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Study ``name`` at ``url`` with an hpstudy config (``space`` as its search space) and ``trials``."""
    cfg = load_config(
        preset="default",
        values={
            "storage": url,
            "study.name": name,
            "search_space": dict(space if space is not None else {"lr": {"low": 1e-4, "high": 1e-1, "log": True}}),
            **(config_values or {}),
        },
    )
    created = optuna.create_study(storage=url, study_name=name, direction=cfg.study.direction)
    save_config(created, cfg)
    created.add_trials(trials)
    return created


def falling(start: float, end: float, epochs: int) -> list[float]:
    """A validation loss falling geometrically from ``start`` to ``end`` over ``epochs``."""
    if epochs == 1:
        return [end]
    ratio = (end / start) ** (1 / (epochs - 1))
    return [round(start * ratio**e, 6) for e in range(epochs)]
