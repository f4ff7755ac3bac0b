"""The Optuna objective: sample params, build, train epoch by epoch, report, prune. It glues
``search_spaces`` (what to try) to ``training`` (how to train) and records what reports need."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch

from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.study.config import StudyConfig
from hpstudy.study.data import Splits
from hpstudy.study.models import build_model
from hpstudy.study import trial_attrs
from hpstudy.study.training import EarlyStopping, EpochResult, build_optimizer, fit

def trial_seed(study_seed: int, trial_number: int, repeat: int | None = None) -> int:
    """The torch seed of one trial: derived from the study seed and the trial number, or, when the
    space searches ``seed`` (repeats), from that repeat index so repeats share nothing else."""
    key = [study_seed, 1, repeat] if repeat is not None else [study_seed, 0, trial_number]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


@dataclass
class LearningCurve:
    """Per-epoch measurements of one trial, as plain lists (JSON-ready, NaN as None)."""

    train_loss: list[float | None] = field(default_factory=list)
    train_accuracy: list[float | None] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)
    lr: list[float | None] = field(default_factory=list)
    epoch_seconds: list[float | None] = field(default_factory=list)

    def append(self, result: EpochResult) -> None:
        """Add one epoch."""
        for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            getattr(self, name).append(_json_float(getattr(result, name)))
        self.epoch_seconds.append(round(result.seconds, 6))

    def to_dict(self) -> dict[str, list[float | None]]:
        """The stored form."""
        return dict(vars(self))


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class Objective:
    """Callable objective for ``study.optimize``: one call trains one trial."""

    def __init__(self, cfg: StudyConfig, splits: Splits, *, device: torch.device) -> None:
        self.cfg = cfg
        self.splits = splits.to(device)
        self.device = device
        self._maximize = cfg.study.direction == "maximize"

    def __call__(self, trial: optuna.Trial) -> float:
        hp = self.cfg.search_space.sample(trial, per_layer_units=self.cfg.model.per_layer_units)
        repeat = hp.seed if "seed" in self.cfg.search_space.searched else None
        seed = trial_seed(self.cfg.study.seed, trial.number, repeat)
        torch.manual_seed(seed)
        model = build_model(
            hp, kind=self.cfg.model.kind, input_shape=self.splits.input_shape, n_classes=self.splits.n_classes
        ).to(self.device)
        optimizer = build_optimizer(model, hp)
        curve = LearningCurve()
        best: EpochResult | None = None
        end_reason = "completed"
        try:
            for result in self._epochs(model, optimizer, hp, seed):
                curve.append(result)
                score = self._score(result)
                trial.report(score, result.epoch)
                if not result.finite:
                    end_reason = f"diverged at epoch {result.epoch} (loss {result.train_loss})"
                    raise optuna.TrialPruned(end_reason)
                if best is None or self._better(score, self._score(best)):
                    best = result
                if trial.should_prune():
                    end_reason = f"pruned at epoch {result.epoch}"
                    raise optuna.TrialPruned(end_reason)
        except optuna.TrialPruned:
            raise
        except BaseException as exc:
            end_reason = f"stopped by {type(exc).__name__} at epoch {len(curve.val_loss) + 1}"
            raise
        else:
            if len(curve.val_loss) < hp.epochs:
                end_reason = f"early stopped at epoch {len(curve.val_loss)}"
        finally:
            self._record(trial, hp, seed, curve, best, end_reason)
        assert best is not None, "fit yields at least one epoch"
        return self._score(best)

    def _epochs(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, hp: Hyperparams, seed: int
    ) -> Iterator[EpochResult]:
        train_cfg = self.cfg.train
        scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=train_cfg.scheduler.factor, patience=train_cfg.scheduler.patience
            )
            if train_cfg.scheduler.name == "plateau"
            else None
        )
        early_stopping = (
            EarlyStopping(train_cfg.early_stopping.patience, train_cfg.early_stopping.min_delta)
            if train_cfg.early_stopping.patience is not None
            else None
        )
        splits = self.splits
        return fit(
            model,
            optimizer,
            (splits.x_train, splits.y_train, splits.x_val, splits.y_val),
            epochs=hp.epochs,
            batch_size=hp.batch_size,
            generator=torch.Generator(device=self.device).manual_seed(seed),
            eval_batch_size=train_cfg.eval_batch_size,
            scheduler=scheduler,
            early_stopping=early_stopping,
        )

    def _score(self, result: EpochResult) -> float:
        return result.val_accuracy if self.cfg.study.metric == "val_accuracy" else result.val_loss

    def _better(self, a: float, b: float) -> bool:
        return a > b if self._maximize else a < b

    def _record(
        self,
        trial: optuna.Trial,
        hp: Hyperparams,
        seed: int,
        curve: LearningCurve,
        best: EpochResult | None,
        end_reason: str,
    ) -> None:
        attrs: dict[str, Any] = {
            trial_attrs.CURVE: curve.to_dict(),
            trial_attrs.HYPERPARAMS: hp.to_flat(),
            trial_attrs.TRIAL_SEED: seed,
            trial_attrs.DEVICE: str(self.device),
            trial_attrs.EPOCHS_REQUESTED: hp.epochs,
            trial_attrs.EPOCHS_RUN: len(curve.val_loss),
            trial_attrs.END_REASON: end_reason,
        }
        if best is not None:
            attrs[trial_attrs.BEST_EPOCH] = best.epoch
            attrs[trial_attrs.VAL_ACCURACY] = best.val_accuracy
        for key, value in attrs.items():
            trial.set_user_attr(key, value)

