"""Optimizers: the one ``hp.optimizer`` names, on PyTorch's fused kernels, stepped without overhead.

A training step of a small model is a few hundred microseconds of arithmetic, and PyTorch's
``Optimizer.step`` spends about as long again in Python before it reaches its fused kernel
(grouping tensors by device, the step-hook wrapper and its profiler record). The optimizers here
are PyTorch's own ``Adam``, ``AdamW`` and ``SGD`` with ``fused=True``: same state, same
``state_dict``, same kernel, bit for bit the same updates. Only their ``step`` goes straight to the
kernel once the state exists, and hands anything unusual (a closure, several param groups, a
missing gradient, a registered step hook, a gradient scaler's ``grad_scale``) back to PyTorch's own
``step``, hooks and all. (``step.hooked = True`` tells PyTorch not to wrap the direct step in its
hook wrapper: the fallback runs the hooks itself.)

PyTorch also wraps ``zero_grad``, ``add_param_group``, ``state_dict``, ``load_state_dict`` and
``step`` in ``torch.compile`` guards whose first call imports ``torch._dynamo``: a second or more per
process, paid by every ``hpstudy run``, though hpstudy never compiles an optimizer. The optimizers
here call those methods' own code (``inspect.unwrap``), and take their first step (the one that
makes the state) through PyTorch's own ``step`` code, unwrapped, when nothing needs the wrappers
(no hooks, no closure). RMSprop, which has no fused kernel, is ``LeanRMSprop``: PyTorch's RMSprop
stepped through its own unwrapped code.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.optim.optimizer as optim_module
from torch import nn

from hpstudy.search_spaces.hyperparams import Hyperparams


def _plain_step_possible(optimizer: torch.optim.Optimizer, closure: Any) -> bool:
    """Whether PyTorch's own step code can run without its wrappers: no closure and no step hooks
    (the wrappers run those), not differentiable (they set its grad mode), no gradient scaler."""
    if closure is not None or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
        return False
    if optimizer.defaults.get("differentiable") or _global_hooks_registered():
        return False
    return getattr(optimizer, "grad_scale", None) is None and getattr(optimizer, "found_inf", None) is None


def _direct_step_possible(optimizer: torch.optim.Optimizer, closure: Any) -> bool:
    """Whether the kernel can be called directly: where the plain step could run, fused, one
    param group, every gradient present, and none of the options the direct call leaves out
    (maximize, and for Adam amsgrad and capturable). (Each optimizer also needs the state its
    first step makes.)"""
    if not _plain_step_possible(optimizer, closure):
        return False
    if not optimizer.defaults.get("fused") or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    if any(group.get(option) for option in ("maximize", "differentiable", "amsgrad", "capturable")):
        return False
    return all(p.grad is not None for p in group["params"])


def _global_hooks_registered() -> bool:
    """Whether any step hook is registered for all optimizers."""
    return bool(getattr(optim_module, "_global_optimizer_pre_hooks", None)
                or getattr(optim_module, "_global_optimizer_post_hooks", None))


class _Unwrapped:
    """The ``Optimizer`` methods hpstudy calls, as their own code, without the ``torch.compile``
    guard around them (see the module docstring). Put first among the bases."""

    add_param_group = inspect.unwrap(torch.optim.Optimizer.add_param_group)
    zero_grad = inspect.unwrap(torch.optim.Optimizer.zero_grad)
    state_dict = inspect.unwrap(torch.optim.Optimizer.state_dict)
    load_state_dict = inspect.unwrap(torch.optim.Optimizer.load_state_dict)

    def _pytorch_step(self, closure: Any) -> Any:
        """PyTorch's own ``step`` of this optimizer: its unwrapped code when nothing needs the
        wrappers, else the whole of it, hooks included. (PyTorch puts its hook wrapper on a
        class's ``step`` when the first optimizer of that class is made, so a plain Adam's step
        may not have it yet.)"""
        pytorch_step = super().step  # type: ignore[misc]  # the PyTorch class after this one in the MRO
        if _plain_step_possible(self, closure):  # type: ignore[arg-type]
            return inspect.unwrap(pytorch_step)(self)
        if not getattr(pytorch_step, "hooked", False):
            return torch.optim.Optimizer.profile_hook_step(pytorch_step.__func__)(self, closure)
        return pytorch_step(closure)


class LeanAdam(_Unwrapped, torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` whose step calls ``torch._fused_adam_`` directly."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update of every parameter; PyTorch's own ``step`` where a direct call cannot do."""
        if not _direct_step_possible(self, closure):
            return self._pytorch_step(closure)
        group = self.param_groups[0]
        params = group["params"]
        states = [self.state.get(p) for p in params]
        if any(state is None or "step" not in state for state in states):
            return self._pytorch_step(closure)  # the first step makes the state
        steps = [state["step"] for state in states]
        torch._foreach_add_(steps, 1)
        decoupled = group.get("decoupled_weight_decay", isinstance(self, torch.optim.AdamW))
        kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(
            params,
            [p.grad for p in params],
            [state["exp_avg"] for state in states],
            [state["exp_avg_sq"] for state in states],
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )
        return None

    step.hooked = True  # type: ignore[attr-defined]  # PyTorch's hook wrapper: see the module docstring


class LeanAdamW(LeanAdam, torch.optim.AdamW):
    """``torch.optim.AdamW(fused=True)`` whose step calls ``torch._fused_adamw_`` directly."""


class LeanSGD(_Unwrapped, torch.optim.SGD):
    """``torch.optim.SGD(fused=True)`` whose step calls ``torch._fused_sgd_`` directly."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update of every parameter; PyTorch's own ``step`` where a direct call cannot do."""
        if not _direct_step_possible(self, closure):
            return self._pytorch_step(closure)
        group = self.param_groups[0]
        params = group["params"]
        buffers = [] if group["momentum"] == 0 else [self.state.get(p, {}).get("momentum_buffer") for p in params]
        if any(buffer is None for buffer in buffers):
            return self._pytorch_step(closure)  # the first step makes the momentum buffers
        torch._fused_sgd_(
            params,
            [p.grad for p in params],
            buffers,
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            lr=group["lr"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            maximize=False,
            is_first_step=False,
        )
        return None

    step.hooked = True  # type: ignore[attr-defined]  # PyTorch's hook wrapper: see the module docstring


class LeanRMSprop(_Unwrapped, torch.optim.RMSprop):
    """``torch.optim.RMSprop`` (no fused kernel exists) stepped through PyTorch's own step code,
    without its wrappers where nothing needs them."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update of every parameter, as PyTorch's RMSprop makes it."""
        return self._pytorch_step(closure)

    step.hooked = True  # type: ignore[attr-defined]  # PyTorch's hook wrapper: see the module docstring


def build_optimizer(model: nn.Module, hp: Hyperparams) -> torch.optim.Optimizer:
    """The optimizer ``hp.optimizer`` names, with its lr, weight decay and (sgd, rmsprop) momentum.

    SGD, Adam and AdamW run PyTorch's fused kernels (one kernel for all parameters, on CPU and GPU
    alike; on a small model the per-parameter loop of the default implementation costs more than
    the matrix products), stepped directly (see the module docstring); RMSprop, which has no fused
    kernel, its multi-tensor ``foreach`` path, unwrapped.
    """
    params = list(model.parameters())
    if hp.optimizer == "sgd":
        return LeanSGD(params, lr=hp.effective_lr, momentum=hp.momentum, weight_decay=hp.weight_decay, fused=True)
    if hp.optimizer == "adam":
        return LeanAdam(params, lr=hp.effective_lr, weight_decay=hp.weight_decay, fused=True)
    if hp.optimizer == "adamw":
        return LeanAdamW(params, lr=hp.effective_lr, weight_decay=hp.weight_decay, fused=True)
    if hp.optimizer == "rmsprop":
        return LeanRMSprop(params, lr=hp.effective_lr, momentum=hp.momentum, weight_decay=hp.weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {hp.optimizer!r}")
