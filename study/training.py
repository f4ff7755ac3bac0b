"""The training loop: build an optimizer, train one epoch, evaluate, repeat. Plain PyTorch.

Nothing here knows of Optuna. ``fit`` is a generator that yields one ``EpochResult`` per epoch,
so the caller decides after each epoch whether to go on (report, prune, checkpoint, stop).
Losses and accuracies are summed on the device and read back once per epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hpstudy.study.optimizers import LeanAdam


@dataclass(frozen=True)
class EpochResult:
    """What one epoch measured. ``epoch`` counts from 1."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    train_seconds: float
    val_seconds: float

    @property
    def seconds(self) -> float:
        """Wall time of the epoch: training plus validation."""
        return self.train_seconds + self.val_seconds

    @property
    def finite(self) -> bool:
        """False when training diverged: a NaN or infinite loss."""
        return math.isfinite(self.train_loss) and math.isfinite(self.val_loss)


@dataclass
class EarlyStopping:
    """Stop when validation loss has not improved by more than ``min_delta`` for ``patience`` epochs."""

    patience: int
    min_delta: float = 0.0
    best: float = math.inf
    bad_epochs: int = field(default=0)

    def should_stop(self, val_loss: float) -> bool:
        """Record this epoch's validation loss; True when patience has run out."""
        if val_loss < self.best - self.min_delta:
            self.best = val_loss
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


Scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """Mixed precision: forward passes autocast to ``dtype`` (None: full float32); float16 also
    scales the loss so small gradients survive (``scaler``)."""

    device_type: str
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def make(cls, amp: str, device: torch.device) -> Precision:
        """The precision ``train.amp`` names ("off", "bf16", "fp16") on ``device``."""
        dtype = AMP_DTYPES[amp]
        scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
        return cls(device_type=device.type, dtype=dtype, scaler=scaler)

    def autocast(self) -> torch.autocast:
        """The autocast context for a forward pass."""
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward()`` and ``optimizer.step()``, through the scaler for float16."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


FULL_PRECISION = Precision(device_type="cpu")


@dataclass
class TrainingParts:
    """What training needs beside the model and its optimizer: the batch-order generator, an
    optional LR schedule and early stopping, and the precision."""

    generator: torch.Generator
    scheduler: Scheduler | None = None
    early_stopping: EarlyStopping | None = None
    precision: Precision = FULL_PRECISION


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer, parts: TrainingParts) -> dict[str, Any]:
    """Everything needed to go on training exactly from here: weights, optimizer, schedule,
    early-stopping counters, loss scale and every random state (references, not copies)."""
    state: dict[str, Any] = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": parts.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    if parts.scheduler is not None:
        state["scheduler"] = parts.scheduler.state_dict()
    if parts.early_stopping is not None:
        state["early_stopping"] = asdict(parts.early_stopping)
    if parts.precision.scaler is not None:
        state["scaler"] = parts.precision.scaler.state_dict()
    return state


def restore_training_state(
    state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, parts: TrainingParts
) -> None:
    """Put the state captured by ``training_state`` back into freshly built objects."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    parts.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if parts.scheduler is not None and "scheduler" in state:
        parts.scheduler.load_state_dict(state["scheduler"])
    if parts.early_stopping is not None and "early_stopping" in state:
        for key, value in state["early_stopping"].items():
            setattr(parts.early_stopping, key, value)
    if parts.precision.scaler is not None and "scaler" in state:
        parts.precision.scaler.load_state_dict(state["scaler"])


def warm_up() -> None:
    """Take one optimizer step on a toy layer, so what PyTorch sets up on the first step (its fused
    kernels, autograd's engine) counts as the process start, not as the first trial's time."""
    layer = nn.Linear(1, 1)
    optimizer = LeanAdam(layer.parameters(), fused=True)
    layer(torch.ones(1, 1)).sum().backward()
    optimizer.step()


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    precision: Precision = FULL_PRECISION,
) -> tuple[float, float]:
    """One pass over ``(x, y)`` in a shuffled order; returns (mean loss, accuracy).

    Accuracy is measured on the training batches as they are seen (dropout on). A last batch of a
    single sample is skipped: batch norm cannot train on one sample.
    """
    model.train()
    n = len(x)
    order = torch.randperm(n, device=x.device, generator=generator)
    losses, predictions, sizes = [], [], []  # per batch, combined once at the end of the epoch
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        if len(index) < 2:
            break
        inputs, targets = x.index_select(0, index), y.index_select(0, index)
        with precision.autocast():
            logits = model(inputs)
            loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        precision.backward_and_step(loss, optimizer)
        losses.append(loss.detach())
        predictions.append(logits.detach().argmax(dim=1))
        sizes.append(len(index))
    if not sizes:
        return math.nan, math.nan  # fewer than two samples: nothing to train on
    seen = sum(sizes)
    loss_sum = torch.stack(losses).float() @ torch.tensor(sizes, dtype=torch.float32).to(x.device, non_blocking=True)
    correct = (torch.cat(predictions) == y.index_select(0, order[:seen])).sum()
    mean_loss, accuracy = (torch.stack([loss_sum, correct.to(loss_sum.dtype)]) / seen).tolist()
    return mean_loss, accuracy


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    precision: Precision = FULL_PRECISION,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)`` in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), batch_size):
        inputs, targets = x[start : start + batch_size], y[start : start + batch_size]
        with precision.autocast():
            logits = model(inputs)
        loss_sum += F.cross_entropy(logits.float(), targets, reduction="sum")
        correct += (logits.argmax(dim=1) == targets).sum()
    mean_loss, accuracy = (torch.stack([loss_sum, correct.to(loss_sum.dtype)]) / len(x)).tolist()
    return mean_loss, accuracy


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    parts: TrainingParts,
    eval_batch_size: int = 4096,
    start_epoch: int = 1,
) -> Iterator[EpochResult]:
    """Train for epochs ``start_epoch .. epochs`` on ``data = (x_train, y_train, x_val, y_val)``.

    Yields an EpochResult after each epoch. Stops by itself after a non-finite loss (that epoch is
    yielded first) or when ``parts.early_stopping`` says so; the caller may stop at any time.
    """
    x_train, y_train, x_val, y_val = data
    generator, scheduler, early_stopping, precision = parts.generator, parts.scheduler, parts.early_stopping, parts.precision
    for epoch in range(start_epoch, epochs + 1):
        started = time.perf_counter()
        train_loss, train_accuracy = train_epoch(
            model, optimizer, x_train, y_train, batch_size=batch_size, generator=generator, precision=precision
        )
        trained = time.perf_counter()
        val_loss, val_accuracy = evaluate(model, x_val, y_val, batch_size=eval_batch_size, precision=precision)
        result = EpochResult(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=train_accuracy,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            lr=optimizer.param_groups[0]["lr"],
            train_seconds=trained - started,
            val_seconds=time.perf_counter() - trained,
        )
        if not result.finite:
            yield result
            return
        if scheduler is not None:
            scheduler.step(val_loss)
        stop = early_stopping is not None and early_stopping.should_stop(val_loss)
        yield result  # the state seen here is the state after this epoch: a checkpoint resumes from it
        if stop:
            return
