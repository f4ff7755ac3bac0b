"""Benchmark 4: packed trials against one trial at a time, in trials (and epochs) per hour.

Both runs are whole studies of the default preset on digits (TPE, median pruning, mixed widths,
depths, batch sizes and optimizers) with the same seed and trial count; one trains trials one
after another, the other K at a time (``--pack K``). The sampler sees the packed trials while they
run, so the two studies draw different params: epochs per hour is printed beside trials per hour.

    python -m bench.packing              # 40 trials, pack of 8, interleaved repeats
    python -m bench.packing --quick      # 8 trials of at most 6 epochs, pack of 4 (a smoke run)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from bench.common import machine_line
from hpstudy.study.config import load_config
from hpstudy.study.runner import epochs_run, run_study


def one_study(folder: Path, name: str, *, trials: int, pack: int, seed: int, max_epochs: int | None) -> tuple[float, int]:
    """Wall seconds and epochs trained by one study."""
    values = {"storage": f"sqlite:///{folder / f'{name}.db'}", "study.name": name, "study.n_trials": trials,
              "study.seed": seed, "train.device": "auto", "train.pack": pack}
    if max_epochs:
        values["search_space.epochs"] = {"low": 2, "high": max_epochs}
    cfg = load_config(preset="default", values=values)
    began = time.perf_counter()
    run_study(cfg)
    seconds = time.perf_counter() - began
    return seconds, epochs_run(optuna.load_study(study_name=name, storage=cfg.storage).get_trials())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--pack", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    trials, pack, repeats, max_epochs = (8, 4, 1, 6) if args.quick else (args.trials, args.pack, args.repeats, None)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(machine_line())
    print(f"default preset on digits, {trials} trials per study, pack of {pack}, {repeats} repeat(s)")
    rates: dict[str, list[tuple[float, float]]] = {"one at a time": [], f"pack of {pack}": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            for label, k in (("one at a time", 1), (f"pack of {pack}", pack)):
                seconds, epochs = one_study(Path(tmp), f"r{repeat}-k{k}", trials=trials, pack=k, seed=repeat,
                                            max_epochs=max_epochs)
                rates[label].append((trials / seconds * 3600, epochs / seconds * 3600))
                print(f"repeat {repeat + 1} {label}: {seconds:.1f} s, {epochs} epochs")
    base_trials = statistics.median(r[0] for r in rates["one at a time"])
    base_epochs = statistics.median(r[1] for r in rates["one at a time"])
    for label, values in rates.items():
        per_hour, epochs = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
        print(f"{label:<15} {per_hour:>9.0f} trials/h  {epochs:>10.0f} epochs/h  "
              f"x{per_hour / base_trials:.2f} trials/h  x{epochs / base_epochs:.2f} epochs/h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
