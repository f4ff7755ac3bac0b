"""Whole CLI runs in real processes: run, Ctrl-C, resume, list, best, export, spaces."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from hpstudy.storage.stored_config import recorded_runs, stored_config
from tests.conftest import run_cli
from tests.helpers import trial_states

pytestmark = pytest.mark.slow

QUICK_YAML = """
preset: default
study:
  name: cli
  n_trials: 4
  pruner: {name: median, options: {n_startup_trials: 2, n_warmup_steps: 1}}
data: {train_subset: 400, val_subset: 200}
train: {device: cpu}
search_space:
  epochs: {low: 2, high: 3}
  n_layers: 1
  hidden_units: {low: 16, high: 48}
"""


SLOW_YAML = """
study: {name: slow, n_trials: 3, pruner: {name: median, options: {n_startup_trials: 10}}}
train: {device: cpu}
search_space: {epochs: 150, n_layers: 1, hidden_units: 32, lr: {low: 0.001, high: 0.01, log: true}}
"""


def states(url, name):
    study = optuna.load_study(study_name=name, storage=url)
    return [t.state for t in study.get_trials()]


def test_run_then_inspect_the_study(tmp_path, monkeypatch, capsys):
    """A real `run` process, then the commands that look at its study (in process, for speed)."""
    from hpstudy.study.cli import main

    (tmp_path / "quick.yaml").write_text(QUICK_YAML)
    result = run_cli("run", "quick.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Top " in out and "Best: trial" in out
    assert f"Stored in sqlite:///{tmp_path / 'hpstudy.db'} as study 'cli'" in out
    assert "reached its target" not in out
    # the run folded SQLite's write-ahead log into the file as it closed its connections, so the
    # .db file alone, copied elsewhere (mailed, backed up), holds every trial
    (tmp_path / "copy").mkdir()
    copied = tmp_path / "copy" / "hpstudy.db"
    copied.write_bytes((tmp_path / "hpstudy.db").read_bytes())
    assert len(states(f"sqlite:///{copied}", "cli")) == 4
    assert states(f"sqlite:///{tmp_path / 'hpstudy.db'}", "cli").count(TrialState.RUNNING) == 0

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "cli" in listing and "minimize" in listing

    assert main(["best", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    study = optuna.load_study(study_name="cli", storage=f"sqlite:///{tmp_path / 'hpstudy.db'}")
    assert record["trial"] == study.best_trial.number and record["value"] == study.best_value
    assert record["params"] == study.best_trial.params

    assert main(["export", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4
    assert {"number", "state", "value", "duration_s", "epochs_run", "params_lr"} <= set(rows[0])

    out_file = tmp_path / "trials.json"
    assert main(["export", "-o", str(out_file)]) == 0  # JSON, as the name says
    records = json.loads(out_file.read_text())
    assert [r["number"] for r in records] == [0, 1, 2, 3]
    assert all(r["epochs_run"] >= 1 for r in records)

    capsys.readouterr()
    assert main(["run", "quick.yaml", "--no-report"]) == 0
    again = capsys.readouterr().out
    assert "0 trials this run" in again
    assert (f"The study had reached its target; to run more, raise it: hpstudy resume --study-name cli "
            f"--storage sqlite:///{tmp_path / 'hpstudy.db'} --n-trials 8") in again


def test_a_space_that_searches_nothing_is_pointed_out(tmp_path, monkeypatch, capsys):
    """A config file without `preset:` is its whole space: one that fixes every param trains the
    same params again and again, which the run says before it starts."""
    from hpstudy.study.cli import main

    (tmp_path / "fixed.yaml").write_text(
        "study: {name: fixed, n_trials: 2}\ntrain: {device: cpu}\ndata: {train_subset: 200, val_subset: 100}\n"
        "search_space: {epochs: 1, n_layers: 1, hidden_units: 16}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "fixed.yaml", "--no-report"]) == 0
    assert "Note: the search space searches nothing (every param is fixed)" in capsys.readouterr().out
    assert main(["run", "fixed.yaml", "--no-report", "--study-name", "searched",
                 "--set", "search_space.lr={low: 0.001, high: 0.1, log: true}"]) == 0
    assert "searches nothing" not in capsys.readouterr().out
    assert main(["run", "fixed.yaml", "--no-report", "--study-name", "inert",
                 "--set", "search_space.momentum={low: 0.5, high: 0.9}"]) == 0
    assert ("Note: momentum is searched, but only optimizer sgd or rmsprop uses it, which no trial of this space "
            "tries: it changes nothing; leave it out of search_space") in capsys.readouterr().out


def test_spaces_lists_every_preset_with_ranges(capsys):
    from hpstudy.search_spaces.presets import PRESETS
    from hpstudy.study.cli import main

    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f"{name}:" in out
    assert "0.0001 .. 0.1 (log)" in out
    assert "mlp on digits, study 'digits-mlp'" in out and "study 'digits-mlp-full'" in out


def test_every_command_has_help(tmp_path, capsys):
    import argparse

    from hpstudy.study.cli import build_parser, main

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert {"run", "resume", "worker", "enqueue", "check", "delete", "list", "best", "export", "report"} <= set(commands.choices)
    for command in commands.choices:
        assert main([command, "--help"]) == 0
        assert f"usage: hpstudy {command}" in capsys.readouterr().out
    result = run_cli("run", "--help", cwd=tmp_path)  # and from a real process
    assert result.returncode == 0 and "usage: hpstudy run" in result.stdout


def wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_ctrl_c_then_resume_reaches_the_target(tmp_path, monkeypatch):
    from hpstudy.study.cli import main

    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    (tmp_path / "slow.yaml").write_text(SLOW_YAML)
    process = subprocess.Popen([sys.executable, "-m", "hpstudy.study.cli", "run", "slow.yaml"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def one_done_one_running():
        found = trial_states(tmp_path / "hpstudy.db", "slow")
        return "RUNNING" in found and found.count("COMPLETE") + found.count("PRUNED") >= 1

    wait_for(one_done_one_running)
    before = [s for s in states(url, "slow") if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "hpstudy resume --study-name slow" in out
    after = states(url, "slow")
    assert TrialState.RUNNING not in after
    assert after.count(TrialState.FAIL) == 1
    assert len([s for s in after if s in (TrialState.COMPLETE, TrialState.PRUNED)]) >= len(before)

    monkeypatch.chdir(tmp_path)  # the resume in process: the interrupted run was the real process
    assert main(["resume", "--study-name", "slow", "--no-report"]) == 0
    final = optuna.load_study(study_name="slow", storage=url)
    finished = [t for t in final.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    assert not [t for t in final.get_trials() if t.state == TrialState.RUNNING]
    runs = recorded_runs(final)
    assert len(runs) == 2
    assert runs[0]["stop_reason"] == "interrupted" and runs[1]["stop_reason"] == "target reached"
    assert {r["sampler"] for r in runs} == {"TPESampler"} and {r["pruner"] for r in runs} == {"MedianPruner"}
    assert runs[1]["sampler_seed"] != runs[0]["sampler_seed"]
    assert stored_config(final).study.pruner.name == "median"


def test_best_without_a_complete_trial_exits_1(tmp_path, capsys):
    """A study whose trials all failed or were pruned has no best: `best` says so on stderr and
    exits 1, so a script piping `best --json` can tell it from an answer."""
    from hpstudy.study.cli import main

    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    made = optuna.create_study(study_name="none-done", storage=url)
    made.tell(made.ask(), state=TrialState.PRUNED)
    made.tell(made.ask(), state=TrialState.FAIL)
    assert main(["best", "--storage", url]) == 1
    captured = capsys.readouterr()
    assert "study 'none-done' has no complete trial yet" in captured.err and captured.out == ""
    assert main(["best", "--json", "--storage", url]) == 1
    assert json.loads(capsys.readouterr().out) is None

    made.tell(made.ask(), 0.25)
    assert main(["best", "--json", "--storage", url]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == 0.25


@pytest.mark.parametrize("args", [[], ["--preset", "lr-sweep", "--quick"], ["--preset", "cnn", "--set", "train.pack=1"],
                                  ["--preset", "batch-size-sweep", "--repeats", "2", "--n-trials", "5"]])
def test_print_config_writes_a_file_that_runs_as_the_same_config(tmp_path, monkeypatch, capsys, args):
    """`run --print-config` prints YAML that `run FILE` loads back to the very same config (a way to
    start one's own file from a preset), and runs nothing: no database, no report."""
    from hpstudy.study.cli import main
    from hpstudy.study.config import load_config

    monkeypatch.chdir(tmp_path)
    assert main(["run", *args, "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# hpstudy config")
    (tmp_path / "mine.yaml").write_text(printed)
    preset = args[args.index("--preset") + 1] if "--preset" in args else None
    values = {"study.n_trials": 5} if "--n-trials" in args else None
    expected = load_config(preset=preset, quick="--quick" in args, overrides=[a for a in args if "=" in a],
                           repeats=2 if "--repeats" in args else None, values=values)
    assert load_config(tmp_path / "mine.yaml") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]


def test_resume_print_config_shows_the_stored_config_with_new_limits(tmp_path, capsys):
    from hpstudy.study.cli import main
    from hpstudy.study.config import load_config

    url = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    assert main(["run", "--quick", "--storage", url, "--no-report", "--set", "search_space.dropout=0.1"]) == 0
    capsys.readouterr()
    assert main(["resume", "--storage", url, "--n-trials", "9", "--print-config"]) == 0
    (tmp_path / "stored.yaml").write_text(capsys.readouterr().out)
    cfg = load_config(tmp_path / "stored.yaml")
    assert cfg.study.n_trials == 9 and cfg.search_space.to_dict()["dropout"] == 0.1
    assert len(optuna.load_study(study_name="digits-mlp-quick", storage=url).trials) == 4  # nothing ran


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`hpstudy best --json | head -1`: the reader closes the pipe before hpstudy writes, which
    printed a BrokenPipeError traceback and 'failed' (exit 1)."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    optuna.create_study(storage=url, study_name="p").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    process = subprocess.Popen([sys.executable, "-m", "hpstudy.study.cli", "best", "--storage", url, "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # before the interpreter has even started hpstudy
    err = process.stderr.read()
    assert process.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "failed" not in err
