"""The `hpstudy` command: parse arguments, call the function that does the work, map errors to exit codes.

Exit codes: 0 done, 1 unexpected failure (or `check` found problems), 2 user mistake (one-line
message), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). The storage URL may come from
``--storage`` or the ``HPSTUDY_STORAGE`` environment variable (keeps passwords off command lines).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from hpstudy.storage import STORAGE_ENV
from hpstudy.study import __version__
from hpstudy.study.errors import UserError, quote
from hpstudy.study.standard_output import guarded_stdout

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
DEFAULT_STORAGE = "sqlite:///hpstudy.db"
PIPED_WIDTH = 160
MAX_WORKER_INDEX = 2**31 - 1
#: Pairs of flags that contradict each other, with what each does.
CONTRADICTING_FLAGS = (
    ("no_report", "report", "--no-report or --report PATH (--no-report writes no report, --report says where it goes)"),
    ("device", "devices", "--device or --devices (--devices gives each worker one of its devices, round-robin)"),
)
#: Flags that do nothing with --print-config, which runs nothing.
RUN_ONLY_FLAGS = (("workers", "--workers"), ("devices", "--devices"), ("report", "--report"), ("no_report", "--no-report"))

Handler = Callable[[argparse.Namespace, Console], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage error (exit 2)
        return int(exc.code or 0)
    _quiet_libraries()
    console = make_console()
    try:
        with guarded_stdout():  # `hpstudy spaces > /dev/full`: one line, exit 2, as for a full store
            return args.handler(args, console)
    except UserError as exc:
        print(f"hpstudy: error: {_masked(str(exc), args)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hpstudy: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `hpstudy best --json | head -3`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return EXIT_OK
    except Exception:  # a bug or a broken environment, not a user mistake: show where
        return _failed(args)


def _failed(args: argparse.Namespace) -> int:
    """Print the traceback of an unexpected error (secrets masked) and say the trials are kept."""
    print(_masked(traceback.format_exc(), args), end="", file=sys.stderr)
    print("hpstudy: failed; finished trials are kept in the storage", file=sys.stderr)
    return EXIT_FAILURE


def _masked(text: str, args: argparse.Namespace) -> str:
    """``text`` with every URL in it, and every secret of the storage URLs in use, masked."""
    from hpstudy.storage.masking import mask_text

    return mask_text(text, urls=(getattr(args, "storage", None), os.environ.get(STORAGE_ENV)))


def make_console() -> Console:
    """Rich console for stdout: the terminal's width, or a wide fixed one when piped to a file."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=PIPED_WIDTH)
    return console


def _quiet_libraries() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # hpstudy reports trials itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error that points at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="hpstudy",
        description="Hyperparameter studies for PyTorch models, built on Optuna.",
    )
    parser.add_argument("--version", action="version", version=f"hpstudy {__version__}")
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True, parser_class=_Parser
    )

    run = _command(commands, "run", _cmd_run, "start a study, or continue it to its target")
    run.add_argument("config", nargs="?", type=Path, help="YAML config file (default: the default preset)")
    run.add_argument("--preset", help="start from a named preset (see `hpstudy spaces`)")
    run.add_argument("--study-name", help="study name (default: from the config)")
    run.add_argument("--storage", default=os.environ.get(STORAGE_ENV),
                     help=f"storage URL (default: ${STORAGE_ENV}, else from the config)")
    _run_limits(run)
    _report_flags(run)
    _worker_flags(run)
    run.add_argument("--seed", type=int, help="study seed: sampler, data split and trial seeds")
    run.add_argument("--quick", action="store_true", help="a small version of the preset (a smoke run)")
    run.add_argument("--repeats", type=int, help="run every grid point this many times (seeds 0 .. R-1)")
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override any config key, e.g. --set search_space.lr.high=0.5 (repeatable)",
    )
    run.add_argument("--print-config", action="store_true",
                     help="print the whole config, defaults included, as YAML that `hpstudy run FILE` takes; run nothing")

    resume = _command(commands, "resume", _cmd_resume, "continue a study from its stored config")
    _study_flags(resume)
    resume.add_argument("--print-config", action="store_true",
                        help="print the study's stored config (with the given limits) as YAML; run nothing")
    _run_limits(resume)
    _report_flags(resume)
    _worker_flags(resume)

    worker = _command(commands, "worker", _cmd_worker, "join an existing study as one more worker process")
    _study_flags(worker)
    _run_limits(worker)
    worker.add_argument("--worker-index", type=int, default=None,
                        help="tells workers apart for seeding (default: from the process id)")
    worker.add_argument("--quiet", action="store_true", help="print only errors")

    enqueue = _command(commands, "enqueue", _cmd_enqueue, "queue known params to be tried next")
    _study_flags(enqueue)
    enqueue.add_argument("--params", required=True,
                         help='JSON object, or list of objects, e.g. \'{"lr": 0.01, "batch_size": 64}\'')

    check = _command(commands, "check", _cmd_check, "check a storage: integrity, stuck trials, orphaned checkpoints")
    check.add_argument("--study-name", help="check one study (default: all)")
    _storage_flag(check)
    check.add_argument("--fix", action="store_true", help="fail and re-queue stuck trials, delete orphaned checkpoints")

    delete = _command(commands, "delete", _cmd_delete, "delete a study and its checkpoints (asks first)")
    delete.add_argument("--study-name", required=True, help="the study to delete")
    _storage_flag(delete)
    delete.add_argument("--yes", action="store_true", help="do not ask (needed when no one is there to answer)")

    listing = _command(commands, "list", _cmd_list, "studies in a storage, with trial counts")
    _storage_flag(listing)

    best = _command(commands, "best", _cmd_best, "the best trial of a study (exit 1 while it has no complete trial)")
    _study_flags(best)
    best.add_argument("--json", action="store_true", help="print JSON")

    export = _command(commands, "export", _cmd_export, "one row per trial, as CSV or JSON")
    _study_flags(export)
    export.add_argument("--format", choices=("csv", "json"),
                        help="output format (default: the output file's suffix, else csv)")
    export.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")

    report = _command(commands, "report", _cmd_report, "write one self-contained HTML report of studies")
    report.add_argument("--study-name", action="append", default=[], help="a study to show (repeat to compare)")
    report.add_argument("--all", action="store_true", help="every study in the storage")
    _storage_flag(report)
    report.add_argument("-o", "--output", type=Path,
                        help="output file, or a directory for the default name (default: hpstudy-report-NAME.html)")

    compare = _command(commands, "compare", _cmd_compare,
                       "run the same space with several samplers and seeds, then one comparison report")
    compare.add_argument("--preset", default="search-strategies", help="the space to compare on (default search-strategies)")
    compare.add_argument("--samplers", default="grid,random,tpe", help="comma-separated samplers (default grid,random,tpe)")
    compare.add_argument("--repeats", type=int, default=3, help="studies per sampler, seeds 0 .. R-1 (default 3)")
    compare.add_argument("--n-trials", type=int, help="trials per study (default: the preset's)")
    compare.add_argument("--quick", action="store_true", help="a small version of the preset (a smoke run)")
    _storage_flag(compare)
    compare.add_argument("-o", "--output", type=Path,
                         help="report file, or a directory for the default name (default: hpstudy-report-compare-PRESET.html)")
    compare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")

    _command(commands, "spaces", _cmd_spaces, "the presets and their search spaces")
    return parser


def _command(commands: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
    sub.set_defaults(handler=handler)
    return sub


def _study_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--study-name", help="study name (may be left out when the storage holds one study)")
    _storage_flag(sub)


def _storage_flag(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--storage", default=os.environ.get(STORAGE_ENV, DEFAULT_STORAGE),
                     help=f"storage URL (default: ${STORAGE_ENV}, else {DEFAULT_STORAGE})")


def _run_limits(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--n-trials", type=int, help="target total of finished trials, counted across runs")
    sub.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    sub.add_argument("--budget-epochs", type=int, help="stop starting new trials once the study has trained this many epochs")
    sub.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    sub.add_argument("--pack", type=int, help="train this many MLP trials at once, batched (default 1)")


def _report_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    sub.add_argument("--report", type=Path, metavar="PATH",
                     help="where to write the HTML report: a file, or a directory for the default name")


def _limit_values(args: argparse.Namespace) -> dict[str, Any]:
    values = {
        "study.n_trials": args.n_trials,
        "study.timeout": args.timeout,
        "study.budget_epochs": args.budget_epochs,
        "train.device": args.device,
        "train.pack": args.pack,
    }
    return {key: value for key, value in values.items() if value is not None}


# ---------------------------------------------------------------- commands


def _refuse_contradictions(args: argparse.Namespace) -> None:
    """UserError for flags that contradict each other, which would otherwise be settled silently:
    a pair of ``CONTRADICTING_FLAGS``, or a run-only flag with ``--print-config`` (a flag and a
    ``--set`` of its key: ``load_config`` refuses them)."""
    for first, second, choice in CONTRADICTING_FLAGS:
        if _given(args, first) and _given(args, second):
            raise UserError(f"give {choice}, not both")
    if _given(args, "print_config"):
        idle = [flag for name, flag in RUN_ONLY_FLAGS if _given(args, name)]
        if idle:
            raise UserError(f"--print-config runs nothing, so {' and '.join(idle)} would do nothing; "
                            f"drop {'it' if len(idle) == 1 else 'them'} or --print-config")


def _given(args: argparse.Namespace, name: str) -> bool:
    """Whether flag ``name`` has a value (a switch: is on)."""
    return getattr(args, name, None) not in (None, False)


def _wants_workers(args: argparse.Namespace) -> bool:
    """Whether ``--workers``/``--devices`` ask for worker processes (``--workers 1`` alone: no)."""
    return args.devices is not None or (args.workers is not None and args.workers != 1)


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.study.config import load_config
    from hpstudy.study.runner import run_study

    _refuse_contradictions(args)
    values = {
        **_limit_values(args),
        **{
            key: value
            for key, value in {
                "study.name": args.study_name,
                "storage": args.storage,
                "study.seed": args.seed,
            }.items()
            if value is not None
        },
    }
    cfg = load_config(args.config, preset=args.preset, overrides=args.set, values=values, quick=args.quick,
                      repeats=args.repeats)
    if args.print_config:
        return _print_config(cfg)
    if not cfg.search_space.searched and cfg.study.n_trials > 1:
        console.print(
            "Note: the search space searches nothing (every param is fixed), so the trials differ only in "
            "their seeds; give a param a range (e.g. lr: {low: 0.0001, high: 0.1, log: true}) or start "
            "from a preset (preset: default)", highlight=False,
        )
    for reason in cfg.search_space.inert(model_kind=cfg.model.kind, variants=cfg.variants):
        console.print(f"Note: {reason}: it changes nothing; leave it out of search_space", highlight=False)
    if _wants_workers(args):
        return _run_workers(console, cfg, args)
    return _run_and_summarize(console, lambda observer: run_study(cfg, observer=observer), cfg.storage, args)


def _print_config(cfg: Any) -> int:
    """Print ``cfg`` as a YAML config file: ``load_config`` of it gives ``cfg`` back, but for a
    storage password, which is masked (a comment says so): ``hpstudy run FILE`` then takes the real
    URL from ``$HPSTUDY_STORAGE`` or ``--storage``, and refuses the masked one in one line."""
    import yaml

    from hpstudy.storage.masking import mask_url

    printed = {**cfg.to_dict(), "storage": mask_url(cfg.storage)}
    print("# hpstudy config, every default written out; run it with: hpstudy run FILE")
    if printed["storage"] != cfg.storage:
        print(f"# storage: its password is masked; run with the real URL in ${STORAGE_ENV} or --storage URL")
    print(yaml.safe_dump(printed, sort_keys=False, default_flow_style=None, width=100), end="")
    return EXIT_OK


def _cmd_resume(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.study.runner import resume_study, resumed_config

    _refuse_contradictions(args)
    name = _study_name(args)
    if args.print_config or _wants_workers(args):
        cfg = resumed_config(storage_url=args.storage, study_name=name, overrides=_limit_values(args))
        return _print_config(cfg) if args.print_config else _run_workers(console, cfg, args)
    return _run_and_summarize(
        console,
        lambda observer: resume_study(
            storage_url=args.storage, study_name=name, overrides=_limit_values(args), observer=observer
        ),
        args.storage,
        args,
    )


def _run_workers(console: Console, cfg: Any, args: argparse.Namespace) -> int:
    """``--workers N`` / ``--devices``: run ``cfg`` with worker processes, then summarize."""
    from hpstudy.study.devices import parse_device_list
    from hpstudy.study.workers import WorkerPlan, run_workers

    devices = parse_device_list(args.devices) if args.devices is not None else None
    count = args.workers if args.workers is not None else len(devices or ["one"])
    if devices is not None and len(devices) > count > 0:
        raise UserError(f"--devices lists {len(devices)} devices but --workers {count} starts only {count}; give "
                        f"--workers {len(devices)} (or more: they take the devices round-robin), or fewer devices")
    plan = WorkerPlan.make(count, devices, cfg.train.device)
    return _run_and_summarize(console, lambda observer: run_workers(cfg, plan, observer=observer), cfg.storage, args)


def _run_and_summarize(
    console: Console, start: Callable[[Any], Any], storage_url: str, args: argparse.Namespace
) -> int:
    from hpstudy.storage.studies import load_existing_study
    from hpstudy.storage.urls import parse_storage_url, storage_option
    from hpstudy.study.console import ProgressView, print_run_summary

    if not args.no_report:  # before the run: a wrong path must not cost its trials
        _check_report_output(Path.cwd() if args.report is None else args.report)
    view = ProgressView(console)
    try:
        result = start(view)
    finally:
        view.close()
    study = load_existing_study(parse_storage_url(storage_url), result.study_name)
    print_run_summary(console, result, study)
    if not args.no_report:
        try:
            path = _write_report([study], args.report, storage=result.storage)
        except UserError as exc:  # e.g. the disk filled up during the run
            raise UserError(f"{exc}; the study's trials are stored, so `hpstudy report --study-name "
                            f"{result.study_name}{storage_option(result.storage)} -o FILE.html` writes it later") from None
        console.print(f"Report: {path}")
    return _exit_code(console, result)


def _exit_code(console: Console, result: Any, *, quiet: bool = False) -> int:
    """Say how to go on after an interrupted or timed-out run (unless quiet); return the exit code."""
    from hpstudy.storage.urls import storage_option

    resume = f"hpstudy resume --study-name {result.study_name}{storage_option(result.storage)}"
    if quiet:
        console = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the process
    if result.worker_failures:
        more = f"; continue with: {resume}{result.resume_flags()}" if result.finished < result.target else ""
        print(f"hpstudy: {'; '.join(result.worker_failures)}; trials left running were queued again, and finished "
              f"trials are kept{more}", file=sys.stderr)
        return EXIT_FAILURE
    if result.interrupted:
        what = "Terminated (SIGTERM)" if result.stop_reason == "terminated" else "Interrupted"
        console.print(
            f"{what}: the running trial was ended as failed and queued again; every finished trial is "
            f"kept. Continue with: {resume}{result.resume_flags()}", markup=False, soft_wrap=True,  # one line, to copy
        )
        return EXIT_TERMINATED if result.stop_reason == "terminated" else EXIT_INTERRUPTED
    if result.stop_reason in ("timeout", "epoch budget spent"):
        console.print(f"Stopped: {result.stop_reason}; continue with: {resume}{result.resume_flags()}",
                      markup=False, soft_wrap=True)  # one line, to copy
    return EXIT_OK


def _worker_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--workers", type=int, help="worker processes sharing the storage (default: one per "
                         "--devices entry, else 1)")
    command.add_argument("--devices", help="comma-separated devices given to workers round-robin, e.g. cuda:0,cuda:1")


def _cmd_worker(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.study.console import ProgressView
    from hpstudy.study.runner import resume_study
    from hpstudy.study.workers import end_with_supervisor

    if args.worker_index is not None and not 0 <= args.worker_index <= MAX_WORKER_INDEX:
        raise UserError(f"--worker-index {quote(args.worker_index)} is out of range; give a whole number from 0 to "
                        f"{MAX_WORKER_INDEX} (it only tells workers apart for seeding), or leave it out")
    end_with_supervisor()
    index = args.worker_index if args.worker_index is not None else os.getpid()
    view = None if args.quiet else ProgressView(console)
    try:
        result = resume_study(
            storage_url=args.storage, study_name=_study_name(args), overrides=_limit_values(args),
            worker_index=index, observer=view,
        )
    finally:
        if view is not None:
            view.close()
    if not args.quiet:
        console.print(f"Worker done: {result.trials_this_run} trials; study has {result.finished} of {result.target} finished")
    return _exit_code(console, result, quiet=args.quiet)


def _cmd_enqueue(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.storage.enqueue import enqueue_params
    from hpstudy.storage.urls import parse_storage_url, storage_option
    from hpstudy.study.config import parse_yaml

    params = parse_yaml(args.params, source="--params")  # JSON is YAML; also accepts {lr: 0.1}
    name, location = _study_name(args), parse_storage_url(args.storage)
    queued = enqueue_params(location, name, params)
    console.print(f"Queued {queued.queued} trial(s); the next workers of the study run them first")
    if queued.beyond_target:
        console.print(
            f"The study's target is {queued.target} finished trials and {queued.finished} have finished, so a run to "
            f"it leaves {queued.beyond_target} queued trial(s) waiting; raise the target to run them all: "
            f"hpstudy resume --study-name {name}{storage_option(location.display())} --n-trials {queued.finished + queued.waiting}",
            markup=False, soft_wrap=True,  # the command stays on one line, to copy
        )
    return EXIT_OK


def _cmd_delete(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.storage.deletion import delete_study, plan_deletion
    from hpstudy.storage.urls import parse_storage_url

    location = parse_storage_url(args.storage)
    plan = plan_deletion(location, args.study_name)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"delete {plan.describe()}: nothing can be undone and no one is here to confirm; add --yes")
        answer = input(f"Delete {plan.describe()}? This cannot be undone. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            console.print("Nothing deleted")
            return EXIT_FAILURE
    delete_study(location, plan)
    console.print(f"Deleted {plan.describe()}", markup=False, soft_wrap=True)
    return EXIT_OK


def _cmd_check(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.storage.check import check_storage
    from hpstudy.storage.urls import parse_storage_url
    from hpstudy.study.console import print_check_report

    report = check_storage(parse_storage_url(args.storage), study_name=args.study_name, fix=args.fix)
    print_check_report(console, report)
    return EXIT_FAILURE if report.problems else EXIT_OK


def _cmd_list(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.reports.tables import study_rows
    from hpstudy.storage.engine import has_optuna_tables, open_storage
    from hpstudy.storage.urls import parse_storage_url
    from hpstudy.study.console import studies_table

    location = parse_storage_url(args.storage)
    if not has_optuna_tables(location):
        raise UserError(f"no study database at '{location.display()}'; run `hpstudy run` first or pass --storage")
    rows = study_rows(open_storage(location, mode="read"))
    if not rows:
        console.print(f"No studies in {location.display()}")
        return EXIT_OK
    console.print(studies_table(rows, storage=location.display()))
    return EXIT_OK


def _cmd_best(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.reports.tables import best_record, json_value

    study = _open_study(args)
    record = best_record(study)
    if args.json:
        print(json.dumps(json_value(record), indent=2, allow_nan=False))
    if record is None:  # not a mistake, but no answer: a script must be able to tell (exit 1, like grep)
        print(f"hpstudy: study '{study.study_name}' has no complete trial yet; `hpstudy list` shows its trials",
              file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        return EXIT_OK
    console.print(
        f"Best of '{record['study']}': trial {record['trial']}, value {record['value']:.6g}"
        + (f", val accuracy {record['val_accuracy']:.4f}" if record["val_accuracy"] is not None else "")
    )
    for name, value in record["params"].items():
        console.print(f"  {name} = {value}")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.reports.files import check_can_write, refuse_replacing_a_database
    from hpstudy.reports.tables import export_format, export_text, trials_frame, write_export
    from hpstudy.study.console import counted

    if args.output is not None and args.output.is_dir():
        example = args.output / f"trials.{args.format or 'csv'}"
        raise UserError(f"-o {args.output} is a directory; name a file in it, e.g. {example}")
    if args.output is not None and not args.output.parent.is_dir():
        raise UserError(f"-o {args.output}: directory '{args.output.parent}' does not exist; create it first")
    fmt = export_format(args.format, args.output)
    if args.output is not None:
        refuse_replacing_a_database(args.output)
        check_can_write(args.output)
    frame = trials_frame(_open_study(args))
    if args.output is None:
        sys.stdout.write(export_text(frame, fmt))
    else:
        write_export(frame, fmt, args.output)
        console.print(f"Wrote {counted(len(frame), 'trial')} to {args.output}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.storage.studies import existing_study_names, load_existing_study, pick_study_name
    from hpstudy.storage.urls import parse_storage_url

    location = parse_storage_url(args.storage)
    if args.all and args.study_name:
        raise UserError("give --all or --study-name, not both")
    names = existing_study_names(location) if args.all else list(dict.fromkeys(args.study_name)) or [
        pick_study_name(location, None)]  # a name given twice is one study
    if not names:
        raise UserError(f"no study in {location.display()}; start one with `hpstudy run` or pass --storage")
    studies = [load_existing_study(location, name) for name in names]
    path = _write_report(studies, args.output, storage=location.display())
    console.print(f"Report: {path}")
    return EXIT_OK


def _write_report(studies: Sequence[Any], output: Path | None, *, storage: str) -> Path:
    from hpstudy.reports.html import default_report_path, write_report

    path = _report_target(output, default=default_report_path([s.study_name for s in studies]))
    return write_report(studies, path, storage=storage)


def _report_target(output: Path | None, *, default: Path) -> Path:
    """Where a report goes: ``output``, or the ``default`` name in it when it is a directory, or
    ``default`` when there is no ``output``; refused when its directory does not exist."""
    path = default if output is None else output / default.name if output.is_dir() else output
    _check_report_output(path)
    return path


def _check_report_output(output: Path) -> None:
    """Refuse a report path (a file, or a directory to hold the default name) with no directory,
    one that does not end in .html, a SQLite database's file, or a place that takes no new file."""
    from hpstudy.reports.files import check_can_write, refuse_replacing_a_database

    if output.is_dir():
        check_can_write(output / "hpstudy-report.html")
        return
    if not output.parent.is_dir():
        raise UserError(f"report path '{output}': directory '{output.parent}' does not exist; create it first")
    if output.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"report path '{output}': a report is an HTML file; name it {output.with_suffix('.html').name}")
    refuse_replacing_a_database(output)
    check_can_write(output)


def _cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.storage.studies import load_existing_study
    from hpstudy.storage.urls import parse_storage_url
    from hpstudy.study.compare import check_comparison, plan_comparison, run_comparison

    samplers = [name.strip() for name in args.samplers.split(",") if name.strip()]
    plans = plan_comparison(args.preset, samplers=samplers, repeats=args.repeats, storage=args.storage,
                            n_trials=args.n_trials, quick=args.quick, overrides=args.set)
    check_comparison(plans)  # every check before the first study runs
    output = _report_target(args.output, default=Path(f"hpstudy-report-compare-{args.preset}.html"))
    results = run_comparison(plans, on_study=lambda r: console.print(
        f"{r.study_name}: {r.finished} finished, best {_value(r.best_trial)} ({r.wall_seconds:.1f} s)"))
    location = parse_storage_url(args.storage)
    studies = [load_existing_study(location, result.study_name) for result in results]
    path = _write_report(studies, output, storage=location.display())
    console.print(f"Report: {path}")
    return EXIT_OK


def _value(trial: Any) -> str:
    return "-" if trial is None else f"{trial.value:.4g}"


def _cmd_spaces(args: argparse.Namespace, console: Console) -> int:
    from hpstudy.search_spaces.presets import PRESETS
    from hpstudy.study.config import load_config
    from hpstudy.study.console import preset_table

    for preset in PRESETS.values():
        console.print(preset_table(preset, load_config(preset=preset.name)))
    return EXIT_OK


# ---------------------------------------------------------------- helpers


def _study_name(args: argparse.Namespace) -> str:
    from hpstudy.storage.studies import pick_study_name
    from hpstudy.storage.urls import parse_storage_url

    return pick_study_name(parse_storage_url(args.storage), args.study_name)


def _open_study(args: argparse.Namespace) -> Any:
    from hpstudy.storage.studies import load_existing_study
    from hpstudy.storage.urls import parse_storage_url

    return load_existing_study(parse_storage_url(args.storage), _study_name(args))


if __name__ == "__main__":
    sys.exit(main())
