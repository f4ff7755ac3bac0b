"""Worker plans: device assignment round-robin, refused devices, bad counts; why workers stopped."""

from __future__ import annotations

import signal
import subprocess
import sys

import optuna
import pytest
import torch

from hpstudy.study.errors import UserError
from hpstudy.study.runner import run_study
from hpstudy.study.workers import WORKERS_FAILED, WorkerPlan, _why_workers_stopped, worker_failures


def test_devices_are_assigned_round_robin():
    plan = WorkerPlan.make(5, ["cpu", "cpu"], "auto")
    assert plan.count == 5 and plan.devices == ("cpu",) * 5
    assert WorkerPlan.make(3, None, "cpu").devices == ("cpu", "cpu", "cpu")


def test_workers_share_the_cpu_threads():
    """N workers on a machine share its threads: each gets its share, at least one."""
    assert WorkerPlan.make(2, None, "cpu", cpu_threads=2).threads == 1
    assert WorkerPlan.make(3, None, "cpu", cpu_threads=8).threads == 2
    assert WorkerPlan.make(4, None, "cpu", cpu_threads=2).threads == 1
    assert WorkerPlan.make(1, None, "cpu").threads == torch.get_num_threads()


def test_worker_count_must_be_positive():
    with pytest.raises(UserError, match="--workers must be at least 1"):
        WorkerPlan.make(0, None, "cpu")


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has two GPUs")
def test_a_gpu_that_is_not_there_is_refused():
    with pytest.raises(UserError, match="cuda:(0|1)"):
        WorkerPlan.make(2, ["cuda:0", "cuda:1"], "auto")


def _exited(code: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    process.wait()
    return process


def test_the_run_says_why_its_workers_stopped(quick_config):
    """Workers that all ended on their own stopped for the study's reason (its timeout when the
    target was not met), even when a Ctrl-C came after they had ended; workers that a forwarded
    signal stopped make the run interrupted or terminated; others failed."""
    cfg = quick_config(study__n_trials=2)
    run_study(cfg)
    study = optuna.load_study(study_name="quick", storage=cfg.storage)
    done = [_exited(0), _exited(0)]
    assert _why_workers_stopped(cfg, done, study, received=[]) == "target reached"
    assert _why_workers_stopped(cfg, done, study, received=[signal.SIGINT]) == "target reached"  # came too late
    more = cfg.with_overrides({"study.n_trials": 5, "study.timeout": 1})
    assert _why_workers_stopped(more, done, study, received=[]) == "timeout"
    stopped = [_exited(0), _exited(130)]
    assert _why_workers_stopped(more, stopped, study, received=[signal.SIGINT]) == "interrupted"
    assert _why_workers_stopped(more, stopped, study, received=[signal.SIGINT, signal.SIGTERM]) == "terminated"
    failed = [_exited(0), _exited(1)]  # on its own: the run failed, and says how (``worker_failures``)
    assert _why_workers_stopped(more, failed, study, received=[]) == WORKERS_FAILED
    assert worker_failures(failed) == (f"worker 2 (pid {failed[1].pid}) failed with exit code 1",)
