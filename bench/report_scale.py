"""Report benchmark: how long the HTML report of large studies takes, and how big the file is.

Builds synthetic studies (``bench/synthetic.py``) in a fresh SQLite file, then times
``hpstudy report --all`` twice: in this process (load + figures + HTML, the work the report does)
and as the real command in a new process (adds Python start-up and imports), three times each
(best and median, since other work on a 2-core machine moves single runs by seconds). Prints one
line per figure; results go in ``bench/README.md``.

    python -m bench.report_scale            # 3 studies x 1,000 trials x 20 epochs (about a minute to build)
    python -m bench.report_scale --quick    # 2 x 40 x 6: a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna

from bench.synthetic import add_synthetic_study
from hpstudy.reports.html import write_report
from hpstudy.storage.studies import existing_study_names, load_existing_study
from hpstudy.storage.urls import parse_storage_url

SAMPLERS = ("tpe", "random")


def main(argv: list[str] | None = None) -> int:
    """Build the studies, time the report, print the figures."""
    args = _parser().parse_args(argv)
    if args.quick:
        args.studies, args.trials, args.epochs = 2, 40, 6
    args.repeat = args.repeat or (1 if args.quick else 3)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    with tempfile.TemporaryDirectory(prefix="hpstudy-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        started = time.perf_counter()
        for index in range(args.studies):
            sampler = SAMPLERS[index % len(SAMPLERS)]
            add_synthetic_study(
                url, f"bench-{index}-{sampler}", n_trials=args.trials, epochs=args.epochs, seed=index, sampler=sampler
            )
        build_s = time.perf_counter() - started

        location = parse_storage_url(url)
        path = Path(folder) / "report.html"
        in_process_s, cli_s = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            studies = [load_existing_study(location, name) for name in existing_study_names(location)]
            write_report(studies, path, storage=location.display())
            in_process_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "hpstudy.study.cli", "report", "--all", "--storage", url, "-o", str(path)],
                check=True, capture_output=True, text=True,
            )
            cli_s.append(time.perf_counter() - started)
        size_mb = path.stat().st_size / 1e6
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for kept in (path, Path(folder) / "bench.db"):
                (args.keep / kept.name).write_bytes(kept.read_bytes())

    shape = f"{args.studies} studies x {args.trials} trials x {args.epochs} epochs"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, Optuna {optuna.__version__}")
    print(f"studies: {shape} (built in {build_s:.1f} s)")
    print(f"report in process (load + figures + HTML): {_spread(in_process_s)}")
    print(f"hpstudy report --all (new process): {_spread(cli_s)}")
    print(f"report file: {size_mb:.2f} MB")
    print(f"load average during the run: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    return 0


def _spread(seconds: list[float]) -> str:
    """"4.90 s" for one run; "best 4.90 s, median 5.10 s of 3" for several."""
    if len(seconds) == 1:
        return f"{seconds[0]:.2f} s"
    return f"best {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s of {len(seconds)}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Time the HTML report of large synthetic studies.")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (2 x 40 x 6)")
    parser.add_argument("--studies", type=int, default=3, help="how many studies (default 3)")
    parser.add_argument("--trials", type=int, default=1000, help="trials per study (default 1000)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per trial (default 20)")
    parser.add_argument("--repeat", type=int, help="time the report this many times (default 3, 1 with --quick)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the report and the study database in DIR")
    return parser


if __name__ == "__main__":
    sys.exit(main())
