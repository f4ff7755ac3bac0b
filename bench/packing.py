"""Benchmark 4: packed trials against one trial at a time, in trials (and epochs) per hour.

Two scenarios, each a pair of whole studies on digits with the same seed and trial count, one
training trials one after another, the other K at a time (``--pack K``):

- **default space**: the default preset (TPE, median pruning, mixed widths, depths, batch sizes
  and optimizers). The sampler sees the packed trials while they run, so the two studies draw
  different params: epochs per hour is printed beside trials per hour.
- **same shape**: TPE over lr, dropout and optimizer only, every trial an MLP 2x64 with batch 64
  for 10 epochs, no pruning: the case packing is made for (no padding, equal epoch clocks), so
  both studies train the same number of epochs.

A third, **training only**, leaves Optuna, storage and the process start out: K same-shape MLPs
trained one after another (hpstudy's loop alone) against the same K trained as one pack, in one
process, for a few widths and batch sizes, as the issue's plain vmapped reference measured it.
Each member matches the trial alone (the tests check it), so the two sides do the same work.

Beside each one-at-a-time study it prints the **most any packing could gain** on this machine: the
study's wall time against what it would take if its training ran at the speed of the arithmetic
alone (each trial's epochs timed as full-batch epochs of its shape: one step an epoch, so next to
no per-step overhead) while everything outside training (sampling, storage, start-up) stayed as it
was. A pack cannot do less arithmetic than that, nor skip the rest.

    python -m bench.packing              # 40 default-space and 16 same-shape trials, pack of 8
    python -m bench.packing --quick      # 8 and 4 trials of at most 6 epochs, pack of 4 (a smoke run)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from bench.common import machine_line
from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.study import trial_attrs
from hpstudy.study.config import load_config
from hpstudy.study.data import Splits, load_splits
from hpstudy.study.models import build_model
from hpstudy.study.optimizers import build_optimizer
from hpstudy.study.packing import PackTrainer
from hpstudy.study.runner import epochs_run, run_study
from hpstudy.study.training import TrainingParts, fit, warm_up

SAME_SHAPE_SPACE: dict[str, Any] = {
    "lr": {"low": 1e-4, "high": 1e-1, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "optimizer": ["sgd", "adam", "adamw"],
    "n_layers": 2,
    "hidden_units": 64,
    "batch_size": 64,
    "epochs": 10,
}


def one_study(folder: Path, name: str, *, trials: int, pack: int, seed: int,
              values: dict[str, Any]) -> tuple[float, list[FrozenTrial]]:
    """Wall seconds and the trials of one study of the default preset with ``values`` on top."""
    cfg = load_config(preset="default", values={
        "storage": f"sqlite:///{folder / f'{name}.db'}", "study.name": name, "study.n_trials": trials,
        "study.seed": seed, "train.device": "auto", "train.pack": pack, **values,
    })
    began = time.perf_counter()
    run_study(cfg)
    seconds = time.perf_counter() - began
    return seconds, optuna.load_study(study_name=name, storage=cfg.storage).get_trials()


class ArithmeticFloor:
    """Seconds per epoch of each trial shape trained full-batch (one step an epoch, validation
    included): the speed of the arithmetic with next to no per-step overhead. Cached per shape."""

    def __init__(self, splits: Splits, *, epochs: int = 4) -> None:
        self.splits, self.epochs = splits, epochs
        self.seconds: dict[tuple[object, ...], float] = {}

    def epoch_seconds(self, hp: Hyperparams) -> float:
        """Seconds of one full-batch epoch of an MLP shaped as ``hp`` (best of ``epochs`` epochs)."""
        key = (hp.n_layers, hp.hidden_units, hp.activation, hp.dropout > 0, hp.optimizer)
        if key not in self.seconds:
            rows = len(self.splits.y_train)
            full = dataclasses.replace(hp, batch_size=rows, epochs=self.epochs + 1)
            torch.manual_seed(0)
            model = build_model(full, kind="mlp", input_shape=self.splits.input_shape, n_classes=self.splits.n_classes)
            data = (self.splits.x_train, self.splits.y_train, self.splits.x_val, self.splits.y_val)
            times, began = [], time.perf_counter()
            for _ in fit(model, build_optimizer(model, full), data, epochs=full.epochs, batch_size=rows,
                         parts=TrainingParts(torch.Generator().manual_seed(0))):
                times.append(time.perf_counter() - began)
                began = time.perf_counter()
            self.seconds[key] = min(times[1:])  # the first epoch pays one-time costs
        return self.seconds[key]

    def bound(self, trials: list[FrozenTrial], *, seconds: float) -> tuple[float, float, float]:
        """For a study of ``trials`` that took ``seconds``: its training and validation seconds,
        the same at the arithmetic's speed, and the most a pack could gain (seconds / (floor +
        the time outside training))."""
        trained = floor = 0.0
        for trial in trials:
            timing = trial.user_attrs.get(trial_attrs.TIMING) or {}
            if not trial.intermediate_values or not timing:
                continue
            trained += timing.get("train", 0.0) + timing.get("validate", 0.0)
            hp = Hyperparams.from_flat(trial.user_attrs.get(trial_attrs.HYPERPARAMS) or trial.params)
            floor += self.epoch_seconds(hp) * len(trial.intermediate_values)
        return trained, floor, seconds / (floor + seconds - trained)


def compare(folder: Path, scenario: str, *, trials: int, pack: int, repeats: int, values: dict[str, Any],
            floor: ArithmeticFloor) -> None:
    """Run the scenario one at a time and packed, interleaved over ``repeats``; print the rates."""
    print(f"\n{scenario}: {trials} trials per study, pack of {pack}, {repeats} repeat(s)")
    rates: dict[str, list[tuple[float, float]]] = {"one at a time": [], f"pack of {pack}": []}
    bounds = []
    for repeat in range(repeats):
        for label, k in (("one at a time", 1), (f"pack of {pack}", pack)):
            name = f"{scenario.replace(' ', '-')}-r{repeat}-k{k}"
            seconds, trials_run = one_study(folder, name, trials=trials, pack=k, seed=repeat, values=values)
            epochs = epochs_run(trials_run)
            rates[label].append((trials / seconds * 3600, epochs / seconds * 3600))
            print(f"repeat {repeat + 1} {label}: {seconds:.1f} s, {epochs} epochs")
            if k == 1:
                trained, least, most = floor.bound(trials_run, seconds=seconds)
                bounds.append(most)
                print(f"  training {trained:.2f} s, at the arithmetic's speed {least:.2f} s; outside training "
                      f"{seconds - trained:.2f} s: no pack can run this study more than x{most:.2f} faster")
    base_trials = statistics.median(r[0] for r in rates["one at a time"])
    base_epochs = statistics.median(r[1] for r in rates["one at a time"])
    for label, values_ in rates.items():
        per_hour, epochs = statistics.median(v[0] for v in values_), statistics.median(v[1] for v in values_)
        print(f"{label:<15} {per_hour:>9.0f} trials/h  {epochs:>10.0f} epochs/h  "
              f"x{per_hour / base_trials:.2f} trials/h  x{epochs / base_epochs:.2f} epochs/h")
    # each repeat's pair ran back to back, so its own ratio is the least touched by a drifting machine
    pairs = list(zip(rates["one at a time"], rates[f"pack of {pack}"]))
    trial_ratios = [packed[0] / alone[0] for alone, packed in pairs]
    epoch_ratios = [packed[1] / alone[1] for alone, packed in pairs]
    print(f"per repeat, packed / one at a time: trials/h {' '.join(f'x{r:.2f}' for r in trial_ratios)} "
          f"(median x{statistics.median(trial_ratios):.2f}), epochs/h {' '.join(f'x{r:.2f}' for r in epoch_ratios)} "
          f"(median x{statistics.median(epoch_ratios):.2f})")
    print(f"the most any packing could gain, per repeat: {' '.join(f'x{b:.2f}' for b in bounds)} "
          f"(median x{statistics.median(bounds):.2f})")


def train_alone(splits: Splits, hps: list[Hyperparams]) -> float:
    """Seconds to train each of ``hps`` with hpstudy's loop, one after another (seed = index)."""
    began = time.perf_counter()
    for seed, hp in enumerate(hps):
        torch.manual_seed(seed)
        model = build_model(hp, kind="mlp", input_shape=splits.input_shape, n_classes=splits.n_classes)
        data = (splits.x_train, splits.y_train, splits.x_val, splits.y_val)
        parts = TrainingParts(torch.Generator().manual_seed(seed))
        for _ in fit(model, build_optimizer(model, hp), data, epochs=hp.epochs, batch_size=hp.batch_size, parts=parts):
            pass
    return time.perf_counter() - began


def train_packed(splits: Splits, hps: list[Hyperparams]) -> float:
    """Seconds to train all of ``hps`` as one pack (seed = index), each member leaving when done."""
    began = time.perf_counter()
    trainer = PackTrainer(splits, device=torch.device("cpu"), eval_batch_size=4096)
    for seed, hp in enumerate(hps):
        trainer.add(seed, hp, seed=seed)
    while trainer.members:
        for member, result in trainer.round():
            if result.epoch == member.hp.epochs:
                trainer.remove(member)
    return time.perf_counter() - began


def compare_training(shapes: list[tuple[int, int]], *, pack: int, epochs: int, repeats: int) -> None:
    """Training only, in process: ``pack`` same-shape MLPs (2 layers, dropout 0.2, Adam, lrs apart)
    alone one after another against packed, per (width, batch size); best of ``repeats``."""
    print(f"\ntraining only: {pack} MLPs 2 x width, dropout 0.2, Adam, {epochs} epochs each, best of {repeats}")
    splits = load_splits(load_config().data, seed=0)
    warm_up()
    for width, batch in shapes:
        hps = [Hyperparams.from_flat({"n_layers": 2, "hidden_units": width, "batch_size": batch, "epochs": epochs,
                                      "dropout": 0.2, "optimizer": "adam", "lr": 1e-3 * (1 + i / 4)})
               for i in range(pack)]
        alone, packed = [], []
        for _ in range(repeats):  # interleaved, so a drifting machine slows both sides alike
            alone.append(train_alone(splits, hps))
            packed.append(train_packed(splits, hps))
        print(f"width {width:>3} batch {batch:>3}: alone {min(alone):.3f} s  packed {min(packed):.3f} s  "
              f"x{min(alone) / min(packed):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--pack", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(machine_line())
    if args.quick:
        trials, same_shape_trials, pack, repeats = 8, 4, 4, 1
        default_values: dict[str, Any] = {"search_space.epochs": {"low": 2, "high": 6}}
        same_shape = {**SAME_SHAPE_SPACE, "epochs": 3}
        shapes, training_epochs = [(32, 64)], 1
    else:
        trials, same_shape_trials, pack, repeats = args.trials, 2 * args.pack, args.pack, args.repeats
        default_values, same_shape = {}, SAME_SHAPE_SPACE
        shapes, training_epochs = [(32, 32), (64, 64), (128, 64), (128, 128), (256, 128)], 3
    floor = ArithmeticFloor(load_splits(load_config().data, seed=0))
    with tempfile.TemporaryDirectory() as tmp:
        compare(Path(tmp), "default space", trials=trials, pack=pack, repeats=repeats, values=default_values, floor=floor)
        compare(Path(tmp), "same shape", trials=same_shape_trials, pack=pack, repeats=repeats,
                values={"search_space": same_shape, "study.pruner": {"name": "none"}}, floor=floor)
    compare_training(shapes, pack=pack, epochs=training_epochs, repeats=repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
