"""A password planted in a real PostgreSQL URL (in its user info and in a query parameter) appears
in no output of any command, no file any command writes, and nothing stored in the database; a
config printed with its password masked runs with the real URL from the environment and is
refused in one line without it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import psycopg
import pytest

from hpstudy.study.cli import main
from tests.conftest import POSTGRES_ADMIN

pytestmark = pytest.mark.postgres

PASSWORD = "PlantedSecret123"
QUERY_SECRET = "QuerySecret456"
#: What must never show: the tails too, which an unescaped '@' in a password would print as a host.
SECRETS = ("Secret123", "Secret456")
TINY = """
study: {name: leak, n_trials: 1, pruner: {name: none}}
data: {train_subset: 200, val_subset: 100}
train: {device: cpu}
search_space: {epochs: 1, n_layers: 1, hidden_units: 16, lr: {low: 0.001, high: 0.05, log: true}, batch_size: 64}
"""


@pytest.fixture
def secret_url(postgres_url):
    """The test database, owned by a new role with a password, as a URL with that password and a
    secret ``sslpassword`` query parameter (trust auth lets any password in); role and database
    are dropped afterwards."""
    database = postgres_url.rsplit("/", 1)[1]
    role = f"{database}_role"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{PASSWORD}'")
        admin.execute(f'ALTER DATABASE "{database}" OWNER TO "{role}"')
        try:
            yield f"postgresql://{role}:{PASSWORD}@127.0.0.1:5432/{database}?sslpassword={QUERY_SECRET}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def leaks(text: str) -> list[str]:
    """The planted secrets found in ``text``."""
    return [secret for secret in SECRETS if secret in text]


def stored_text(url: str) -> str:
    """Everything the database holds, as text: every study's and trial's attrs read back through
    Optuna, and every row of every table."""
    parts = []
    for summary in optuna.get_all_study_summaries(storage=url):
        loaded = optuna.load_study(study_name=summary.study_name, storage=url)
        parts.append(json.dumps(loaded.user_attrs, default=str))
        parts += [json.dumps([t.user_attrs, t.system_attrs, t.params], default=str) for t in loaded.get_trials()]
    with psycopg.connect(url.split("?")[0]) as connection:
        tables = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        for (table,) in tables:
            parts += [row[0] for row in connection.execute(f'SELECT t::text FROM "{table}" t').fetchall()]
    return "\n".join(parts)


def written_text(*folders: Path) -> str:
    """The bytes of every file under ``folders`` (reports, exports, checkpoints), as text."""
    return "\n".join(path.read_bytes().decode("latin-1") for folder in folders for path in folder.rglob("*")
                     if path.is_file())


def unreachable(url: str) -> str:
    """``url`` on a port nothing listens on."""
    return url.replace(":5432/", ":1/")


def test_no_command_shows_writes_or_stores_a_planted_password(secret_url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSTUDY_STORAGE", raising=False)
    (tmp_path / "tiny.yaml").write_text(TINY)
    shown: dict[str, str] = {}

    def cli(label: str, *argv: str, code: int = 0) -> str:
        got = main(list(argv))
        captured = capsys.readouterr()
        shown[label] = captured.out + captured.err
        assert got == code, (label, shown[label])
        return captured.out

    cli("run", "run", "tiny.yaml", "--storage", secret_url, "--set", "train.checkpoint_every=1", "--no-report")
    assert "***" in shown["run"]
    printed = cli("print-config", "run", "tiny.yaml", "--storage", secret_url, "--print-config")
    (tmp_path / "printed.yaml").write_text(printed)
    assert "storage: postgresql://" in printed and "***" in printed and "$HPSTUDY_STORAGE" in printed
    cli("printed, no URL", "run", "printed.yaml", "--no-report", code=2)  # never tries to log in with ***
    assert "masked" in shown["printed, no URL"] and shown["printed, no URL"].count("\n") == 1
    cli("enqueue", "enqueue", "--study-name", "leak", "--storage", secret_url, "--params", '{"lr": 0.01}')
    assert "--storage postgresql://" in shown["enqueue"] and "***" in shown["enqueue"]

    cli("storage of the config unreachable", "run", "tiny.yaml", "--set", f"storage={unreachable(secret_url)}", code=2)

    monkeypatch.setenv("HPSTUDY_STORAGE", secret_url)
    cli("printed, URL from the environment", "run", "printed.yaml", "--no-report")
    cli("resume --print-config", "resume", "--study-name", "leak", "--print-config")
    cli("resume", "resume", "--study-name", "leak", "--n-trials", "2", "--no-report")
    cli("worker", "worker", "--study-name", "leak", "--n-trials", "3")
    for command in (["list"], ["best"], ["best", "--json"], ["export"], ["export", "-o", "trials.csv"],
                    ["export", "-o", "trials.json"], ["report", "-o", "report.html"], ["check"]):
        cli(" ".join(command), *command)
    assert "***" in (tmp_path / "report.html").read_text()

    wrong = unreachable(secret_url)
    for label, url in [("bad study name", secret_url), ("unreachable port", wrong),
                       ("password in the query", wrong.replace(f":{PASSWORD}@", "@") + f"&password={PASSWORD}"),
                       ("unescaped @", secret_url.replace("Planted", "Planted@")),
                       ("not a URL", secret_url.replace("://", "//")),
                       ("unknown driver", secret_url.replace("postgresql://", "postgresql+pgfoo://"))]:
        cli(label, "best", "--study-name", "nope", "--storage", url, code=2)
        assert shown[label].count("\n") == 1, (label, shown[label])

    stored = stored_text(secret_url)
    assert "leak" in stored and leaks(stored) == []
    cli("delete", "delete", "--study-name", "leak", "--yes")
    assert {label: leaks(text) for label, text in shown.items() if leaks(text)} == {}
    assert leaks(written_text(tmp_path, Path(os.environ["XDG_STATE_HOME"]))) == []
