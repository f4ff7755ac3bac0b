"""Benchmark: the same fixed work on a quiet machine and on a busy one.

Fixed work: 5 trials of an MLP 2x128 (ReLU, dropout 0.2, Adam 1e-3, batch 128, 10 epochs) on
3,840 training and 1,280 validation images of FashionMNIST-format data this script writes. Each
run is a fresh process (a real study on its own SQLite file); its time is the sum of its trials'
durations as Optuna stored them. Every run is made with ``train.threads: auto`` (hpstudy's
default) and with PyTorch's default (every core), in three conditions, interleaved:

- quiet: nothing else runs;
- busy loops: one busy-loop process per core, started and stopped by this script;
- beside a study: a second hpstudy study trains at the same time (the everyday case).

    python -m bench.contention             # 3 repeats
    python -m bench.contention --quick     # 1 repeat, 2 trials of 3 epochs (a smoke run)

Prints the median time per condition and setting and the slowdown against quiet. Targets
(issue 18): with auto, slowdown beside the busy loops at most 3x, quiet time within 5 % of
PyTorch's default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.common import machine_line, write_fashion_mnist

N_IMAGES = 5_120
VAL_FRACTION = 0.25  # 3,840 training and 1,280 validation images
SETTINGS = ("auto", "default")
CONDITIONS = ("quiet", "busy loops", "beside a study")
RUN_TIMEOUT_S = 600
BUSY_LOOP = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"


def run_values(root: Path, storage: str, *, threads: str, trials: int, epochs: int) -> dict:
    """The config of one fixed-work run (``threads``: auto, or default for every core)."""
    return {
        "study.name": "fixed", "study.n_trials": trials, "study.seed": 0, "study.pruner": {"name": "none"},
        "storage": storage, "train.device": "cpu", "train.checkpoints": False,
        "train.threads": "auto" if threads == "auto" else (os.cpu_count() or 1),
        "data": {"dataset": "fashion_mnist", "root": str(root), "download": False, "val_fraction": VAL_FRACTION},
        "search_space": {"lr": 1e-3, "batch_size": 128, "epochs": epochs, "n_layers": 2, "hidden_units": 128,
                         "dropout": 0.2, "optimizer": "adam", "activation": "relu", "initializer": "default"},
    }


def one_run(values: dict) -> float:
    """Run the study ``values`` describes in this process; seconds its trials took in all."""
    import optuna

    from hpstudy.study.config import load_config
    from hpstudy.study.runner import run_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cfg = load_config(values=values)
    run_study(cfg)
    trials = optuna.load_study(study_name=cfg.study.name, storage=cfg.storage).get_trials()
    return sum(t.duration.total_seconds() for t in trials)


def timed_run(root: Path, folder: Path, *, threads: str, trials: int, epochs: int) -> float:
    """One fixed-work run in a fresh process."""
    storage = f"sqlite:///{folder / f'run-{len(list(folder.iterdir()))}.db'}"
    values = run_values(root, storage, threads=threads, trials=trials, epochs=epochs)
    done = subprocess.run([sys.executable, "-m", "bench.contention", "--one", json.dumps(values)],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=True)
    return float(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def other_work(condition: str, root: Path, folder: Path) -> Iterator[None]:
    """The condition's other processes, running for the duration of the block (each bounded in
    time by itself too, should this script die)."""
    if condition == "quiet":
        yield
        return
    if condition == "busy loops":
        commands = [[sys.executable, "-c", BUSY_LOOP.format(seconds=RUN_TIMEOUT_S)]] * (os.cpu_count() or 1)
    else:  # a second study, long enough to outlast the measured run, on PyTorch's default threads
        values = run_values(root, f"sqlite:///{folder / 'other.db'}", threads="default", trials=1000, epochs=10)
        commands = [["timeout", str(RUN_TIMEOUT_S), sys.executable, "-m", "bench.contention", "--one", json.dumps(values)]]
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in commands]
    try:
        yield
    finally:
        for process in processes:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 trials of 3 epochs")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one config (JSON) and print its seconds
    args = parser.parse_args(argv)
    if args.one:
        print(one_run(json.loads(args.one)))
        return 0
    trials, epochs, repeats = (2, 3, 1) if args.quick else (5, 10, 3)
    repeats = args.repeats or repeats
    print(machine_line())
    print(f"fixed work: {trials} trials x {epochs} epochs, MLP 2x128, 3,840/1,280 images; {repeats} repeats, interleaved")
    seconds: dict[tuple[str, str], list[float]] = {(c, s): [] for c in CONDITIONS for s in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_fashion_mnist(root, n_train=N_IMAGES)
        for _ in range(repeats):
            for condition in CONDITIONS:
                for setting in SETTINGS:
                    folder = Path(tempfile.mkdtemp(dir=tmp))
                    with other_work(condition, root, folder):
                        seconds[(condition, setting)].append(
                            timed_run(root, folder, threads=setting, trials=trials, epochs=epochs))
    medians = {key: statistics.median(values) for key, values in seconds.items()}
    print(f"{'condition':<16}{'threads':<10}{'median s':>10}{'slowdown':>10}   runs")
    for condition in CONDITIONS:
        for setting in SETTINGS:
            median = medians[(condition, setting)]
            runs = " ".join(f"{s:.2f}" for s in seconds[(condition, setting)])
            print(f"{condition:<16}{setting:<10}{median:>10.2f}{median / medians[('quiet', setting)]:>9.2f}x   {runs}")
    quiet_ratio = medians[("quiet", "auto")] / medians[("quiet", "default")]
    print(f"quiet, auto / default: {quiet_ratio:.3f} (target <= 1.05); "
          f"busy-loop slowdown with auto: {medians[('busy loops', 'auto')] / medians[('quiet', 'auto')]:.2f}x (target <= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
