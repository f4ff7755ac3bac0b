"""CPU threads per trial: measured by timing real steps at each count, fixed by ``train.threads``."""

from __future__ import annotations

import time

import optuna
import pytest
import torch
from torch import nn

from hpstudy.study import trial_attrs
from hpstudy.study.errors import UserError
from hpstudy.study.runner import run_study
from hpstudy.study.threads import ThreadTuner, fastest_threads, training_step_probe


@pytest.fixture(autouse=True)
def _threads_back():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def sleeps_by_threads(seconds: dict[int, float]):
    """A step that takes ``seconds[threads]`` at the thread count it runs with."""
    return lambda: time.sleep(seconds[torch.get_num_threads()])


def test_the_fewest_threads_within_the_margin_win():
    torch.set_num_threads(2)
    slower_with_two = fastest_threads(sleeps_by_threads({1: 0.01, 2: 0.04}), (1, 2))
    assert slower_with_two.threads == 1 and slower_with_two.seconds[2] > slower_with_two.seconds[1]
    nearly_equal = fastest_threads(sleeps_by_threads({1: 0.030, 2: 0.028}), (1, 2))
    assert nearly_equal.threads == 1, "a thread that buys under 15 % is not worth its risk on a busy machine"
    much_faster_with_two = fastest_threads(sleeps_by_threads({1: 0.04, 2: 0.01}), (1, 2))
    assert much_faster_with_two.threads == 2
    assert torch.get_num_threads() == 2, "probing leaves the thread count as it found it"
    assert much_faster_with_two.describe().startswith("2 threads (1: 4")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_auto_probes_again_only_when_its_choice_is_old():
    clock, probes = Clock(), []

    def probe():
        probes.append(clock.now)
        return sleeps_by_threads({1: 0.001, 2: 0.004})

    tuner = ThreadTuner(setting=None, available=2, recheck_seconds=60, clock=clock)
    assert tuner.apply(probe) == 1 and torch.get_num_threads() == 1
    clock.now = 59
    assert tuner.apply(probe) == 1 and probes == [0]
    clock.now = 60
    tuner.apply(probe)
    assert probes == [0, 60]
    assert tuner.apply(None) == 1, "a trial that cannot be probed keeps the last choice"


def test_a_fixed_count_or_one_core_is_used_without_probing():
    def never():
        raise AssertionError("probed")

    assert ThreadTuner(setting=3, available=2).apply(never) == 3 and torch.get_num_threads() == 3
    assert ThreadTuner(setting=None, available=1).apply(never) == 1 and torch.get_num_threads() == 1
    assert ThreadTuner(setting=None, available=2).apply(None) == 2, "nothing measured: every available thread"


def test_the_probe_trains_a_copy_and_leaves_model_optimizer_and_random_stream_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    rng = torch.get_rng_state()
    tuner = ThreadTuner(setting=None, available=2)
    tuner.apply(lambda: training_step_probe(model, lambda m: torch.optim.Adam(m.parameters()), x, y, batch_size=16))
    assert tuner.choice is not None and set(tuner.choice.seconds) == {1, 2}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "weights and BN statistics"
    assert torch.equal(torch.get_rng_state(), rng), "dropout in the probe used a forked random stream"


def test_every_trial_records_the_threads_it_trained_with(quick_config):
    fixed = quick_config(**{"train.threads": 1, "study.n_trials": 2})
    run_study(fixed)
    trials = optuna.load_study(study_name="quick", storage=fixed.storage).trials
    assert [t.user_attrs[trial_attrs.THREADS] for t in trials] == [1, 1]
    auto = quick_config(**{"study.name": "auto", "study.n_trials": 2})
    assert auto.train.threads == "auto"
    run_study(auto)
    trials = optuna.load_study(study_name="auto", storage=auto.storage).trials
    assert all(1 <= t.user_attrs[trial_attrs.THREADS] <= torch.get_num_threads() for t in trials)


@pytest.mark.parametrize("value", [0, -1, "many", 1.5, 100_000])
def test_a_thread_count_that_is_not_auto_or_a_sane_number_is_refused(quick_config, value):
    with pytest.raises(UserError, match=r"train\.threads"):
        quick_config(**{"train.threads": value})
