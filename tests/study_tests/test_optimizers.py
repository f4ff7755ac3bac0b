"""Optimizers: each is built with its settings, and the direct kernel step updates exactly as
PyTorch's own fused optimizer does, through lr changes, state_dict round trips and fallbacks."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch
from torch import nn

from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.study.optimizers import LeanAdam, LeanAdamW, LeanRMSprop, LeanSGD, build_optimizer

TORCH_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                 "rmsprop": torch.optim.RMSprop}


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_each_optimizer_is_built_with_its_settings(optimizer):
    hp = Hyperparams.from_flat({"optimizer": optimizer, "lr": 0.02, "weight_decay": 0.001, "momentum": 0.8})
    opt = build_optimizer(nn.Linear(2, 2), hp)
    group = opt.param_groups[0]
    assert isinstance(opt, TORCH_CLASSES[optimizer])
    assert group["lr"] == 0.02 and group["weight_decay"] == 0.001
    if optimizer in ("sgd", "rmsprop"):
        assert group["momentum"] == 0.8
    if optimizer != "rmsprop":
        assert group["fused"] is True


def twin_models(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    twin = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    twin.load_state_dict(model.state_dict())
    return model, twin


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, *, seed: int) -> None:
    data = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(8, 6, generator=data), torch.randint(0, 3, (8,), generator=data)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


LEAN_AND_TORCH = [
    (LeanAdam, torch.optim.Adam, {"weight_decay": 0.01}),
    (LeanAdamW, torch.optim.AdamW, {"weight_decay": 0.05}),
    (LeanSGD, torch.optim.SGD, {"momentum": 0.9, "weight_decay": 1e-3}),
    (LeanSGD, torch.optim.SGD, {"momentum": 0.0}),
    (LeanSGD, torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    (LeanRMSprop, torch.optim.RMSprop, {"momentum": 0.5, "weight_decay": 1e-3}),
    (LeanRMSprop, torch.optim.RMSprop, {"centered": True}),
]


FUSED = [case for case in LEAN_AND_TORCH if case[0] is not LeanRMSprop]  # the ones with a direct kernel step


def implementation(torch_class: type) -> dict[str, bool]:
    """The implementation option each class is used with: fused kernels, foreach for RMSprop."""
    return {"foreach": True} if torch_class is torch.optim.RMSprop else {"fused": True}


@pytest.mark.parametrize(("lean_class", "torch_class", "options"), LEAN_AND_TORCH)
def test_direct_step_is_bit_identical_to_pytorch_through_lr_changes_and_a_state_round_trip(lean_class, torch_class, options):
    model, twin = twin_models()
    lean = lean_class(model.parameters(), lr=0.05, **implementation(torch_class), **options)
    reference = torch_class(twin.parameters(), lr=0.05, **implementation(torch_class), **options)
    train_steps(model, lean, 5, seed=1)
    train_steps(twin, reference, 5, seed=1)
    for group in (*lean.param_groups, *reference.param_groups):
        group["lr"] = 0.01  # what ReduceLROnPlateau does
    train_steps(model, lean, 5, seed=2)
    train_steps(twin, reference, 5, seed=2)
    # a resumed trial: a fresh optimizer loads the saved state and goes on
    resumed = lean_class(model.parameters(), lr=0.05, **implementation(torch_class), **options)
    resumed.load_state_dict(lean.state_dict())
    train_steps(model, resumed, 5, seed=3)
    train_steps(twin, reference, 5, seed=3)
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        assert torch.equal(mine, theirs)
    assert lean.state_dict()["param_groups"] == reference.state_dict()["param_groups"]
    for name in ("step", "exp_avg", "exp_avg_sq", "momentum_buffer", "square_avg", "grad_avg"):
        for mine, theirs in zip(resumed.state.values(), reference.state.values()):
            if name in theirs:
                assert torch.equal(mine[name], theirs[name]), name


def test_direct_step_runs_the_step_hooks_and_falls_back_for_a_closure():
    model, twin = twin_models()
    lean = LeanAdam(model.parameters(), lr=0.01, fused=True)
    reference = torch.optim.Adam(twin.parameters(), lr=0.01, fused=True)
    calls = []
    lean.register_step_post_hook(lambda optimizer, args, kwargs: calls.append(optimizer))
    train_steps(model, lean, 3, seed=4)
    train_steps(twin, reference, 3, seed=4)
    assert calls == [lean] * 3

    def closure(network, optimizer):
        def run():
            optimizer.zero_grad()
            loss = network(torch.ones(2, 6)).sum()
            loss.backward()
            return loss
        return run

    assert torch.equal(lean.step(closure(model, lean)), reference.step(closure(twin, reference)))
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        assert torch.equal(mine, theirs)


@pytest.mark.parametrize(("lean_class", "torch_class"), [(LeanAdam, torch.optim.Adam), (LeanRMSprop, torch.optim.RMSprop)])
def test_step_hooks_run_even_before_pytorch_has_wrapped_its_own_step(lean_class, torch_class, monkeypatch):
    """PyTorch wraps a class's step in its hook runner only when it makes an optimizer of that
    class: a lean optimizer's hooks must run in a process that never made one."""
    pristine = torch_class.step.__wrapped__ if getattr(torch_class.step, "hooked", False) else torch_class.step
    monkeypatch.setattr(torch_class, "step", pristine)
    model, _ = twin_models()
    optimizer = lean_class(model.parameters(), lr=0.01, **implementation(torch_class))
    calls = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    train_steps(model, optimizer, 2, seed=7)
    assert calls == ["pre", "post"] * 2


def test_optimizer_methods_hpstudy_calls_are_pytorch_own_code_unwrapped():
    """zero_grad, add_param_group, state_dict and load_state_dict are PyTorch's functions, without
    the torch.compile guard whose first call imports torch._dynamo."""
    for name in ("zero_grad", "add_param_group", "state_dict", "load_state_dict"):
        for lean_class in (LeanAdam, LeanAdamW, LeanSGD, LeanRMSprop):
            assert getattr(lean_class, name) is inspect.unwrap(getattr(torch.optim.Optimizer, name)), (lean_class, name)


def test_a_whole_study_never_imports_torch_dynamo(tmp_path):
    """Importing torch._dynamo costs a second or more per process; nothing a study does needs it:
    each optimizer, a plateau schedule, early stopping, checkpoints, a resumed trial, a pack."""
    script = f"""
import sys
from hpstudy.study.config import load_config
from hpstudy.study.runner import run_study
for pack in (1, 3):
    cfg = load_config(preset="default", values={{
        "storage": "sqlite:///{tmp_path / 'study.db'}", "study.name": f"pack-{{pack}}", "study.n_trials": 4,
        "data.train_subset": 300, "data.val_subset": 100, "train.device": "cpu", "train.pack": pack,
        "train.checkpoint_every": 1, "train.scheduler": {{"name": "plateau", "patience": 0}},
        "train.early_stopping": {{"patience": 2}}, "study.sampler": {{"name": "grid"}},
        "search_space": {{"optimizer": ["sgd", "adam", "adamw", "rmsprop"], "momentum": 0.5, "epochs": 3,
                          "n_layers": 1, "hidden_units": 16, "dropout": 0.1}},
    }})
    run_study(cfg)
print("dynamo imported:", "torch._dynamo" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "dynamo imported: False" in result.stdout


def test_direct_step_leaves_float16_loss_scaling_to_pytorch():
    """With a GradScaler the step must skip on overflow and unscale: PyTorch's own step does."""
    model, twin = twin_models()
    results = []
    for network, optimizer in ((model, LeanAdam(model.parameters(), lr=0.01, fused=True)),
                               (twin, torch.optim.Adam(twin.parameters(), lr=0.01, fused=True))):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20)
        for step in range(4):
            optimizer.zero_grad()
            loss = network(torch.full((2, 6), 1e30 if step == 1 else 1.0)).sum()  # step 1 overflows
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        results.append([p.detach().clone() for p in network.parameters()])
    for mine, theirs in zip(*results):
        assert torch.equal(mine, theirs)
        assert torch.isfinite(mine).all()


@pytest.mark.parametrize(("lean_class", "torch_class", "options"), FUSED)
def test_after_the_first_step_pytorch_step_is_not_called(lean_class, torch_class, options, monkeypatch):
    """The direct path is the point: once the state exists, no step goes through PyTorch's."""
    model, _ = twin_models()
    optimizer = lean_class(model.parameters(), lr=0.05, fused=True, **options)
    train_steps(model, optimizer, 1, seed=5)  # PyTorch's own step makes the state
    before = [p.detach().clone() for p in model.parameters()]
    calls = []
    monkeypatch.setattr(torch.optim.Adam if torch_class is torch.optim.AdamW else torch_class, "step",
                        lambda self, closure=None: calls.append(self))
    train_steps(model, optimizer, 3, seed=6)
    assert calls == []
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "the direct steps updated"
