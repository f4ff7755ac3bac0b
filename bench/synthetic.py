"""Synthetic studies that look like hpstudy made them, built in seconds without training anything.

Each trial carries the user attrs the objective writes (``hpstudy.study.trial_attrs``): a
learning curve per epoch, epochs requested and run, the best epoch and why the trial ended. The
validation loss follows a smooth function of the params plus noise, and a median rule prunes weak
trials, so every figure of a report has something real-looking to draw. Used by the report
benchmark (``bench/report_scale.py``) and by the report tests.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from hpstudy.storage.stored_config import save_config
from hpstudy.study import trial_attrs
from hpstudy.study.config import load_config

#: The space of the synthetic studies: the default preset's MLP space plus an activation, with
#: a fixed number of epochs so every trial asks for the same budget.
SYNTHETIC_SPACE: dict[str, Any] = {
    "lr": {"low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": [32, 64, 128, 256],
    "n_layers": {"low": 1, "high": 3},
    "hidden_units": {"low": 32, "high": 256, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "initializer": ["default", "xavier_uniform", "kaiming_normal", "orthogonal"],
    "optimizer": ["sgd", "adam", "adamw", "rmsprop"],
    "activation": ["relu", "tanh", "gelu"],
}

_OPTIMIZER_PENALTY = {"sgd": 0.08, "adam": 0.0, "adamw": 0.01, "rmsprop": 0.03}
_ACTIVATION_PENALTY = {"relu": 0.0, "tanh": 0.04, "gelu": 0.01}
_T0 = dt.datetime(2024, 1, 1, 9, 0, 0)


def add_synthetic_study(
    storage: str | optuna.storages.BaseStorage,
    name: str,
    *,
    n_trials: int,
    epochs: int,
    seed: int = 0,
    sampler: str = "tpe",
    space: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Create study ``name`` in ``storage`` with its stored config and ``n_trials`` synthetic trials.

    ``sampler`` "tpe" drifts towards the best params found so far (as a model-based sampler does);
    "random" samples uniformly throughout.
    """
    cfg = load_config(
        preset="default",
        values={
            "storage": "sqlite:///synthetic.db",
            "study.name": name,
            "study.n_trials": n_trials,
            "study.sampler": {"name": sampler},
            "search_space": {**(space or SYNTHETIC_SPACE), "epochs": epochs},
        },
    )
    created = optuna.create_study(storage=storage, study_name=name, direction="minimize")
    save_config(created, cfg)
    distributions = cfg.search_space.distributions()
    created.add_trials(synthetic_trials(distributions, n_trials=n_trials, epochs=epochs, seed=seed, sampler=sampler))
    return created


def synthetic_trials(
    distributions: Mapping[str, BaseDistribution],
    *,
    n_trials: int,
    epochs: int,
    seed: int = 0,
    sampler: str = "tpe",
    warmup_epochs: int = 4,
    startup_trials: int = 5,
) -> list[FrozenTrial]:
    """``n_trials`` finished trials over ``distributions``, pruned by a median rule after
    ``warmup_epochs`` once ``startup_trials`` have completed; about 1 in 200 fails."""
    rng = np.random.default_rng(seed)
    trials: list[FrozenTrial] = []
    reported: list[list[float]] = [[] for _ in range(epochs)]
    n_completed = 0
    best: tuple[float, dict[str, Any]] | None = None
    clock = _T0
    for number in range(n_trials):
        drift = sampler == "tpe" and best is not None and rng.random() < min(0.8, number / 150)
        params = _perturbed(best[1], distributions, rng) if drift and best else _sampled(distributions, rng)
        floor = _loss_floor(params, rng)
        val_loss, train_loss = _curves(floor, epochs, params, rng)
        state, run = _fate(val_loss, reported, rng, warmup_epochs, startup_trials if n_completed < startup_trials else 0)
        n_completed += state == TrialState.COMPLETE
        for epoch in range(run):
            reported[epoch].append(val_loss[epoch])
        seconds = _epoch_seconds(params, run, rng)
        start = clock
        clock = start + dt.timedelta(seconds=float(sum(seconds)) + 0.2)
        trial = _frozen(number, params, distributions, state, val_loss[:run], train_loss[:run], seconds,
                        epochs, start, clock)
        trials.append(trial)
        if state == TrialState.COMPLETE and trial.value is not None and (best is None or trial.value < best[0]):
            best = (trial.value, params)
    return trials


def _sampled(distributions: Mapping[str, BaseDistribution], rng: np.random.Generator) -> dict[str, Any]:
    params = {}
    for name, dist in distributions.items():
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            params[name] = dist.choices[int(rng.integers(len(dist.choices)))]
        elif isinstance(dist, optuna.distributions.IntDistribution):
            params[name] = int(_draw(dist.low, dist.high + 0.999, dist.log, rng)) // dist.step * dist.step
        else:
            params[name] = float(_draw(dist.low, dist.high, dist.log, rng))
    return params


def _perturbed(
    params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution], rng: np.random.Generator
) -> dict[str, Any]:
    fresh = _sampled(distributions, rng)
    out = {}
    for name, dist in distributions.items():
        if isinstance(dist, optuna.distributions.CategoricalDistribution) or rng.random() < 0.3:
            out[name] = params[name] if rng.random() < 0.7 else fresh[name]
            continue
        low, high = (math.log(dist.low), math.log(dist.high)) if dist.log else (dist.low, dist.high)
        here = math.log(params[name]) if dist.log else params[name]
        moved = float(np.clip(here + rng.normal(0, 0.1 * (high - low)), low, high))
        value = math.exp(moved) if dist.log else moved
        value = min(max(value, dist.low), dist.high)
        out[name] = int(round(value)) if isinstance(dist, optuna.distributions.IntDistribution) else value
    return out


def _draw(low: float, high: float, log: bool, rng: np.random.Generator) -> float:
    if log:
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    return rng.uniform(low, high)


def _loss_floor(params: Mapping[str, Any], rng: np.random.Generator) -> float:
    """The best validation loss a trial can reach: lowest with lr near 0.08 (the top of the
    default range, so the report's boundary warning has something to say) and moderate dropout."""
    floor = 0.05
    floor += 0.12 * (math.log10(params.get("lr", 0.08)) - math.log10(0.08)) ** 2
    floor += 0.3 * (params.get("dropout", 0.2) - 0.2) ** 2
    floor += 0.02 * abs(math.log2(params.get("hidden_units", 128) / 128))
    floor += _OPTIMIZER_PENALTY.get(params.get("optimizer", "adam"), 0.0)
    floor += _ACTIVATION_PENALTY.get(params.get("activation", "relu"), 0.0)
    return floor * float(rng.lognormal(0.0, 0.08))


def _curves(
    floor: float, epochs: int, params: Mapping[str, Any], rng: np.random.Generator
) -> tuple[list[float], list[float]]:
    e = np.arange(1, epochs + 1)
    speed = 2.0 + 6.0 / (1.0 + 40.0 * params.get("lr", 0.01))
    overfit = 0.004 * max(0.0, 0.3 - params.get("dropout", 0.2)) * params.get("hidden_units", 128) / 32
    val = floor + (2.3 - floor) * np.exp(-e / speed) + overfit * e ** 1.5 / 10
    val = val * rng.lognormal(0.0, 0.02, size=epochs)
    train = np.maximum(val * (0.75 + 0.2 * params.get("dropout", 0.2)) - overfit * e / 2, 0.005)
    return [float(v) for v in val], [float(v) for v in train]


def _fate(
    val_loss: list[float],
    reported: list[list[float]],
    rng: np.random.Generator,
    warmup_epochs: int,
    startup_left: int,
) -> tuple[TrialState, int]:
    """COMPLETE with every epoch; PRUNED at the first epoch past warm-up that is worse than the
    median of what earlier trials reported at that epoch (Optuna's median rule), once no startup
    trials are left; or (rarely) FAIL part-way."""
    epochs = len(val_loss)
    if rng.random() < 0.005:
        return TrialState.FAIL, int(rng.integers(1, epochs + 1))
    if startup_left == 0:
        for epoch in range(warmup_epochs, epochs):
            if reported[epoch] and val_loss[epoch] > float(np.median(reported[epoch][-300:])):
                return TrialState.PRUNED, epoch + 1
    return TrialState.COMPLETE, epochs


def _epoch_seconds(params: Mapping[str, Any], run: int, rng: np.random.Generator) -> list[float]:
    base = 0.05 + 0.002 * params.get("hidden_units", 128) * params.get("n_layers", 1) * 64 / params.get("batch_size", 64)
    return [round(float(base * rng.lognormal(0.0, 0.05)), 4) for _ in range(run)]


def _frozen(
    number: int,
    params: dict[str, Any],
    distributions: Mapping[str, BaseDistribution],
    state: TrialState,
    val_loss: list[float],
    train_loss: list[float],
    seconds: list[float],
    epochs: int,
    start: dt.datetime,
    end: dt.datetime,
) -> FrozenTrial:
    run = len(val_loss)
    best_epoch = int(np.argmin(val_loss)) + 1 if run else None
    accuracy = [round(max(0.0, min(1.0, 1.0 - 0.35 * v)), 4) for v in val_loss]
    reason = {
        TrialState.COMPLETE: "completed",
        TrialState.PRUNED: f"pruned at epoch {run}",
        TrialState.FAIL: f"stopped by RuntimeError at epoch {run + 1}",
    }[state]
    curve = {
        "train_loss": train_loss,
        "train_accuracy": [round(max(0.0, min(1.0, 1.0 - 0.3 * v)), 4) for v in train_loss],
        "val_loss": val_loss,
        "val_accuracy": accuracy,
        "lr": [params.get("lr", 1e-3)] * run,
        "epoch_seconds": seconds,
    }
    attrs: dict[str, Any] = {
        trial_attrs.CURVE: curve,
        trial_attrs.HYPERPARAMS: dict(params, epochs=epochs),
        trial_attrs.EPOCHS_REQUESTED: epochs,
        trial_attrs.EPOCHS_RUN: run,
        trial_attrs.END_REASON: reason,
        trial_attrs.TRIAL_SEED: number,
        trial_attrs.DEVICE: "cpu",
    }
    if best_epoch is not None:
        attrs[trial_attrs.BEST_EPOCH] = best_epoch
        attrs[trial_attrs.VAL_ACCURACY] = accuracy[best_epoch - 1]
    value = {
        TrialState.COMPLETE: min(val_loss) if run else None,
        TrialState.PRUNED: val_loss[-1] if run else None,
        TrialState.FAIL: None,
    }[state]
    return FrozenTrial(
        number=number,
        state=state,
        value=value,
        datetime_start=start,
        datetime_complete=end,
        params=params,
        distributions=dict(distributions),
        user_attrs=attrs,
        system_attrs={},
        intermediate_values={epoch + 1: v for epoch, v in enumerate(val_loss)},
        trial_id=number,
    )
