"""Packed trials: several MLP trials trained together, one batched matrix product per layer.

A small model leaves the hardware idle: most of a training step is Python and kernel-launch
overhead, not arithmetic. A pack trains up to K trials at once. Their weights are stacked into one
tensor per layer (``(K, out, in)``, each member zero-padded to the widest member), so a training step
is one ``baddbmm`` per layer for all of them, and each member's optimizer update is one call of the
fused kernel its optimizer calls alone, on its rows of the stacked tensors. Dropout masks are drawn
several steps at a time, and losses and hits add up on the device until an epoch ends.

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

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.study.data import Splits
from hpstudy.study.models import build_model, dropout_threshold
from hpstudy.study.optimizers import LeanSGD, build_optimizer
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
    pending_masks: list[torch.Tensor] = field(default_factory=list)  # drawn, unused dropout masks (per layer)


@dataclass(frozen=True)
class _Layout:
    """Where each layer's weights and biases sit in a stack's flat buffer: layer by layer, one
    contiguous ``(K, out, in)`` block of every member's weights, then a ``(K, 1, out)`` block of
    their biases."""

    members: int
    widths: tuple[int, ...]  # input width, then each layer's (padded) output width

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        """The block shapes in buffer order: weight, bias, weight, bias..."""
        k = self.members
        return [shape for fan_in, fan_out in zip(self.widths[:-1], self.widths[1:])
                for shape in ((k, fan_out, fan_in), (k, 1, fan_out))]

    @property
    def size(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes)

    def blocks(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """The blocks of a flat buffer laid out this way, as views, in buffer order."""
        pieces = torch.split(flat, [math.prod(shape) for shape in self.shapes])
        return [piece.view(shape) for piece, shape in zip(pieces, self.shapes)]


class Stack:
    """The members of one depth and activation, stacked: a flat parameter buffer (``_Layout``) with
    a view per layer's weights and biases, the optimizer state in buffers of the same layout,
    per-member settings as ``(K, 1, 1)`` tensors. Members are ordered by optimizer, so the RMSprop
    members' element-wise update works in place on one slice of each block."""

    def __init__(self, members: list[Member], *, in_features: int, n_classes: int, n_rows: int,
                 device: torch.device) -> None:
        self.members = sorted(members, key=lambda m: OPTIMIZER_CODES[m.hp.optimizer])
        self.device = device
        self.activation = ACTIVATION_FUNCTIONS[self.members[0].hp.activation]
        # With act(0) = 0 a padded unit outputs 0, so every padded weight gets a zero gradient and
        # stays zero under each optimizer's update; only sigmoid needs the padding re-zeroed.
        self.zero_keeps_padding = self.members[0].hp.activation != "sigmoid"
        hidden = [max(m.hp.hidden_units[i] for m in self.members) for i in range(self.members[0].hp.n_layers)]
        k = len(self.members)
        self.layout = _Layout(k, (in_features, *hidden, n_classes))
        zeros = lambda: torch.zeros(self.layout.size, device=device)  # noqa: E731
        self.params, self.grads, self.real = zeros(), zeros(), zeros()  # real: 1 where a member's real parameters are
        self.buffers = {name: zeros() for name in ("exp_avg", "exp_avg_sq", "momentum", "square_avg")}
        self.momentum_started = [m.momentum_started for m in self.members]  # SGD: a buffer holds a gradient
        for slot, member in enumerate(self.members):
            self._load(slot, member)
        # Autograd sees one leaf per block, a view of the flat buffer, whose gradient is the same
        # block of the flat gradient buffer: backward adds into it in place. A stack of one member
        # drops the member dimension and multiplies as nn.Linear does (faster than a batch of one).
        self.single = k == 1
        leaf = (lambda block: block[0, 0] if block.shape[1] == 1 else block[0]) if self.single else (lambda block: block)  # noqa: E731
        self.leaves = [leaf(block).detach().requires_grad_(True) for block in self.layout.blocks(self.params)]
        for tensor, grad in zip(self.leaves, self.layout.blocks(self.grads)):
            tensor.grad = leaf(grad)
        self._layers = list(zip(self.leaves[::2], self.leaves[1::2]))  # (weight, bias) per layer
        column = lambda values: torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1, 1)  # noqa: E731
        self.weight_decay = column([m.hp.weight_decay for m in self.members])
        self.momentum = column([m.hp.momentum for m in self.members])
        self.step_counts = torch.tensor([float(m.steps) for m in self.members], device=device)  # Adam's "step"
        rmsprop = [slot for slot, m in enumerate(self.members) if m.hp.optimizer == "rmsprop"]
        self.rmsprop = (rmsprop[0], rmsprop[-1] + 1) if rmsprop else None  # the RMSprop members' slots
        self._rates: tuple[tuple[float, ...], torch.Tensor | None] = ((), None)  # see _rmsprop_rates
        self.batch = max(m.hp.batch_size for m in self.members)
        self.n_rows = n_rows
        self.orders = torch.zeros(k, n_rows, dtype=torch.long, device=device)  # each member's epoch order
        self._order_of: list[torch.Tensor | None] = [None] * k  # which order tensor a row holds
        # where each member's next batch starts in its order, kept on the device (a tensor made from
        # the Python positions each step would be a blocking copy to a GPU)
        self.starts = torch.zeros(k, dtype=torch.long, device=device)
        self._offsets = torch.arange(self.batch, device=device)
        self.row_weight = torch.zeros(k, self.batch, device=device)
        self.real_rows = torch.zeros(k, self.batch, dtype=torch.bool, device=device)
        self._batch_rows = [0] * k  # rows each member takes this step; the same on the device:
        self._counts = torch.zeros(k, dtype=torch.long, device=device)
        # training loss and correct predictions of each member's epoch so far, read at its end
        self.loss_sums = torch.zeros(k, device=device)
        self.hits = torch.zeros(k, dtype=torch.long, device=device)
        # dropout follows each hidden layer, so a stack without hidden layers draws no masks (as alone)
        self.masks = _MaskChunks(self.members, hidden, batch=self.batch, n_rows=n_rows, device=device) if hidden and any(
            m.hp.dropout > 0 for m in self.members) else None
        for slot, member in enumerate(self.members):
            if self.masks is not None and member.pending_masks:
                self.masks.load(slot, member.pending_masks)
            member.pending_masks = []
        # the blocks of each buffer, and each member's rows of them as its optimizer step takes them
        self.blocks = {name: self.layout.blocks(flat) for name, flat in
                       {"params": self.params, "grads": self.grads, **self.buffers}.items()}
        self._member_rows = [{name: [block[slot] for block in blocks] for name, blocks in self.blocks.items()}
                             for slot in range(k)]
        for slot, rows in enumerate(self._member_rows):
            rows["steps"] = [self.step_counts[slot]] * len(rows["params"])  # one per tensor, as the kernels take them
    # -------------------------------------------------------------- layout

    def _member_slices(self, slot: int, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Member ``slot``'s (weight, bias) per layer in a flat buffer, at its real size."""
        widths = [self.layout.widths[0], *self.members[slot].hp.hidden_units, self.layout.widths[-1]]
        blocks = self.layout.blocks(flat)
        return [(weight[slot, :fan_out, :fan_in], bias[slot, 0, :fan_out])
                for weight, bias, fan_in, fan_out in zip(blocks[::2], blocks[1::2], widths[:-1], widths[1:])]

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
        """Hand every member back before this stack is dropped: its parameters and optimizer state
        at their real sizes, its epoch's loss and hits so far, and the dropout masks it has drawn
        but not used yet (the next stack uses them, so its random stream stays the one alone)."""
        for slot, member in enumerate(self.members):
            self.unload_member(slot)
            self.flush_totals(slot)
            if self.masks is not None:
                member.pending_masks = self.masks.unused(slot)

    def flush_totals(self, slot: int) -> None:
        """Add member ``slot``'s training loss and hits since the last flush to its epoch totals."""
        member = self.members[slot]
        member.loss_sum += self.loss_sums[slot].item()
        member.correct += self.hits[slot].item()
        self.loss_sums[slot] = 0.0
        self.hits[slot] = 0

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
        rows left in its epoch: the caller ends an epoch before that). Nothing is read back: the
        losses and hits add up on the device until ``flush_totals``."""
        started = time.perf_counter()
        k = len(self.members)
        for slot, member in enumerate(self.members):
            if member.order is not self._order_of[slot]:  # a new epoch: its order comes in
                self.orders[slot] = member.order
                self.starts[slot] = member.position
                self._order_of[slot] = member.order
        rows = [min(member.hp.batch_size, self.n_rows - member.position) for member in self.members]
        if rows != self._batch_rows:  # a new member, or the short last batch of an epoch
            self._set_rows(rows)
        index = self.orders.gather(1, (self.starts.unsqueeze(1) + self._offsets).clamp_(max=self.n_rows - 1)).flatten()
        self.starts += self._counts
        targets = y.index_select(0, index).view(k, self.batch)
        logits = self._forward(x.index_select(0, index), self.masks.next() if self.masks is not None else None)
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.flatten(), reduction="none")
        losses = losses.view(k, self.batch)
        self.grads.zero_()
        (losses * self.row_weight).sum().backward()
        with torch.no_grad():
            self.loss_sums += losses.where(self.real_rows, 0.0).sum(dim=1)
            self.hits += ((logits.argmax(dim=2) == targets) & self.real_rows).sum(dim=1)
            self._update()
        share = (time.perf_counter() - started) / k
        for member, count in zip(self.members, rows):
            member.position += count
            member.seen += count
            member.steps += 1
            member.seconds += share

    def _forward(self, inputs: torch.Tensor, masks: list[torch.Tensor] | None) -> torch.Tensor:
        """The logits ``(K, batch, classes)`` of every member on its rows of ``inputs``
        ``(K * batch, features)``, with its dropout ``masks`` (per layer) if any."""
        if self.single:
            hidden = inputs
            for layer, (weight, bias) in enumerate(self._layers[:-1]):
                hidden = self.activation(F.linear(hidden, weight, bias))
                if masks is not None:
                    hidden = hidden * masks[layer][0]
            return F.linear(hidden, *self._layers[-1]).unsqueeze(0)
        hidden = inputs.view(len(self.members), self.batch, -1)
        for layer, (weight, bias) in enumerate(self._layers[:-1]):
            hidden = self.activation(torch.baddbmm(bias, hidden, weight.transpose(1, 2)))
            if masks is not None:
                hidden = hidden * masks[layer]
        weight, bias = self._layers[-1]
        return torch.baddbmm(bias, hidden, weight.transpose(1, 2))

    def _rmsprop_rates(self) -> torch.Tensor:
        """The RMSprop members' learning rates as a ``(n, 1, 1)`` tensor, made anew only when one
        changed (a plateau schedule cuts it between epochs)."""
        assert self.rmsprop is not None
        first, end = self.rmsprop
        rates = tuple(member.lr for member in self.members[first:end])
        if rates != self._rates[0]:
            self._rates = (rates, torch.tensor(rates, device=self.device).view(-1, 1, 1))
        return self._rates[1]

    def _set_rows(self, rows: list[int]) -> None:
        """Each member's batch rows: the first ``rows[slot]`` count, each weighing ``1 / rows``."""
        self._counts = torch.tensor(rows, device=self.device)
        self.real_rows = self._offsets < self._counts.unsqueeze(1)
        self.row_weight = self.real_rows / self._counts.unsqueeze(1)
        self._batch_rows = rows

    def _update(self) -> None:
        """Each member's optimizer step, in place on its rows of the blocks: Adam, AdamW and
        SGD through the fused kernel its optimizer alone calls (``optimizers``), with its own lr and
        weight decay, so the update is the same arithmetic; RMSprop (no fused kernel) as PyTorch's
        element-wise formula. Padding stays zero: its gradient and state are zero."""
        self.step_counts += 1
        for slot, (member, rows) in enumerate(zip(self.members, self._member_rows)):
            hp = member.hp
            if hp.optimizer in ("adam", "adamw"):
                kernel = torch._fused_adamw_ if hp.optimizer == "adamw" else torch._fused_adam_
                kernel(rows["params"], rows["grads"], rows["exp_avg"], rows["exp_avg_sq"], [], rows["steps"],
                       amsgrad=False, lr=member.lr,
                       beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], weight_decay=hp.weight_decay, eps=ADAM_EPS,
                       maximize=False)
            elif hp.optimizer == "sgd":
                torch._fused_sgd_(rows["params"], rows["grads"], rows["momentum"] if hp.momentum else [],
                                  weight_decay=hp.weight_decay, momentum=hp.momentum, lr=member.lr, dampening=0.0,
                                  nesterov=False, maximize=False, is_first_step=not self.momentum_started[slot])
                self.momentum_started[slot] = True
        if self.rmsprop is not None:
            first, end = self.rmsprop
            rate = self._rmsprop_rates()
            decay, momentum = self.weight_decay[first:end], self.momentum[first:end]
            for p, g, square_avg, buf in zip(*(self.blocks[name] for name in ("params", "grads", "square_avg", "momentum"))):
                p, square_avg, buf = p[first:end], square_avg[first:end], buf[first:end]
                g = g[first:end].addcmul(p, decay)  # L2 weight decay enters the gradient
                square_avg.mul_(RMSPROP_ALPHA).addcmul_(g, g, value=1 - RMSPROP_ALPHA)
                buf.mul_(momentum).addcdiv_(g, square_avg.sqrt().add_(RMSPROP_EPS))
                p.sub_(buf * rate)
        if self.zero_keeps_padding is False:
            self.params.mul_(self.real)  # sigmoid(0) = 0.5 feeds padded inputs: put the padding back to zero


class _MaskChunks:
    """The dropout masks of a stack's members, drawn several steps at a time.

    Alone, a trial draws one mask per layer and step from its random state (``dropout_mask``). A
    member draws the same numbers in the same order, a chunk of its next steps (never past the end
    of its epoch) in one call, so a step costs one gather per layer instead of a draw per member and
    layer. Buffers are ``(K, S, batch, width)`` per layer; members without dropout keep all ones.
    """

    #: at most this many mask entries per stack (64 MiB of float32); S is at most MAX_STEPS
    BUDGET = 1 << 24
    MAX_STEPS = 32

    def __init__(self, members: list[Member], hidden: list[int], *, batch: int, n_rows: int, device: torch.device) -> None:
        self.members = members
        self.n_rows = n_rows
        k = len(members)
        self.steps = max(1, min(self.MAX_STEPS, self.BUDGET // (k * batch * sum(hidden))))
        self.buffers = [torch.ones(k, self.steps, batch, width, device=device) for width in hidden]
        self._slots = torch.arange(k, device=device)
        self._cursor = [0] * k  # the next unused step of each member's chunk
        self._filled = [0] * k  # steps drawn into its chunk
        self._cursors = torch.zeros(k, dtype=torch.long, device=device)  # the same, on the device
        self._advance = torch.tensor([int(m.hp.dropout > 0.0) for m in members], device=device)

    def next(self) -> list[torch.Tensor]:
        """Every member's masks for this step, per layer ``(K, batch, width)``."""
        for slot, member in enumerate(self.members):
            if member.hp.dropout > 0.0 and self._cursor[slot] == self._filled[slot]:
                self._draw(slot)
        masks = [buffer[self._slots, self._cursors] for buffer in self.buffers]
        self._cursors += self._advance  # members with dropout use one step of their chunk
        self._cursor = [c + 1 if c < f else c for c, f in zip(self._cursor, self._filled)]
        return masks

    def _draw(self, slot: int) -> None:
        """Fill member ``slot``'s chunk with the masks of its next steps in this epoch: one draw for
        all of them, cut as ``dropout_mask`` cuts a draw per layer and step (four 16-bit lanes per
        64-bit word, each layer's mask starting on a new word)."""
        member = self.members[slot]
        batch, widths = member.hp.batch_size, member.hp.hidden_units
        left = self.n_rows - member.position
        full = min(self.steps, left // batch)
        runs = [(full, batch)] if full else []  # (steps, rows): full batches, then the epoch's short last one
        if full < self.steps and left - full * batch >= 2:
            runs.append((1, left - full * batch))
        step_words = [sum((rows * width + 3) // 4 for width in widths) for _, rows in runs]
        drawn = torch.empty(sum(steps * words for (steps, _), words in zip(runs, step_words)), dtype=torch.int64)
        lanes = drawn.random_(-(2**63), None, generator=member.dropout_rng).view(torch.int16)
        threshold, scale = dropout_threshold(member.hp.dropout)
        word, step = 0, 0
        for (steps, rows), words in zip(runs, step_words):
            block = lanes[4 * word : 4 * (word + steps * words)].view(steps, 4 * words)
            lane = 0
            for buffer, width in zip(self.buffers, widths):
                cut = block[:, lane : lane + rows * width].reshape(steps, rows, width)
                into = buffer[slot, step : step + steps, :rows, :width]
                into.copy_(torch.ge(cut, threshold)).mul_(scale)
                lane += 4 * ((rows * width + 3) // 4)
            word, step = word + steps * words, step + steps
        self._restart(slot, filled=step)

    def unused(self, slot: int) -> list[torch.Tensor]:
        """Member ``slot``'s drawn but unused masks at its real size, per layer (for the next stack)."""
        cursor, filled = self._cursor[slot], self._filled[slot]
        if cursor == filled:
            return []
        member = self.members[slot]
        return [buffer[slot, cursor:filled, : member.hp.batch_size, :width].clone()
                for buffer, width in zip(self.buffers, member.hp.hidden_units)]

    def load(self, slot: int, masks: list[torch.Tensor]) -> None:
        """Take over ``unused`` masks from the member's previous stack."""
        steps = len(masks[0])
        for buffer, mask in zip(self.buffers, masks):
            buffer[slot, :steps, : mask.shape[1], : mask.shape[2]] = mask
        self._restart(slot, filled=steps)

    def _restart(self, slot: int, *, filled: int) -> None:
        """Member ``slot``'s chunk now holds ``filled`` new steps; the next step uses the first."""
        self._cursor[slot], self._filled[slot] = 0, filled
        self._cursors[slot] = 0


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
            holder = LeanSGD([torch.zeros(1, requires_grad=True)], lr=hp.effective_lr)  # holds the lr the schedule cuts
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
        stack = self._stack_of(member)
        if stack is not None:
            stack.flush_totals(stack.members.index(member))
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
                                        n_rows=len(self.x_train), device=self.device)
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
