"""Names of the user attrs hpstudy writes on each trial: the contract between objective and reports.

Kept free of torch so that reports and exports can read studies without the training stack.
"""

from __future__ import annotations

CURVE = "curve"  # dict of per-epoch lists: train_loss, train_accuracy, val_loss, val_accuracy, lr, epoch_seconds
HYPERPARAMS = "hyperparams"  # every knob of the trial, searched or not
EPOCHS_RUN = "epochs_run"
EPOCHS_REQUESTED = "epochs_requested"
BEST_EPOCH = "best_epoch"
VAL_ACCURACY = "val_accuracy"  # validation accuracy at the best epoch
END_REASON = "end_reason"  # completed, early stopped, pruned, diverged, stopped by ...
TRIAL_SEED = "trial_seed"
DEVICE = "device"
