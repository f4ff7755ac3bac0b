"""Benchmark 2: does pruning pay? The default space on digits, several seeds, no pruner against
median, hyperband and successive halving.

(a) At an equal trial count (60): epochs trained and wall time of each study.
(b) At equal compute: each pruned study goes on (same study, same sampler) until it has trained
    as many epochs as the unpruned study of the same seed did (``study.budget_epochs``); then its
    best validation loss is compared with the unpruned study's.

Studies run in parallel worker processes (one torch thread each).

    python -m bench.pruning            # 5 seeds x 60 trials, about 5 minutes on 2 cores
    python -m bench.pruning --quick    # 1 seed x 8 trials of at most 10 epochs (a smoke run)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import machine_line

PRUNERS = ("none", "default", "hyperband", "successive_halving")  # default: the preset's pruner


@dataclass(frozen=True)
class StudyFigures:
    """What one study measured."""

    seed: int
    pruner: str
    trials: int
    epochs: int
    seconds: float
    best: float | None


def parse_pruner(spec: str) -> dict[str, Any]:
    """``median`` or ``median:n_startup_trials=3,n_warmup_steps=2`` as a ``study.pruner`` section."""
    name, _, options = spec.partition(":")
    parsed: dict[str, Any] = {}
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        parsed[key] = float(value) if "." in value else int(value)
    return {"name": name, "options": parsed}


def run_one(job: dict[str, Any]) -> StudyFigures:
    """Run one study to its target (trials, or an epoch budget) in this process."""
    import optuna
    import torch

    from hpstudy.study.config import load_config
    from hpstudy.study.runner import epochs_run, run_study

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    values: dict[str, Any] = {
        "storage": job["storage"],
        "study.name": job["name"],
        "study.seed": job["seed"],
        "study.n_trials": job["n_trials"],
        "study.budget_epochs": job.get("budget_epochs"),
        "train.device": "cpu",
    }
    if job["pruner"] != "default":
        values["study.pruner"] = parse_pruner(job["pruner"])
    if job.get("max_epochs"):
        values["search_space.epochs"] = {"low": 2, "high": job["max_epochs"]}
    cfg = load_config(preset="default", values=values)
    began = time.perf_counter()
    run_study(cfg)
    seconds = time.perf_counter() - began
    study = optuna.load_study(study_name=job["name"], storage=job["storage"])
    trials = study.get_trials(deepcopy=False)
    try:
        best = study.best_value
    except ValueError:
        best = None
    return StudyFigures(job["seed"], job["label"], len(trials), epochs_run(trials), seconds, best)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, 8 trials of at most 10 epochs")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2, help="studies run at once")
    parser.add_argument("--pruners", default=" ".join(PRUNERS),
                        help="space-separated; 'default' is the preset's; options as median:n_warmup_steps=2,n_startup_trials=3")
    args = parser.parse_args(argv)
    seeds, trials, max_epochs = (1, 8, 10) if args.quick else (args.seeds, args.trials, None)
    pruners = [p for p in args.pruners.split() if p != "none"]
    if args.quick:
        pruners = ["default"]
    print(machine_line())
    print(f"default space on digits; {seeds} seed(s); {trials} trials; pruners: none, {', '.join(pruners)}")
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(max_workers=args.jobs) as pool:
        def job(seed: int, pruner: str, *, n_trials: int, budget: int | None = None) -> dict[str, Any]:
            tag = "".join(ch if ch.isalnum() else "_" for ch in pruner)
            return {"storage": f"sqlite:///{Path(tmp) / f'{tag}-{seed}.db'}", "name": f"{tag}-{seed}",
                    "seed": seed, "pruner": pruner, "label": pruner, "n_trials": n_trials,
                    "budget_epochs": budget, "max_epochs": max_epochs}

        unpruned = {f.seed: f for f in pool.map(run_one, [job(s, "none", n_trials=trials) for s in range(seeds)])}
        at_count = list(pool.map(run_one, [job(s, p, n_trials=trials) for s in range(seeds) for p in pruners]))
        at_budget = list(pool.map(run_one, [
            job(s, p, n_trials=100_000, budget=unpruned[s].epochs) for s in range(seeds) for p in pruners
        ]))
    report(unpruned, at_count, at_budget, pruners)
    return 0


def report(
    unpruned: dict[int, StudyFigures], at_count: list[StudyFigures], at_budget: list[StudyFigures], pruners: list[str]
) -> None:
    """Print the (a) and (b) tables."""
    base_epochs = statistics.mean(f.epochs for f in unpruned.values())
    base_seconds = statistics.mean(f.seconds for f in unpruned.values())
    print("\n(a) equal trial count")
    print(f"{'pruner':<20} {'epochs':>8} {'saved':>7} {'seconds':>8}")
    print(f"{'none':<20} {base_epochs:>8.0f} {'-':>7} {base_seconds:>8.1f}")
    for pruner in pruners:
        rows = [f for f in at_count if f.pruner == pruner]
        saved = 1 - statistics.mean(f.epochs / unpruned[f.seed].epochs for f in rows)
        print(f"{pruner:<20} {statistics.mean(f.epochs for f in rows):>8.0f} {saved:>7.0%} "
              f"{statistics.mean(f.seconds for f in rows):>8.1f}")
    print("\n(b) equal epochs: best validation loss (lower is better)")
    print(f"{'pruner':<20} {'wins':>6}  per seed: pruned / unpruned (trials run)")
    for pruner in pruners:
        rows = sorted((f for f in at_budget if f.pruner == pruner), key=lambda f: f.seed)
        wins = sum(f.best is not None and unpruned[f.seed].best is not None and f.best < unpruned[f.seed].best for f in rows)
        detail = ", ".join(f"{f.best:.4f}/{unpruned[f.seed].best:.4f} ({f.trials})" for f in rows if f.best is not None)
        print(f"{pruner:<20} {wins:>3}/{len(rows):<2}  {detail}")


if __name__ == "__main__":
    raise SystemExit(main())
