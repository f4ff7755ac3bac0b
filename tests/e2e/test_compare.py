"""`hpstudy compare`: several samplers and seeds on one space, then one comparison report."""

from __future__ import annotations

import optuna
import pytest

from hpstudy.storage.engine import open_storage
from hpstudy.storage.stored_config import stored_config
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study.cli import main
from hpstudy.study.compare import plan_comparison
from hpstudy.study.runner import create_if_missing

pytestmark = pytest.mark.slow


def test_compare_runs_each_sampler_and_seed_then_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--quick", "--repeats", "2", "--samplers", "random,tpe"]) == 0
    out = capsys.readouterr().out
    names = sorted(optuna.get_all_study_names(f"sqlite:///{tmp_path / 'hpstudy.db'}"))
    assert names == [f"search-strategies-{s}-s{seed}-quick" for s in ("random", "tpe") for seed in (0, 1)]
    for name in names:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'hpstudy.db'}")
        cfg = stored_config(study)
        assert len(study.trials) == cfg.study.n_trials == 6
        assert cfg.study.sampler.name in name and f"-s{cfg.study.seed}" in name
    report = tmp_path / "hpstudy-report-compare-search-strategies.html"
    assert report.exists() and f"Report: {report.name}" in out
    for name in names:
        assert name in report.read_text()


def test_compare_refuses_an_unknown_sampler(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--samplers", "grid,bayes"]) == 2
    assert "unknown sampler 'bayes'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_comparison_that_clashes_with_a_stored_study_runs_none_of_its_studies(tmp_path, monkeypatch, capsys):
    """Its third study exists with another config: found before the first two run, in words that
    fit compare (which has no --study-name)."""
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'hpstudy.db'}"
    (earlier,) = plan_comparison("search-strategies", samplers=["tpe"], repeats=1, storage="sqlite:///hpstudy.db",
                                 quick=True, overrides=["search_space.epochs=3"])
    create_if_missing(open_storage(parse_storage_url(earlier.cfg.storage), mode="create"), earlier.cfg)
    assert main(["compare", "--quick", "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert "study 'search-strategies-tpe-s0-quick' of this comparison exists with a different config" in err
    assert "--study-name NAME" not in err and err.count("\n") == 1
    assert optuna.get_all_study_names(storage) == ["search-strategies-tpe-s0-quick"]  # grid and random never ran
    assert not list(tmp_path.glob("*.html"))
