"""Planning a comparison: every study on equal terms, every clash found before anything runs."""

from __future__ import annotations

import pytest

from hpstudy.storage.engine import open_storage
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study.compare import check_comparison, plan_comparison
from hpstudy.study.config import load_config
from hpstudy.study.errors import UserError
from hpstudy.study.runner import create_if_missing


def plan(tmp_path, **options):
    options = {"samplers": ["grid", "random", "tpe"], "repeats": 2, "quick": True, **options}
    return plan_comparison(options.pop("preset", "search-strategies"), storage=f"sqlite:///{tmp_path / 'c.db'}", **options)


def test_every_sampler_gets_the_grid_presets_trial_count(tmp_path):
    plans = plan(tmp_path, preset="lr-sweep", samplers=["grid", "random", "tpe"])
    grid_points = load_config(preset="lr-sweep", quick=True).grid_size()
    assert {p.cfg.study.n_trials for p in plans} == {grid_points}
    assert {p.cfg.study.sampler.name for p in plans} == {"grid", "random", "tpe"}


def test_a_trial_count_set_with_set_holds_for_grid_too(tmp_path):
    plans = plan(tmp_path, overrides=["study.n_trials=3"])
    assert [p.cfg.study.n_trials for p in plans] == [3] * 6


def test_n_trials_wins_over_the_preset(tmp_path):
    assert {p.cfg.study.n_trials for p in plan(tmp_path, n_trials=5)} == {5}
    assert {p.cfg.study.n_trials for p in plan(tmp_path, n_trials=3, overrides=["study.n_trials=3"])} == {3}
    with pytest.raises(UserError, match="--n-trials and --set both set study.n_trials"):  # issue 17: no silent win
        plan(tmp_path, n_trials=5, overrides=["study.n_trials=3"])


def test_seeds_and_names_are_the_comparisons_own(tmp_path):
    plans = plan(tmp_path, samplers=["random"], repeats=3)
    assert [(p.cfg.study.seed, p.cfg.study.name) for p in plans] == [
        (seed, f"search-strategies-random-s{seed}-quick") for seed in range(3)]


@pytest.mark.parametrize(("override", "message"), [
    ("study.seed=5", "--set study.seed: compare seeds the studies 0 .. R-1 itself; use --repeats R"),
    ("study.name=mine", "--set study.name: compare names each study"),
    ("study.sampler.name=cmaes", "--set study.sampler.name: compare gives each study its sampler; use --samplers"),
    ("study.sampler.options.n_startup_trials=2", "use --samplers"),
    ("storage=sqlite:///other.db", "--set storage: use --storage"),
])
def test_keys_the_comparison_sets_itself_are_refused_not_ignored(tmp_path, override, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        plan(tmp_path, overrides=[override])
    assert list(tmp_path.iterdir()) == []


def test_a_study_stored_with_another_config_is_found_before_any_runs(tmp_path):
    first = plan(tmp_path, samplers=["tpe"], repeats=1, overrides=["search_space.epochs=3"])
    create_if_missing(open_storage(parse_storage_url(first[0].cfg.storage), mode="create"), first[0].cfg)
    check_comparison(first)  # the same comparison again: goes on
    again = plan(tmp_path, overrides=["search_space.epochs=2"])
    with pytest.raises(UserError, match=r"study 'search-strategies-tpe-s0-quick' of this comparison exists with a "
                                        r"different config \(search_space\.epochs: stored 3, now 2\)"):
        check_comparison(again)
