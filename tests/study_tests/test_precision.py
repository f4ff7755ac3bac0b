"""The GPU-minded code paths, exercised on the CPU: mixed precision, channels-last CNNs, compile."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpstudy.study import trial_attrs
from hpstudy.study.runner import run_study
from hpstudy.study.training import Precision


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_stores_finite_curves(quick_config, amp):
    cfg = quick_config(study__n_trials=1, train__amp=amp, study__pruner={"name": "none"},
                       search_space={"lr": 1e-2, "epochs": 3, "n_layers": 1, "hidden_units": 64})
    run_study(cfg)
    (trial,) = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
    assert trial.state == TrialState.COMPLETE
    losses = trial.user_attrs[trial_attrs.CURVE]["train_loss"]
    assert all(loss is not None for loss in losses) and losses[-1] < losses[0]


def test_float16_uses_a_gradient_scaler_and_bfloat16_does_not():
    assert Precision.make("fp16", torch.device("cpu")).scaler is not None
    assert Precision.make("bf16", torch.device("cpu")).scaler is None
    assert Precision.make("off", torch.device("cpu")).dtype is None


def test_channels_last_cnn_matches_the_usual_layout(quick_config, tmp_path):
    space = {"lr": 1e-2, "epochs": 2, "channels": 4, "n_conv": 2, "n_layers": 1, "hidden_units": 16}
    values = []
    for layout in ("off", "on"):
        cfg = quick_config(study__n_trials=1, model__kind="cnn", train__channels_last=layout, search_space=space,
                           storage=f"sqlite:///{tmp_path / layout}.db", study__pruner={"name": "none"})
        run_study(cfg)
        values.append(optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()[0].value)
    assert values[0] == pytest.approx(values[1], rel=1e-3)


@pytest.mark.slow
def test_compiled_model_trains(quick_config):
    cfg = quick_config(study__n_trials=1, train__compile=True, study__pruner={"name": "none"},
                       search_space={"lr": 1e-2, "epochs": 2, "n_layers": 1, "hidden_units": 32, "batch_size": 128})
    run_study(cfg)
    (trial,) = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
    assert trial.state == TrialState.COMPLETE and trial.value < 2.3
