"""Benchmark 3: where an epoch's time goes, and hpstudy's own share of it.

Runs the default preset (digits, SQLite) and reads the ``timing`` every trial records: training
and validation (the math) against report/prune, checkpoints and storage writes (hpstudy's own
work per epoch), plus the per-trial work around them (sampling the params through Optuna, building
the model, writing the trial's record) and the wall time of the whole study.

    python -m bench.overhead            # the default 20-trial study
    python -m bench.overhead --quick    # 4 trials of at most 6 epochs (a smoke run)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna

from bench.common import machine_line
from hpstudy.study import trial_attrs
from hpstudy.study.config import load_config
from hpstudy.study.runner import run_study

PER_EPOCH = ("report_prune", "checkpoint")
PER_TRIAL = ("sample", "setup", "record")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        values = {"storage": f"sqlite:///{Path(tmp) / 'overhead.db'}", "train.device": "cpu",
                  "study.n_trials": 4 if args.quick else args.trials}
        if args.quick:
            values["search_space.epochs"] = {"low": 2, "high": 6}
        cfg = load_config(preset="default", values=values)
        began = time.perf_counter()
        run_study(cfg)
        wall = time.perf_counter() - began
        trials = optuna.load_study(study_name=cfg.study.name, storage=cfg.storage).get_trials()
    totals: Counter[str] = Counter()
    for trial in trials:
        totals.update(trial.user_attrs.get(trial_attrs.TIMING, {}))
    epochs = sum(t.user_attrs.get(trial_attrs.EPOCHS_RUN, 0) for t in trials)
    math_s = totals["train"] + totals["validate"]
    per_epoch_own = sum(totals[k] for k in PER_EPOCH)
    print(f"{len(trials)} trials, {epochs} epochs, study wall time {wall:.2f} s (includes loading the data once)")
    print(f"{'phase':<14} {'seconds':>9} {'ms/epoch':>9}")
    for phase in ("train", "validate", *PER_EPOCH, *PER_TRIAL):
        print(f"{phase:<14} {totals[phase]:>9.3f} {1000 * totals[phase] / max(epochs, 1):>9.3f}")
    print(f"own share per epoch (report/prune + checkpoint + storage writes): "
          f"{per_epoch_own / (math_s + per_epoch_own):.2%}")
    inside = totals["total"]
    print(f"own share of whole trials (adds sampling, model build, the trial's record): {(inside - math_s) / inside:.2%}")
    print(f"math share of the study's wall time: {math_s / wall:.2%}")
    finished = [t for t in trials if t.datetime_start is not None and t.datetime_complete is not None]
    window = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()
    print(f"per trial, from the first trial's start to the last one's end: {1000 * window / len(finished):.0f} ms, "
          f"of which math {1000 * math_s / len(finished):.0f} ms and the rest (sampling, Optuna's ask and tell, "
          f"storage writes, hpstudy's own work) {1000 * (window - math_s) / len(finished):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
