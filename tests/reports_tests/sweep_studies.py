"""Real sweeps and strategy comparisons for report tests: small grid studies trained on digits with
``run_study`` (a few seconds in all), repeated over seeds, each made to show one thing a sweep
report must explain: divergence, chance-level accuracy, two params, epochs, early stopping."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import optuna
import torch

from hpstudy.study.config import load_config
from hpstudy.study.runner import run_study

QUICK = {
    "study.pruner": {"name": "none"},
    "train.device": "cpu",
    "data.train_subset": 300,
    "data.val_subset": 200,
}
SMALL_MLP = {"n_layers": 1, "hidden_units": 32}

#: name -> (search space, trials): every grid point times every seed
SWEEPS: dict[str, tuple[dict[str, Any], int]] = {
    # 1e8 diverges at once; 0.001 barely moves in 3 epochs (chance accuracy)
    "lr-sweep": ({"lr": [1e8, 1.0, 0.1, 0.001], "optimizer": "sgd", "momentum": 0.9, "epochs": 3, "seed": [0, 1, 2]}, 12),
    "lr-activation": (
        {"lr": [1.0, 0.1, 0.01], "activation": ["relu", "sigmoid"], "optimizer": "sgd", "momentum": 0.0, "epochs": 2,
         "seed": [0, 1]},
        12,
    ),
    "epochs-sweep": ({"epochs": [2, 5, 12], "optimizer": "adam", "lr": 0.05, "hidden_units": 128, "seed": [0, 1]}, 6),
    "patience-sweep": ({"patience": [1, 3], "epochs": 25, "optimizer": "adam", "lr": 0.01, "seed": [0, 1]}, 4),
    "optimizer-once": ({"optimizer": ["sgd", "adam", "rmsprop"], "lr": 0.01, "epochs": 2}, 3),
    "all-diverged": ({"lr": [1e8, 1e9], "optimizer": "sgd", "momentum": 0.9, "epochs": 2, "seed": [0, 1]}, 4),
}
#: One space searched by three samplers, two studies (study.seed 0 and 1) each.
STRATEGY_SPACE = {"lr": [1.0, 0.3, 0.1, 0.03, 0.01, 0.003], "optimizer": "sgd", "momentum": 0.9, "epochs": 1}
STRATEGY_SAMPLERS = {"grid": {}, "random": {}, "tpe": {"n_startup_trials": 3}}
STRATEGY_TRIALS = 6


def run_quick(url: str, name: str, space: Mapping[str, Any], n_trials: int, *, sampler: str = "grid",
              options: Mapping[str, Any] | None = None, seed: int = 0) -> optuna.Study:
    """Run study ``name`` on digits at the quick scale; returns it loaded."""
    cfg = load_config(
        values={
            **QUICK,
            "storage": url,
            "study.name": name,
            "study.n_trials": n_trials,
            "study.seed": seed,
            "study.sampler": {"name": sampler, "options": dict(options or {})},
            "search_space": {**SMALL_MLP, **space},
        }
    )
    run_study(cfg)
    return optuna.load_study(study_name=name, storage=url)


def add_sweeps(url: str) -> list[str]:
    """Run every study of ``SWEEPS`` at ``url``; returns their names."""
    with one_thread():
        for name, (space, n_trials) in SWEEPS.items():
            run_quick(url, name, space, n_trials)
    return list(SWEEPS)


def add_strategy_studies(url: str) -> list[str]:
    """Run ``STRATEGY_SPACE`` with each sampler of ``STRATEGY_SAMPLERS`` twice; returns the names."""
    names = []
    with one_thread():
        for sampler, options in STRATEGY_SAMPLERS.items():
            for seed in (0, 1):
                name = f"{sampler}-{seed}"
                run_quick(url, name, STRATEGY_SPACE, STRATEGY_TRIALS, sampler=sampler, options=options, seed=seed)
                names.append(name)
    return names


@contextmanager
def one_thread() -> Iterator[None]:
    """Train on one CPU thread: these models are tiny, and on a busy machine a second thread spins
    waiting for its share (ten times slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
