"""How many CPU threads a trial trains with: measured, not PyTorch's default.

PyTorch starts one intra-op thread per core. A small model's matrix products are split over
them and every thread waits at each barrier for the others, so when another process takes a core
the descheduled thread stalls the whole step: on 2 cores beside two busy loops a 2x128 MLP trained
5x slower with 2 threads than with 1, and about 18x slower under heavier load, while on a quiet
machine the second thread bought under 2 %. A big model's products are long enough to pay for
the threads. So ``auto`` times a few real training steps, on a scratch copy of the trial's model,
at 1 thread and at every thread this process may use, interleaved, and keeps the fewest threads
within ``margin`` of the fastest; the choice is measured again when it is ``recheck_seconds`` old,
so a machine that gets busy (or quiet) is noticed at the next trial. Plain PyTorch; no Optuna.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

#: Models with more parameters than this are not copied to be probed: they train on every thread.
MAX_PROBED_PARAMETERS = 20_000_000


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and the median seconds per probe step measured for each candidate."""

    threads: int
    seconds: dict[int, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line, e.g. ``1 thread (1: 1.2 ms, 2: 3.4 ms per step)``."""
        measured = ", ".join(f"{n}: {s * 1e3:.2g} ms" for n, s in sorted(self.seconds.items()))
        unit = "thread" if self.threads == 1 else "threads"
        return f"{self.threads} {unit}" + (f" ({measured} per step)" if measured else "")


def fastest_threads(
    step: Callable[[], None], candidates: tuple[int, ...], *, rounds: int = 3, steps: int = 2, margin: float = 0.15
) -> ThreadChoice:
    """Time ``steps`` calls of ``step`` at each thread count of ``candidates``, in ``rounds``
    interleaved rounds after one warm-up call each; the fewest threads whose median time is within
    ``margin`` of the fastest median win (fewer threads suffer less when the machine gets busy)."""
    before = torch.get_num_threads()
    timings: dict[int, list[float]] = {n: [] for n in candidates}
    try:
        for n in candidates:
            torch.set_num_threads(n)
            step()
        for _ in range(rounds):
            for n in candidates:
                torch.set_num_threads(n)
                started = time.perf_counter()
                for _ in range(steps):
                    step()
                timings[n].append((time.perf_counter() - started) / steps)
    finally:
        torch.set_num_threads(before)
    medians = {n: statistics.median(t) for n, t in timings.items()}
    best = min(medians.values())
    threads = min(n for n, s in medians.items() if s <= best * (1 + margin))
    return ThreadChoice(threads, medians)


def training_step_probe(
    model: nn.Module, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], x: torch.Tensor, y: torch.Tensor,
    *, batch_size: int,
) -> Callable[[], None]:
    """One training step (forward, loss, backward, optimizer step) on a copy of ``model`` and of one
    batch: what a trial's steps cost, leaving the model, its optimizer and the data untouched."""
    scratch = copy.deepcopy(model)
    scratch.train()
    optimizer = make_optimizer(scratch)
    inputs, targets = x[:batch_size].clone(), y[:batch_size].clone()

    def step() -> None:
        loss = F.cross_entropy(scratch(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


class ThreadTuner:
    """Sets this process's intra-op thread count before each trial: ``setting`` threads when it is
    a number, else (``None``: auto) the probed choice among 1 and ``available``, kept for
    ``recheck_seconds``."""

    def __init__(self, *, setting: int | None, available: int, recheck_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.setting = setting
        self.available = max(1, available)
        self.recheck_seconds = recheck_seconds
        self.clock = clock
        self.choice: ThreadChoice | None = None
        self._chosen_at = -float("inf")

    def apply(self, probe: Callable[[], Callable[[], None]] | None) -> int:
        """Set the thread count for the next trial and return it. ``probe`` makes a training step
        to time (``training_step_probe``); None when this trial cannot be probed (then the last
        choice, or every available thread, stays)."""
        if self.setting is not None:
            threads = self.setting
        elif self.available == 1:
            threads = 1
        else:
            if probe is not None and self.clock() - self._chosen_at >= self.recheck_seconds:
                with torch.random.fork_rng(devices=[]):  # dropout in the probe leaves the trial's random stream alone
                    self.choice = fastest_threads(probe(), (1, self.available))
                self._chosen_at = self.clock()
            threads = self.choice.threads if self.choice is not None else self.available
        torch.set_num_threads(threads)
        return threads


def can_probe(model: nn.Module) -> bool:
    """True when ``model`` is small enough to copy for a probe."""
    return sum(p.numel() for p in model.parameters()) <= MAX_PROBED_PARAMETERS
