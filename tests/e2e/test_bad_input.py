"""Every user mistake: a one-line error, exit code 2, no traceback, nothing created or changed on disk."""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
from pathlib import Path

import optuna
import pytest
import torch

from hpstudy.study.cli import main
from tests.conftest import run_cli


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.yaml").write_text("- study\n- data\n")
    (tmp_path / "broken.yaml").write_text("study:\n  name: [oops\n")
    (tmp_path / "twice.yaml").write_text("study:\n  n_trials: 2\nstudy:\n  n_trials: 5\n")
    (tmp_path / "notes.db").write_text("my notes, not a database\n")
    with sqlite3.connect(tmp_path / "app.db") as connection:
        connection.execute("CREATE TABLE users (id INTEGER)")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'studies.db'}", study_name="alpha")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    for copy in ("copy.txt", "copy.html"):  # databases under names a report or an export would take
        (tmp_path / copy).write_bytes((tmp_path / "studies.db").read_bytes())
    return tmp_path


CASES = {
    "missing config": (["run", "missing.yaml"], "config file 'missing.yaml' not found"),
    "config not YAML": (["run", "broken.yaml"], "not valid YAML"),
    "key written twice": (["run", "twice.yaml"], "at line 3 (key 'study' is written twice; keep one)"),
    "key written twice in --set": (["run", "--set", "search_space.lr={low: 0.1, low: 0.2}"], "key 'low' is written twice"),
    "config not a mapping": (["run", "list.yaml"], "is a list, not a mapping"),
    "unknown key": (["run", "--set", "study.n_trails=3"], "did you mean 'n_trials'"),
    "wrong type": (["run", "--set", "study.seed=abc"], "study.seed: input should be a valid integer"),
    "low > high": (["run", "--set", "search_space.lr={low: 0.1, high: 0.01}"], "swap them"),
    "int steps that miss high": (["run", "--set", "search_space.hidden_units={low: 100, high: 1450, step: 900}"],
                                 "search_space.hidden_units: high 1450 is not low 100 plus a whole number of steps of 900; "
                                 "set high to 1000 or 1900"),
    "float steps that miss high": (["run", "--set", "search_space.dropout={low: 0.0, high: 0.9, step: 0.2}"],
                                   "search_space.dropout: high 0.9 is not low 0 plus a whole number of steps of 0.2; "
                                   "set high to 0.8\n"),
    "log low <= 0": (["run", "--set", "search_space.weight_decay={low: 0, high: 0.1, log: true}"], "a log range needs low > 0"),
    "empty choices": (["run", "--set", "search_space.optimizer=[]"], "choices is empty"),
    "unknown initializer": (["run", "--set", "search_space.initializer=[glorot]"], "unknown value 'glorot'"),
    "unknown optimizer": (["run", "--set", "search_space.optimizer=[lion]"], "unknown value 'lion'"),
    "unknown activation": (["run", "--set", "search_space.activation=mish"], "unknown value 'mish'"),
    "unknown dataset": (["run", "--set", "data.dataset=imagenet"], "data.dataset: unknown value 'imagenet'"),
    "unknown sampler": (["run", "--set", "study.sampler.name=bohb"], "study.sampler.name: unknown value 'bohb'"),
    "unknown pruner": (["run", "--set", "study.pruner.name=asha"], "study.pruner.name: unknown value 'asha'"),
    "unknown preset": (["run", "--preset", "defualt"], "unknown preset 'defualt'; did you mean 'default'"),
    "batch size 0": (["run", "--set", "search_space.batch_size=0"], "search_space.batch_size: must be in [1, inf)"),
    "batch size not int": (["run", "--set", "search_space.batch_size=[32, 64.5]"], "must be an integer"),
    "epochs 0": (["run", "--set", "search_space.epochs=0"], "search_space.epochs: must be in [1, inf)"),
    "epochs not int": (["run", "--set", "search_space.epochs=2.5"], "must be an integer"),
    "blank study name": (["run", "--study-name", " "], "study.name: a study name cannot be blank; give one"),
    "study name with a space at an end": (["run", "--study-name", "mine "], "study.name: 'mine ' has a space at an end"),
    "study name with a tab": (["run", "--set", "study.name='a\tb'"], "has a space at an end or a control character; name it 'a b'"),
    "n_trials 0": (["run", "--n-trials", "0"], "study.n_trials: input should be greater than 0"),
    "n_trials not int": (["run", "--n-trials", "2.5"], "invalid int value: '2.5'"),
    "dropout 1": (["run", "--set", "search_space.dropout=1.0"], "search_space.dropout: must be in [0, 1)"),
    "one training sample": (["run", "--set", "data.train_subset=1"], "data.train_subset: input should be greater than or equal to 2"),
    "negative timeout": (["run", "--timeout", "-5"], "study.timeout: input should be greater than or equal to 0"),
    "malformed storage": (["run", "--storage", "sqlite:/:bad"], "storage URL"),
    "storage no scheme": (["run", "--storage", "runs.db"], "did you mean sqlite:///runs.db?"),
    "unsupported storage": (["run", "--storage", "redis://localhost/0"], "unsupported backend 'redis'"),
    "unknown storage driver": (["run", "--storage", "postgresql+pgfoo://u@localhost/db"], "unknown postgresql driver 'pgfoo'"),
    "async storage driver": (["list", "--storage", "postgresql+asyncpg://u@localhost/db"], "'asyncpg' is asynchronous"),
    "missing directory": (["run", "--storage", "sqlite:///nodir/x.db"], "does not exist; create it first"),
    "text file storage": (["run", "--storage", "sqlite:///notes.db"], "not a SQLite database"),
    "foreign sqlite": (["run", "--storage", "sqlite:///app.db"], "not Optuna's"),
    "resume unknown study": (["resume", "--study-name", "beta", "--storage", "sqlite:///studies.db"], "no study 'beta'"),
    "best unknown study": (["best", "--study-name", "beta", "--storage", "sqlite:///studies.db"], "studies there: alpha"),
    "export unknown study": (["export", "--study-name", "beta", "--storage", "sqlite:///studies.db"], "no study 'beta'"),
    "resume missing storage": (["resume", "--storage", "sqlite:///none.db"], "no study"),
    "list missing storage": (["list", "--storage", "sqlite:///none.db"], "no study database"),
    "export to a directory": (["export", "--storage", "sqlite:///studies.db", "-o", "."], "-o . is a directory; name a file in it"),
    "run reporting to a missing dir": (["run", "--report", "nodir/r.html"], "report path 'nodir/r.html': directory 'nodir' does not exist"),
    "export format against the file's suffix": (["export", "--storage", "sqlite:///studies.db", "--format", "csv", "-o", "out.json"],
                                                "-o out.json names JSON but --format is csv; drop --format or name the file out.csv"),
    "export to missing dir": (["export", "--storage", "sqlite:///studies.db", "-o", "nodir/out.csv"], "does not exist"),
    "export over the study database": (["export", "--storage", "sqlite:///studies.db", "--format", "csv", "-o", "studies.db"],
                                       "-o studies.db: an export is CSV or JSON, not DB; name the file studies.csv"),
    "export over the database's log": (["export", "--storage", "sqlite:///studies.db", "-o", "studies.db-wal"],
                                       "output path 'studies.db-wal' is a file of the SQLite database 'studies.db'"),
    "export over a database named .txt": (["export", "--storage", "sqlite:///studies.db", "-o", "copy.txt"],
                                          "output path 'copy.txt' is a SQLite database; writing there would destroy it"),
    "export to a spreadsheet suffix": (["export", "--storage", "sqlite:///studies.db", "-o", "t.xlsx"],
                                       "an export is CSV or JSON, not XLSX; name the file t.csv (spreadsheets open it) or t.json"),
    "report over the study database": (["report", "--storage", "sqlite:///studies.db", "-o", "studies.db"],
                                       "report path 'studies.db': a report is an HTML file; name it studies.html"),
    "report over a database named .html": (["report", "--storage", "sqlite:///studies.db", "-o", "copy.html"],
                                           "output path 'copy.html' is a SQLite database"),
    "run reporting to a text file": (["run", "--report", "r.txt"], "report path 'r.txt': a report is an HTML file; name it r.html"),
    "report into a folder that takes no file": (["report", "--storage", "sqlite:///studies.db", "-o", "/proc/r.html"],
                                                "cannot write '/proc/r.html' ("),
    "export into a folder that takes no file": (["export", "--storage", "sqlite:///studies.db", "-o", "/proc/t.csv"],
                                                "cannot write '/proc/t.csv' ("),
    "run reporting into a folder that takes no file": (["run", "--report", "/proc/r.html"], "cannot write '/proc/r.html' ("),
    "compare given a seed": (["compare", "--set", "study.seed=3"], "--set study.seed: compare seeds the studies 0 .. R-1 itself"),
    "compare on an unknown preset with a slash": (["compare", "--preset", "a/b"], "unknown preset 'a/b'"),
    "resume a foreign study": (["resume", "--study-name", "alpha", "--storage", "sqlite:///studies.db"], "not created by hpstudy"),
    "run into a foreign study": (["run", "--study-name", "alpha", "--storage", "sqlite:///studies.db"],
                                 "hpstudy trains only studies it created; start one under a new name with "
                                 "`hpstudy run CONFIG --study-name NEW`"),
}
if importlib.util.find_spec("MySQLdb") is None:
    CASES["storage driver not installed"] = (["run", "--storage", "mysql://root@127.0.0.1/test"], "pip install mysqlclient")
if not torch.cuda.is_available():
    CASES["cuda without gpu"] = (["run", "--device", "cuda"], "no CUDA GPU is visible")


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_mistake(case, workdir, capsys):
    argv, message = CASES[case]
    before = snapshot(workdir)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("hpstudy"), err
    assert "Traceback" not in err
    assert snapshot(workdir) == before


def test_exit_code_and_message_from_a_real_process(workdir):
    before = snapshot(workdir)
    result = run_cli("run", "--set", "search_space.lr={low: 0.1, high: 0.01}", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "swap them" in result.stderr
    assert result.stdout == ""
    assert snapshot(workdir) == before
