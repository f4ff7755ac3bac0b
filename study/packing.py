"""Packed trials: several MLP trials trained together, one batched matrix product per layer.

A small model leaves the hardware idle: most of a training step is Python and kernel-launch
overhead, not arithmetic. A pack trains up to K trials at once. Their weights are stacked into one
tensor per layer (``(K, out, in)``, each member zero-padded to the widest member), so a training step
is one ``baddbmm`` per layer for all of them, and each member's optimizer update is one call of the
fused kernel its optimizer calls alone, on its row of one flat buffer.

Each member stays the trial it would be alone: the same initial weights (built by ``build_model``
from its seed), its own batch order (its own generator), its own dropout masks (drawn from a copy of
the random state it would have alone), its own lr, weight decay, momentum and optimizer (SGD, Adam
and AdamW through PyTorch's fused kernels, RMSprop as PyTorch's element-wise formula), its own
epochs, early stopping and plateau schedule. Members with different batch sizes share a step: each takes its own
batch, padded to the largest one with rows that weigh nothing, and keeps its own epoch clock (a
batch-32 member runs eight epochs' worth of steps while a batch-256 member runs one). Different
depths cannot share a stack, and padding costs its full price, so a pack is made of one stack per
depth, activation, batch size and class of widths (``stack_key``); every stack steps once per round.

Members report and are pruned on their own; a finished or pruned member leaves at once and a new
trial, asked from the study, takes its place. Nothing here imports Optuna: ``runner`` drives the
asking, reporting and telling.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.study.data import Splits
from hpstudy.study.models import build_model, dropout_mask
from hpstudy.study.optimizers import build_optimizer
from hpstudy.study.training import EarlyStopping, EpochResult, Scheduler, TrainingParts, evaluate, training_state

OPTIMIZER_CODES = {"sgd": 0, "adam": 1, "adamw": 2, "rmsprop": 3}
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
RMSPROP_ALPHA = 0.99
RMSPROP_EPS = 1e-8
ACTIVATION_FUNCTIONS = {
    "relu": F.relu,
    "leaky_relu": lambda h: F.leaky_relu(h, 0.01),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": F.gelu,
}


def packable_problem(hp: Hyperparams, *, model_kind: str) -> str | None:
    """Why a trial with ``hp`` cannot join a pack, or None when it can."""
    if model_kind != "mlp":
        return "packing trains MLPs; this study's model is a CNN"
    if hp.batch_norm:
        return "packing does not support batch norm"
    return None


@dataclass
class Member:
    """One trial in a pack: its hyperparameters and everything that makes its training its own."""

    key: object  # the caller's handle (the Optuna trial)
    hp: Hyperparams
    seed: int
    batch_order: torch.Generator
    dropout_rng: torch.Generator
    early_stopping: EarlyStopping | None
    schedule: Scheduler | None
    epoch: int = 0
    order: torch.Tensor | None = None
    position: int = 0
    steps: int = 0  # optimizer steps taken (Adam's bias correction counts them)
    seconds: float = 0.0  # this member's share of the pack's training time in the current epoch
    loss_sum: float = 0.0
    correct: float = 0.0
    seen: int = 0
    lr: float = 0.0
    stopped_early: bool = False
    momentum_started: bool = False  # SGD's momentum buffer holds a first gradient
    module: nn.Module | None = None  # the member as a plain module, for validation (weights copied in)
    weights: list[torch.Tensor] = field(default_factory=list)  # real-size (out, in) per layer
    biases: list[torch.Tensor] = field(default_factory=list)
    state: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # optimizer state, real size


@dataclass(frozen=True)
class _Layout:
    """Where each layer's weight and bias sit in a stack's flat parameter buffer."""

    widths: tuple[int, ...]  # input width, then each layer's (padded) output width
    offsets: tuple[tuple[int, int, int], ...]  # (weight offset, bias offset, end) per layer

    @classmethod
    def for_widths(cls, widths: Sequence[int]) -> _Layout:
        offsets, cursor = [], 0
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            weight, bias = cursor, cursor + fan_out * fan_in
            cursor = bias + fan_out
            offsets.append((weight, bias, cursor))
        return cls(tuple(widths), tuple(offsets))

    @property
    def size(self) -> int:
        return self.offsets[-1][2]

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(weight size, bias size) per layer, in buffer order."""
        return [(bias - weight, end - bias) for weight, bias, end in self.offsets]


class Stack:
    """The members of one depth and activation, stacked: one flat ``(K, P)`` parameter buffer with
    a view per layer, the optimizer state in buffers of the same shape, per-member settings as
    ``(K, 1)`` tensors. Members are ordered by optimizer, so the RMSprop members' element-wise
    update works in place on one contiguous slice."""

    def __init__(self, members: list[Member], *, in_features: int, n_classes: int, device: torch.device) -> None:
        self.members = sorted(members, key=lambda m: OPTIMIZER_CODES[m.hp.optimizer])
        self.device = device
        self.activation = ACTIVATION_FUNCTIONS[self.members[0].hp.activation]
        # With act(0) = 0 a padded unit outputs 0, so every padded weight gets a zero gradient and
        # stays zero under each optimizer's update; only sigmoid needs the padding re-zeroed.
        self.zero_keeps_padding = self.members[0].hp.activation != "sigmoid"
        hidden = [max(m.hp.hidden_units[i] for m in self.members) for i in range(self.members[0].hp.n_layers)]
        self.layout = _Layout.for_widths([in_features, *hidden, n_classes])
        k, size = len(self.members), self.layout.size
        self.params = torch.zeros(k, size, device=device)
        self.real = torch.zeros(k, size, device=device)  # 1 where a member's real parameters are
        self.buffers = {name: torch.zeros(k, size, device=device) for name in ("exp_avg", "exp_avg_sq", "momentum", "square_avg")}
        self.momentum_started = [m.momentum_started for m in self.members]  # SGD: a buffer holds a gradient
        for slot, member in enumerate(self.members):
            self._load(slot, member)
        self.params.requires_grad_(True)
        column = lambda values: torch.tensor(values, dtype=torch.float32, device=device).unsqueeze(1)  # noqa: E731
        self.weight_decay = column([m.hp.weight_decay for m in self.members])
        self.momentum = column([m.hp.momentum for m in self.members])
        self.step_counts = torch.tensor([float(m.steps) for m in self.members], device=device)  # Adam's "step"
        rmsprop = [slot for slot, m in enumerate(self.members) if m.hp.optimizer == "rmsprop"]
        self.rmsprop = (rmsprop[0], rmsprop[-1] + 1) if rmsprop else None  # the RMSprop members' slots
        self.batch = max(m.hp.batch_size for m in self.members)
        self.index = torch.zeros(k, self.batch, dtype=torch.long, device=device)
        self.row_weight = torch.zeros(k, self.batch, device=device)
        self._rows = [0] * k
        self.masks = [torch.ones(k, self.batch, width, device=device) for width in hidden] if any(
            m.hp.dropout > 0 for m in self.members) else None
    # -------------------------------------------------------------- layout

    def _views(self, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight (K, out, in), bias (K, 1, out)) views of a flat (K, P) buffer, per layer."""
        # One split, not a slice per piece: its backward writes all gradients in a single buffer
        # instead of a zero-filled full-size buffer per slice.
        pieces = torch.split(flat, [size for layer in self.layout.sizes for size in layer], dim=1)
        views = []
        for layer, (fan_in, fan_out) in enumerate(zip(self.layout.widths[:-1], self.layout.widths[1:])):
            weight, bias = pieces[2 * layer], pieces[2 * layer + 1]
            views.append((weight.view(-1, fan_out, fan_in), bias.view(-1, 1, fan_out)))
        return views

    def _member_slices(self, slot: int, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        member = self.members[slot]
        widths = [self.layout.widths[0], *member.hp.hidden_units, self.layout.widths[-1]]
        out = []
        for layer, (weight, bias) in enumerate(self._views(flat[slot : slot + 1])):
            fan_in, fan_out = widths[layer], widths[layer + 1]
            out.append((weight[0, :fan_out, :fan_in], bias[0, 0, :fan_out]))
        return out

    def _load(self, slot: int, member: Member) -> None:
        for (weight, bias), real_w, real_b in zip(self._member_slices(slot, self.params), member.weights, member.biases):
            weight.copy_(real_w)
            bias.copy_(real_b)
        for (weight, bias) in self._member_slices(slot, self.real):
            weight.fill_(1.0)
            bias.fill_(1.0)
        for name, tensors in member.state.items():
            for (weight, bias), (state_w, state_b) in zip(self._member_slices(slot, self.buffers[name]), zip(tensors[::2], tensors[1::2])):
                weight.copy_(state_w)
                bias.copy_(state_b)

    def unload(self) -> None:
        """Copy every member's parameters and optimizer state out, at their real sizes."""
        for slot in range(len(self.members)):
            self.unload_member(slot)

    def unload_member(self, slot: int) -> None:
        """Copy member ``slot``'s parameters and optimizer state out, at their real sizes."""
        member = self.members[slot]
        with torch.no_grad():
            pairs = self._member_slices(slot, self.params)
            member.weights = [w.detach().clone() for w, _ in pairs]
            member.biases = [b.detach().clone() for _, b in pairs]
            member.state = {
                name: [t.clone() for pair in self._member_slices(slot, buffer) for t in pair]
                for name, buffer in self.buffers.items()
            }
            member.momentum_started = self.momentum_started[slot]

    def member_model(self, slot: int) -> nn.Module:
        """Member ``slot`` as its plain ``build_model`` module, with its current weights copied in
        (for validation and for keeping the best model)."""
        member = self.members[slot]
        assert member.module is not None
        with torch.no_grad():
            for linear, (weight, bias) in zip(_linears(member.module), self._member_slices(slot, self.params)):
                linear.weight.copy_(weight)
                linear.bias.copy_(bias)
        return member.module

    # -------------------------------------------------------------- one step

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step of every member on its next batch (each member has at least two
        rows left in its epoch: the caller ends an epoch before that)."""
        started = time.perf_counter()
        rows = []
        for slot, member in enumerate(self.members):
            take = member.order[member.position : member.position + member.hp.batch_size]
            count = len(take)
            self.index[slot, :count] = take
            if count != self._rows[slot]:  # a new member, or the short last batch of an epoch
                self.row_weight[slot].zero_()
                self.row_weight[slot, :count] = 1.0 / count
                self._rows[slot] = count
            rows.append(count)
        k = len(self.members)
        inputs = x.index_select(0, self.index.flatten()).view(k, self.batch, -1)
        targets = y.index_select(0, self.index.flatten()).view(k, self.batch)
        hidden = inputs
        views = self._views(self.params)
        for layer, (weight, bias) in enumerate(views[:-1]):
            hidden = self.activation(torch.baddbmm(bias, hidden, weight.transpose(1, 2)))
            if self.masks is not None:
                hidden = hidden * self._draw_masks(layer, rows)
        weight, bias = views[-1]
        logits = torch.baddbmm(bias, hidden, weight.transpose(1, 2))
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.flatten(), reduction="none")
        losses = losses.view(k, self.batch)
        (losses * self.row_weight).sum().backward()
        with torch.no_grad():
            real = self.row_weight > 0
            loss_sums = (losses * real).sum(dim=1)
            hits = ((logits.argmax(dim=2) == targets) & real).sum(dim=1)
            self._update()
        elapsed = time.perf_counter() - started
        for member, count, loss_sum, correct in zip(self.members, rows, loss_sums.tolist(), hits.tolist()):
            member.position += count
            member.seen += count
            member.loss_sum += loss_sum
            member.correct += correct
            member.steps += 1
            member.seconds += elapsed / k

    def _draw_masks(self, layer: int, rows: list[int]) -> torch.Tensor:
        """Each member's dropout mask for ``layer``, drawn from its own random state exactly as
        alone (``dropout_mask``), written into the stack's mask buffer."""
        assert self.masks is not None
        masks = self.masks[layer]
        for slot, (member, count) in enumerate(zip(self.members, rows)):
            p = member.hp.dropout
            if p > 0.0:
                width = member.hp.hidden_units[layer]
                # drawn on the CPU from the member's CPU random state (the one a checkpoint keeps),
                # then copied to the stack's device
                masks[slot, :count, :width] = dropout_mask((count, width), p, generator=member.dropout_rng)
        return masks

    def _update(self) -> None:
        """Each member's optimizer step, in place on its row of the flat buffers: Adam, AdamW and
        SGD through the fused kernel its optimizer alone calls (``optimizers``), with its own lr and
        weight decay, so the update is the same arithmetic; RMSprop (no fused kernel) as PyTorch's
        element-wise formula. Padding stays zero: its gradient and state are zero."""
        params, grads = self.params.data, self.params.grad
        self.step_counts += 1
        for slot, member in enumerate(self.members):
            hp = member.hp
            if hp.optimizer in ("adam", "adamw"):
                kernel = torch._fused_adamw_ if hp.optimizer == "adamw" else torch._fused_adam_
                kernel([params[slot]], [grads[slot]], [self.buffers["exp_avg"][slot]],
                       [self.buffers["exp_avg_sq"][slot]], [], [self.step_counts[slot]], amsgrad=False, lr=member.lr,
                       beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], weight_decay=hp.weight_decay, eps=ADAM_EPS,
                       maximize=False)
            elif hp.optimizer == "sgd":
                torch._fused_sgd_([params[slot]], [grads[slot]], [self.buffers["momentum"][slot]] if hp.momentum else [],
                                  weight_decay=hp.weight_decay, momentum=hp.momentum, lr=member.lr, dampening=0.0,
                                  nesterov=False, maximize=False, is_first_step=not self.momentum_started[slot])
                self.momentum_started[slot] = True
        if self.rmsprop is not None:
            first, end = self.rmsprop
            p, g = params[first:end], grads[first:end]
            g = g.addcmul(p, self.weight_decay[first:end])  # L2 weight decay enters the gradient
            rate = torch.tensor([[m.lr] for m in self.members[first:end]], device=self.device)
            square_avg, buf = self.buffers["square_avg"][first:end], self.buffers["momentum"][first:end]
            square_avg.mul_(RMSPROP_ALPHA).addcmul_(g, g, value=1 - RMSPROP_ALPHA)
            buf.mul_(self.momentum[first:end]).addcdiv_(g, square_avg.sqrt().add_(RMSPROP_EPS))
            p.sub_(buf * rate)
        if self.zero_keeps_padding is False:
            params.mul_(self.real)  # sigmoid(0) = 0.5 feeds padded inputs: put the padding back to zero
        self.params.grad = None


class PackTrainer:
    """Trains the members of a pack round by round and says when each member's epoch ends.

    Plain PyTorch: the caller asks for trials, adds them (``add``), calls ``round`` until members
    report epoch results, decides (report, prune, finish) and removes members (``remove``).
    """

    def __init__(self, splits: Splits, *, device: torch.device, eval_batch_size: int) -> None:
        self.splits = splits
        self.device = device
        self.x_train = splits.x_train.reshape(len(splits.x_train), -1)
        self.eval_batch_size = eval_batch_size
        self.members: list[Member] = []
        self._stacks: dict[tuple[int, str], Stack] = {}
        self._dirty = True

    def add(
        self,
        key: object,
        hp: Hyperparams,
        *,
        seed: int,
        early_stopping: tuple[int, float] | None = None,
        plateau: tuple[float, int] | None = None,
        resume: tuple[dict[str, Any], int] | None = None,
    ) -> Member:
        """A new member, initialized exactly as ``Objective`` would initialize it alone, with its
        early stopping (patience, min delta) and plateau schedule (factor, patience) if any;
        ``resume`` (a ``training_state`` and the epochs it has done) continues a checkpoint."""
        torch.manual_seed(seed)
        model = build_model(hp, kind="mlp", input_shape=self.splits.input_shape, n_classes=self.splits.n_classes)
        dropout_rng = torch.Generator()
        dropout_rng.set_state(torch.get_rng_state())  # alone, dropout draws from here on
        linears = _linears(model)
        schedule = None
        if plateau is not None:
            holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=hp.effective_lr)
            schedule = Scheduler(holder, factor=plateau[0], patience=plateau[1])
        member = Member(
            key=key,
            hp=hp,
            seed=seed,
            batch_order=torch.Generator(device=self.device).manual_seed(seed),
            dropout_rng=dropout_rng,
            early_stopping=EarlyStopping(*early_stopping) if early_stopping else None,
            schedule=schedule,
            lr=hp.effective_lr,
            weights=[l.weight.detach().to(self.device, copy=True) for l in linears],
            biases=[l.bias.detach().to(self.device, copy=True) for l in linears],
            module=model.to(self.device),
        )
        if resume is not None:
            self._restore(member, resume[0], epochs_done=resume[1])
        self.members.append(member)
        self._dirty = True
        return member

    def remove(self, member: Member) -> None:
        """Take ``member`` out of the pack (finished, pruned or interrupted)."""
        self.members.remove(member)
        self._dirty = True

    def model_of(self, member: Member) -> nn.Module:
        """``member`` as a plain module with its current weights."""
        stack = self._stack_of(member)
        if stack is not None:
            return stack.member_model(stack.members.index(member))
        assert member.module is not None
        with torch.no_grad():
            for linear, weight, bias in zip(_linears(member.module), member.weights, member.biases):
                linear.weight.copy_(weight)
                linear.bias.copy_(bias)
        return member.module

    def training_state(self, member: Member) -> dict[str, Any]:
        """``member``'s state between two of its epochs, in the form ``training.training_state``
        gives for a trial trained alone (its plain model's and optimizer's state dicts, its
        batch-order and dropout random states, schedule and early stopping), so a checkpoint taken
        in a pack resumes alone and one taken alone resumes in a pack."""
        stack = self._stack_of(member)
        if stack is not None:
            stack.unload_member(stack.members.index(member))
        model = self.model_of(member)
        parts = TrainingParts(member.batch_order, member.schedule, member.early_stopping)
        state = training_state(model, _plain_optimizer(member, model), parts)
        state["torch_rng"] = member.dropout_rng.get_state()  # alone, dropout draws from the global state
        state.pop("cuda_rng", None)
        return state

    def _restore(self, member: Member, state: dict[str, Any], *, epochs_done: int) -> None:
        """Put a ``training_state`` (from a pack or from a trial alone) into a new ``member``."""
        assert member.module is not None
        member.module.load_state_dict(state["model"])
        optimizer = build_optimizer(member.module, member.hp)
        optimizer.load_state_dict(state["optimizer"])
        member.weights = [linear.weight.detach().clone() for linear in _linears(member.module)]
        member.biases = [linear.bias.detach().clone() for linear in _linears(member.module)]
        member.lr = optimizer.param_groups[0]["lr"]
        states = [optimizer.state.get(p, {}) for p in member.module.parameters()]
        member.state = {
            name: [entry[key].detach().clone() for entry in states]
            for name, key in _STATE_KEYS.items()
            if all(entry.get(key) is not None for entry in states)
        }
        step = states[0].get("step")
        member.steps = int(step.item()) if step is not None else 0
        member.momentum_started = member.hp.optimizer == "sgd" and "momentum" in member.state
        member.batch_order.set_state(state["generator"])
        member.dropout_rng.set_state(state["torch_rng"])
        if member.schedule is not None and "scheduler" in state:
            member.schedule.load_state_dict(state["scheduler"])
            member.schedule.optimizer.param_groups[0]["lr"] = member.lr  # the schedule reads its lr from there
        if member.early_stopping is not None and "early_stopping" in state:
            for key, value in state["early_stopping"].items():
                setattr(member.early_stopping, key, value)
        member.epoch = epochs_done

    def _stack_of(self, member: Member) -> Stack | None:
        for stack in self._stacks.values():
            if member in stack.members:
                return stack
        return None

    def round(self) -> list[tuple[Member, EpochResult]]:
        """One step of every stack; the members whose epoch ended, with that epoch's result."""
        for member in self.members:
            if member.order is None:  # its next epoch starts now (as ``fit`` starts it: a new order)
                self._start_epoch(member)
        if self._dirty:
            self._restack()
        for stack in self._stacks.values():
            stack.step(self.x_train, self.splits.y_train)
        ended = []
        for member in self.members:
            if len(self.splits.x_train) - member.position < 2:
                ended.append((member, self._end_epoch(member)))
        return ended

    def _start_epoch(self, member: Member) -> None:
        member.epoch += 1
        member.order = torch.randperm(len(self.splits.x_train), device=self.device, generator=member.batch_order)
        member.position = 0
        member.loss_sum = member.correct = 0.0
        member.seen = 0
        member.seconds = 0.0

    def _end_epoch(self, member: Member) -> EpochResult:
        """Validate ``member`` as ``fit`` does and step its schedule; its next epoch starts with the
        next round, so between rounds its state is what ``fit``'s is between epochs."""
        started = time.perf_counter()
        val_loss, val_accuracy = evaluate(self.model_of(member), self.splits.x_val, self.splits.y_val,
                                          batch_size=self.eval_batch_size)
        result = EpochResult(
            epoch=member.epoch,
            train_loss=member.loss_sum / member.seen,
            train_accuracy=member.correct / member.seen,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            lr=member.lr,
            train_seconds=member.seconds,
            val_seconds=time.perf_counter() - started,
        )
        if result.finite:
            if member.schedule is not None:
                member.schedule.step(val_loss)
                member.lr = member.schedule.optimizer.param_groups[0]["lr"]
            if member.early_stopping is not None and member.early_stopping.should_stop(val_loss):
                member.stopped_early = True
        member.order = None
        return result

    def _restack(self) -> None:
        """Group the members into stacks (``stack_key``) and rebuild only the stacks whose members
        changed; the others keep training where they are."""
        groups: dict[tuple[object, ...], list[Member]] = {}
        for member in self.members:
            groups.setdefault(stack_key(member.hp), []).append(member)
        kept = {key: stack for key, stack in self._stacks.items()
                if key in groups and {id(m) for m in stack.members} == {id(m) for m in groups[key]}}
        for key, stack in self._stacks.items():
            if key not in kept:
                stack.unload()
        self._stacks = {
            key: kept.get(key) or Stack(members, in_features=self.x_train.shape[1], n_classes=self.splits.n_classes,
                                        device=self.device)
            for key, members in groups.items()
        }
        self._dirty = False


def stack_key(hp: Hyperparams) -> tuple[object, ...]:
    """The members that share a stack: same depth, activation and batch size, and widths in the
    same power-of-two class per layer. A stack pads every member to its widest layers and largest
    batch, and padded work is paid in full: stacking a 32-wide batch-32 trial with a 256-wide
    batch-256 one costs more than training both alone (bench/README.md)."""
    return (hp.n_layers, hp.activation, hp.batch_size, tuple((width - 1).bit_length() for width in hp.hidden_units))


#: Where each optimizer state of a member lives in PyTorch's optimizers' state: pack name -> key.
_STATE_KEYS = {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq", "square_avg": "square_avg", "momentum": "momentum_buffer"}


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [layer for layer in model.modules() if isinstance(layer, nn.Linear)]


def _plain_optimizer(member: Member, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``member`` would have alone (``build_optimizer``), holding its state."""
    optimizer = build_optimizer(model, member.hp)
    optimizer.param_groups[0]["lr"] = member.lr
    if member.steps == 0:
        return optimizer  # no step taken: PyTorch's optimizers hold no state yet either
    kind, momentum = member.hp.optimizer, member.hp.momentum
    for index, param in enumerate(model.parameters()):
        saved = {name: tensors[index] for name, tensors in member.state.items()}
        entry: dict[str, Any] = {}
        if kind in ("adam", "adamw", "rmsprop"):
            entry["step"] = torch.tensor(float(member.steps), device=param.device if kind != "rmsprop" else "cpu")
        if kind in ("adam", "adamw"):
            entry.update(exp_avg=saved["exp_avg"].clone(), exp_avg_sq=saved["exp_avg_sq"].clone())
        if kind == "rmsprop":
            entry["square_avg"] = saved["square_avg"].clone()
        if (kind == "rmsprop" and momentum > 0) or (kind == "sgd" and momentum != 0 and member.momentum_started):
            entry["momentum_buffer"] = saved["momentum"].clone()
        if entry:
            optimizer.state[param] = entry
    return optimizer
