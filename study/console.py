"""What the CLI shows while a study runs and when it ends (rich progress bar and tables)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hpstudy.reports.tables import StudyRow
from hpstudy.search_spaces.presets import Preset
from hpstudy.storage.check import CheckReport
from hpstudy.storage.urls import redact, storage_option
from hpstudy.study import trial_attrs
from hpstudy.study.config import StudyConfig
from hpstudy.study.runner import FINISHED_STATES, RunResult

TOP_TRIALS = 5


class ProgressView:
    """A RunObserver that draws a progress bar on a terminal, or prints a line per trial elsewhere."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: Any = None
        self._counts = {"pruned": 0, "failed": 0}

    def started(self, study: optuna.Study, *, target: int, finished: int, device: str) -> None:
        """Say what will run, then open the progress bar."""
        todo = max(target - finished, 0)
        self.console.print(
            f"Study [bold]{study.study_name}[/]: {finished} of {target} trials finished; "
            f"{'running ' + str(todo) + ' more on ' + device if todo else 'nothing left to run'}"
        )
        if todo and self.console.is_terminal:
            self._progress = Progress(
                TextColumn("trials"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._task = self._progress.add_task("trials", total=target, completed=finished, status="")
            self._progress.start()

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Advance the bar (or print a line) with the best value so far and the pruned count."""
        if trial.state == TrialState.PRUNED:
            self._counts["pruned"] += 1
        elif trial.state == TrialState.FAIL:
            self._counts["failed"] += 1
        best = _best_value(study)
        status = f"best {_fmt(best)} · pruned {self._counts['pruned']}"
        if self._counts["failed"]:
            status += f" · failed {self._counts['failed']}"
        if self._progress is not None:
            finished = len(study.get_trials(deepcopy=False, states=FINISHED_STATES))
            self._progress.update(self._task, completed=finished, status=status)
        else:
            self.console.print(f"trial {trial.number} {_trial_outcome(trial)}; {status}", highlight=False)

    def close(self) -> None:
        """Remove the progress bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _best_value(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:
        return None


def _trial_outcome(trial: FrozenTrial) -> str:
    epochs = trial.user_attrs.get(trial_attrs.EPOCHS_RUN)
    if trial.state == TrialState.COMPLETE:
        return f"complete: value {_fmt(trial.value)} after {epochs} epochs"
    if trial.state == TrialState.PRUNED:
        return str(trial.user_attrs.get(trial_attrs.END_REASON, "pruned"))
    return trial.state.name.lower()


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: "1 trial", "3 trials"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def print_run_summary(console: Console, result: RunResult, study: optuna.Study) -> None:
    """The end of a run: top trials, counts, wall time and where everything is stored."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    top = sorted(trials, key=lambda t: t.value, reverse=reverse)[:TOP_TRIALS]
    if top:
        console.print(trials_table(top, title=f"Top {len(top)} of {len(trials)} complete trials"))
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.counts.items()))
    console.print(
        f"{counted(result.trials_this_run, 'trial')} this run in {result.wall_seconds:.1f} s; "
        f"study has {counts or 'no trials'} ({result.finished} of {result.target} finished)"
    )
    if result.best_trial is not None:
        best = result.best_trial
        accuracy = best.user_attrs.get(trial_attrs.VAL_ACCURACY)
        acc_text = f", val accuracy {accuracy:.4f}" if accuracy is not None else ""
        console.print(f"Best: trial {best.number}, value {_fmt(best.value)}{acc_text}", highlight=False)
    if result.recovered:
        numbers = ", ".join(f"#{n}" for n in result.recovered)
        console.print(f"Recovered {len(result.recovered)} trial(s) left running by a dead process ({numbers}): failed and "
                      "queued again; a retry goes on from its trial's last checkpoint, if it had one")
    console.print(f"Stored in {redact(result.storage)} as study '{result.study_name}'", highlight=False)
    if result.trials_this_run == 0 and result.finished >= result.target:
        console.print(
            f"The study had reached its target; to run more, raise it: hpstudy resume --study-name "
            f"{result.study_name}{storage_option(result.storage)} --n-trials {result.finished + result.target}",
            markup=False, soft_wrap=True,  # one line, to copy
        )
    if result.best_model is not None:
        console.print(f"Best model weights: {result.best_model}", highlight=False)


def trials_table(trials: Sequence[FrozenTrial], *, title: str) -> Table:
    """A table of trials: number, value, accuracy, epochs run of those asked for, then every other
    param (a searched ``epochs`` is already the second half of "epochs run")."""
    names = sorted({name for t in trials for name in t.params} - {"epochs"})
    table = Table(title=title, title_justify="left")
    for column in ("trial", "value", "val acc", "epochs run", *names):
        table.add_column(column, justify="right" if column not in names else "left")
    for trial in trials:
        attrs = trial.user_attrs
        table.add_row(
            str(trial.number),
            _fmt(trial.value),
            _fmt(attrs.get(trial_attrs.VAL_ACCURACY)),
            f"{attrs.get(trial_attrs.EPOCHS_RUN, '-')}/{attrs.get(trial_attrs.EPOCHS_REQUESTED, '-')}",
            *(_param_text(trial.params.get(name)) for name in names),
        )
    return table


def _param_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def studies_table(rows: Sequence[StudyRow], *, storage: str) -> Table:
    """`hpstudy list`: a study per row with trial counts by state and the best value."""
    table = Table(title=f"Studies in {redact(storage)}", title_justify="left")
    for column in ("study", "direction", "complete", "pruned", "failed", "running", "queued", "best value", "best trial"):
        table.add_column(column, justify="left" if column in ("study", "direction") else "right")
    for row in rows:
        table.add_row(
            row.name,
            row.direction,
            *(str(row.counts.get(state, 0)) for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")),
            _fmt(row.best_value),
            "-" if row.best_trial is None else str(row.best_trial),
        )
    return table


def print_check_report(console: Console, report: CheckReport) -> None:
    """`hpstudy check`: integrity, then per study the stuck trials, orphaned and damaged
    checkpoints, files killed processes left and whether it is half-made."""
    console.print(f"Storage {redact(report.storage)}: integrity {report.integrity}")
    _print_files(console, "leftover files of a killed database build", report.leftovers, report.removed)
    for health in report.studies:
        console.print(f"Study '{health.name}':")
        if health.half_made:
            console.print("  half-made: a run was cut while creating it (no config, no trials); the same "
                          f"`hpstudy run CONFIG --study-name {health.name}` adopts it, or `hpstudy delete` it")
        if health.running:
            console.print(f"  running (worker alive): {', '.join(f'#{n}' for n in health.running)}")
        if health.stuck:
            action = "failed and queued again" if health.requeued else "run `hpstudy check --fix` or any run/resume to recover"
            console.print(f"  stuck RUNNING (worker gone): {', '.join(f'#{n}' for n in health.stuck)}; {action}")
        _print_files(console, "orphaned checkpoints", health.orphans, health.deleted)
        if health.damaged:
            action = "deleted: their trials start again from epoch 0" if health.deleted else (
                "their trials would start again from epoch 0; delete with --fix")
            console.print(f"  damaged checkpoints: {len(health.damaged)} ({action})")
            for damaged in health.damaged:
                console.print(f"    {damaged.path}: {damaged.reason}")
        _print_files(console, "temporary files of killed writers", health.leftovers, health.deleted)
        if not (health.running or health.problems or health.stuck):
            console.print("  ok")
    console.print("No problems found" if not report.problems else f"{report.problems} problem(s) left")


def _print_files(console: Console, what: str, paths: list[Path], deleted: list[Path]) -> None:
    """A count of ``paths`` (and whether --fix deleted them), then one path per line."""
    if not paths:
        return
    action = "deleted" if set(paths) <= set(deleted) else "delete with --fix"
    console.print(f"  {what}: {len(paths)} ({action})")
    for path in paths:
        console.print(f"    {path}")


def preset_table(preset: Preset, cfg: StudyConfig) -> Table:
    """`hpstudy spaces`: a preset's description, what it searches, its variants, what it fixes."""
    sampler = cfg.study.sampler.name
    size = f"{cfg.study.n_trials} trials" + (" (the whole grid)" if sampler == "grid" else "")
    table = Table(title=f"{preset.name}: {preset.description}", title_justify="left", show_header=False,
                  caption=f"{sampler} sampler, {cfg.study.pruner.name} pruner, {size}, {cfg.model.kind} on {cfg.data.dataset}, "
                          f"study '{cfg.study.name}'",
                  caption_justify="left")
    table.add_column("parameter", style="bold")
    table.add_column("range")
    described = cfg.search_space.describe()
    for name in cfg.search_space.searched:
        table.add_row(name, described[name])
    for variant, bundle in cfg.variants.items():
        table.add_row(f"  {variant}", ", ".join(f"{key}={value}" for key, value in bundle.items()))
    set_by_variants = {key for bundle in cfg.variants.values() for key in bundle}
    fixed = [f"{name}={spec.to_dict()}" for name, spec in cfg.search_space.specs.items()
             if name not in cfg.search_space.searched and name not in set_by_variants]
    if fixed:
        table.add_row("fixed", ", ".join(fixed))
    return table
