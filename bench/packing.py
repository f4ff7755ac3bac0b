"""Benchmark 4: packed trials against one trial at a time, in trials (and epochs) per hour.

Two scenarios, each a pair of whole studies on digits with the same seed and trial count, one
training trials one after another, the other K at a time (``--pack K``):

- **default space**: the default preset (TPE, median pruning, mixed widths, depths, batch sizes
  and optimizers). The sampler sees the packed trials while they run, so the two studies draw
  different params: epochs per hour is printed beside trials per hour.
- **same shape**: TPE over lr, dropout and optimizer only, every trial an MLP 2x64 with batch 64
  for 10 epochs, no pruning: the case packing is made for (no padding, equal epoch clocks), so
  both studies train the same number of epochs.

    python -m bench.packing              # 40 default-space and 16 same-shape trials, pack of 8
    python -m bench.packing --quick      # 8 and 4 trials of at most 6 epochs, pack of 4 (a smoke run)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from bench.common import machine_line
from hpstudy.study.config import load_config
from hpstudy.study.runner import epochs_run, run_study

SAME_SHAPE_SPACE: dict[str, Any] = {
    "lr": {"low": 1e-4, "high": 1e-1, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "optimizer": ["sgd", "adam", "adamw"],
    "n_layers": 2,
    "hidden_units": 64,
    "batch_size": 64,
    "epochs": 10,
}


def one_study(folder: Path, name: str, *, trials: int, pack: int, seed: int, values: dict[str, Any]) -> tuple[float, int]:
    """Wall seconds and epochs trained by one study of the default preset with ``values`` on top."""
    cfg = load_config(preset="default", values={
        "storage": f"sqlite:///{folder / f'{name}.db'}", "study.name": name, "study.n_trials": trials,
        "study.seed": seed, "train.device": "auto", "train.pack": pack, **values,
    })
    began = time.perf_counter()
    run_study(cfg)
    seconds = time.perf_counter() - began
    return seconds, epochs_run(optuna.load_study(study_name=name, storage=cfg.storage).get_trials())


def compare(folder: Path, scenario: str, *, trials: int, pack: int, repeats: int, values: dict[str, Any]) -> None:
    """Run the scenario one at a time and packed, interleaved over ``repeats``; print the rates."""
    print(f"\n{scenario}: {trials} trials per study, pack of {pack}, {repeats} repeat(s)")
    rates: dict[str, list[tuple[float, float]]] = {"one at a time": [], f"pack of {pack}": []}
    for repeat in range(repeats):
        for label, k in (("one at a time", 1), (f"pack of {pack}", pack)):
            name = f"{scenario.replace(' ', '-')}-r{repeat}-k{k}"
            seconds, epochs = one_study(folder, name, trials=trials, pack=k, seed=repeat, values=values)
            rates[label].append((trials / seconds * 3600, epochs / seconds * 3600))
            print(f"repeat {repeat + 1} {label}: {seconds:.1f} s, {epochs} epochs")
    base_trials = statistics.median(r[0] for r in rates["one at a time"])
    base_epochs = statistics.median(r[1] for r in rates["one at a time"])
    for label, values_ in rates.items():
        per_hour, epochs = statistics.median(v[0] for v in values_), statistics.median(v[1] for v in values_)
        print(f"{label:<15} {per_hour:>9.0f} trials/h  {epochs:>10.0f} epochs/h  "
              f"x{per_hour / base_trials:.2f} trials/h  x{epochs / base_epochs:.2f} epochs/h")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--pack", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(machine_line())
    if args.quick:
        trials, same_shape_trials, pack, repeats = 8, 4, 4, 1
        default_values: dict[str, Any] = {"search_space.epochs": {"low": 2, "high": 6}}
        same_shape = {**SAME_SHAPE_SPACE, "epochs": 3}
    else:
        trials, same_shape_trials, pack, repeats = args.trials, 2 * args.pack, args.pack, args.repeats
        default_values, same_shape = {}, SAME_SHAPE_SPACE
    with tempfile.TemporaryDirectory() as tmp:
        compare(Path(tmp), "default space", trials=trials, pack=pack, repeats=repeats, values=default_values)
        compare(Path(tmp), "same shape", trials=same_shape_trials, pack=pack, repeats=repeats,
                values={"search_space": same_shape, "study.pruner": {"name": "none"}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
