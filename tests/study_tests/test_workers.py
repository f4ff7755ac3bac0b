"""Worker plans: device assignment round-robin, refused devices, bad counts."""

from __future__ import annotations

import pytest
import torch

from hpstudy.study.errors import UserError
from hpstudy.study.workers import WorkerPlan


def test_devices_are_assigned_round_robin():
    plan = WorkerPlan.make(5, ["cpu", "cpu"], "auto")
    assert plan.count == 5 and plan.devices == ("cpu",) * 5
    assert WorkerPlan.make(3, None, "cpu").devices == ("cpu", "cpu", "cpu")


def test_worker_count_must_be_positive():
    with pytest.raises(UserError, match="--workers must be at least 1"):
        WorkerPlan.make(0, None, "cpu")


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has two GPUs")
def test_a_gpu_that_is_not_there_is_refused():
    with pytest.raises(UserError, match="cuda:(0|1)"):
        WorkerPlan.make(2, ["cuda:0", "cuda:1"], "auto")
