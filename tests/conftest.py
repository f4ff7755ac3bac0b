"""Shared fixtures: small real configs, real SQLite files, and a helper to run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hpstudy.study.config import StudyConfig, load_config

@pytest.fixture(scope="session", autouse=True)
def _private_state_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Checkpoints of studies on a database server go to ``$XDG_STATE_HOME``: a folder of the test
    session's own, for its processes too, never the user's."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))


#: A space small enough that a trial takes a fraction of a second on digits.
QUICK_SPACE: dict[str, Any] = {
    "lr": {"low": 1e-3, "high": 1e-1, "log": True},
    "batch_size": [64, 128],
    "epochs": {"low": 2, "high": 4},
    "n_layers": 1,
    "hidden_units": {"low": 16, "high": 64},
    "dropout": {"low": 0.0, "high": 0.3},
}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite URL for a file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def quick_config(sqlite_url: str) -> Callable[..., StudyConfig]:
    """Build a small, fast config on digits; keyword ``overrides`` are dotted keys."""

    def build(**overrides: Any) -> StudyConfig:
        values: dict[str, Any] = {
            "storage": sqlite_url,
            "study.name": "quick",
            "study.n_trials": 3,
            "study.pruner": {"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 1}},
            "data.train_subset": 400,
            "data.val_subset": 200,
            "train.device": "cpu",
            "search_space": dict(QUICK_SPACE),
        }
        values.update({key.replace("__", "."): value for key, value in overrides.items()})
        return load_config(preset="default", values=values)

    return build


def run_cli(*args: str, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``hpstudy ARGS`` as a real process in ``cwd`` and capture its output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "hpstudy.study.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards. Skips when no server answers,
    except under CI, where a missing server is a failure."""
    import uuid

    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at 127.0.0.1:5432 does not answer ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run must start it")
        pytest.skip(reason)
    name = f"hpstudy_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
