"""Names of the user attrs hpstudy writes on each trial: the contract between objective and reports.

Kept free of torch so that reports and exports can read studies without the training stack.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

CURVE = "curve"  # dict of per-epoch lists: train_loss, train_accuracy, val_loss, val_accuracy, lr, epoch_seconds
HYPERPARAMS = "hyperparams"  # every knob of the trial, searched or not
EPOCHS_RUN = "epochs_run"
EPOCHS_REQUESTED = "epochs_requested"
BEST_EPOCH = "best_epoch"
VAL_ACCURACY = "val_accuracy"  # validation accuracy at the best epoch
END_REASON = "end_reason"  # completed, early stopped, pruned, diverged, stopped by ...
TRIAL_SEED = "trial_seed"
DEVICE = "device"
THREADS = "threads"  # CPU threads the trial trained with (train.threads, measured when auto)
WORKER = "worker"  # {host, pid, started}: the process running the trial, to recognise a dead one
RESUMED_FROM = "resumed_from"  # {trial, epoch}: the checkpoint a retried trial continued from
TIMING = "timing"  # seconds per phase of the trial: train, validate, sample, setup, report_prune, checkpoint, record, total


def lineage(trial: FrozenTrial) -> int:
    """The number of the first attempt of ``trial``: itself, or the original trial a retry repeats
    (Optuna's retry system attrs). All attempts of one lineage share one checkpoint."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        original = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return trial.number if original is None else original
