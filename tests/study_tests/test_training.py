"""The training loop with real steps on real data: loss falls, early stopping, LR schedule, divergence."""

from __future__ import annotations

import math

import pytest
import torch

from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.study.config import load_config
from hpstudy.study.data import load_splits
from hpstudy.study.models import build_model
from hpstudy.study.optimizers import build_optimizer
from hpstudy.study.training import EarlyStopping, TrainingParts, fit, train_epoch
from tests.helpers.datasets import write_mnist_like


@pytest.fixture(scope="module")
def digits():
    return load_splits(load_config().data, seed=0)


def run(splits, *, kind="mlp", epochs=5, seed=0, scheduler=None, early_stopping=None, **values):
    hp = Hyperparams.from_flat({"epochs": epochs, **values})
    torch.manual_seed(seed)
    model = build_model(hp, kind=kind, input_shape=splits.input_shape, n_classes=splits.n_classes)
    optimizer = build_optimizer(model, hp)
    sched = scheduler(optimizer) if scheduler else None
    parts = TrainingParts(torch.Generator().manual_seed(seed), sched, early_stopping)
    return list(fit(model, optimizer, (splits.x_train, splits.y_train, splits.x_val, splits.y_val),
                    epochs=hp.epochs, batch_size=hp.batch_size, parts=parts))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_loss_goes_down_on_digits(digits, kind):
    results = run(digits, kind=kind, epochs=4, lr=3e-3, channels=8, n_conv=1, n_layers=1, hidden_units=64)
    assert [r.epoch for r in results] == [1, 2, 3, 4]
    assert results[-1].train_loss < 0.5 * results[0].train_loss
    assert results[-1].val_loss < results[0].val_loss
    assert results[-1].val_accuracy > 0.85
    assert all(r.train_seconds > 0 and r.val_seconds > 0 for r in results)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_loss_goes_down_on_mnist_format_files(tmp_path, kind):
    write_mnist_like(tmp_path, n_train=300)
    cfg = load_config(values={"data.dataset": "mnist", "data.root": str(tmp_path), "data.download": False})
    splits = load_splits(cfg.data, seed=0)
    results = run(splits, kind=kind, epochs=3, lr=3e-3, channels=4, n_conv=2, n_layers=1, hidden_units=32, batch_size=32)
    assert results[-1].train_loss < results[0].train_loss


def test_same_seed_same_losses(digits):
    a = run(digits, epochs=2, dropout=0.3, seed=5)
    b = run(digits, epochs=2, dropout=0.3, seed=5)
    c = run(digits, epochs=2, dropout=0.3, seed=6)
    assert [r.val_loss for r in a] == [r.val_loss for r in b]
    assert [r.val_loss for r in a] != [r.val_loss for r in c]


def test_divergence_stops_after_the_non_finite_epoch(digits):
    results = run(digits, epochs=10, optimizer="sgd", lr=1e4, momentum=0.9)
    assert not results[-1].finite
    assert len(results) < 10
    assert all(r.finite for r in results[:-1])


def test_early_stopping_ends_training_when_val_loss_stalls(digits):
    stopper = EarlyStopping(patience=2, min_delta=10.0)  # nothing improves by 10: stop after 1 + 2 epochs
    results = run(digits, epochs=20, early_stopping=stopper)
    assert len(results) == 3


def test_early_stopping_counts_patience():
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    assert [stopper.should_stop(v) for v in (1.0, 0.95, 0.5, 0.45, 0.44)] == [False, False, False, False, True]


def test_plateau_scheduler_lowers_the_lr(digits):
    results = run(digits, epochs=6, lr=1e-6, scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=0.5, patience=0, threshold=0.5))
    lrs = [r.lr for r in results]
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] < lrs[0]


def test_single_sample_last_batch_is_skipped_with_batch_norm():
    hp = Hyperparams.from_flat({"batch_norm": True, "n_layers": 1, "hidden_units": 8})
    model = build_model(hp, kind="mlp", input_shape=(1, 2, 2), n_classes=3)
    x, y = torch.randn(9, 1, 2, 2), torch.randint(0, 3, (9,))
    loss, accuracy = train_epoch(model, build_optimizer(model, hp), x, y, batch_size=4, generator=torch.Generator())
    assert math.isfinite(loss) and 0 <= accuracy <= 1


