"""Real sweep and strategy studies, trained once per test session and shared by the report tests."""

from __future__ import annotations

import pytest

from tests.reports_tests.sweep_studies import add_strategy_studies, add_sweeps


@pytest.fixture(scope="session")
def sweep_url(tmp_path_factory) -> str:
    """A storage holding every study of ``sweep_studies.SWEEPS``."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sweeps') / 'sweeps.db'}"
    add_sweeps(url)
    return url


@pytest.fixture(scope="session")
def strategy_url(tmp_path_factory) -> tuple[str, list[str]]:
    """A storage holding grid, random and TPE studies of one space, two of each; and their names."""
    url = f"sqlite:///{tmp_path_factory.mktemp('strategies') / 'strategies.db'}"
    return url, add_strategy_studies(url)
