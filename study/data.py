"""Datasets as tensors: loaded once per process, split by the seed, kept on the training device.

A trial never sees a DataLoader or a per-sample transform: batches are index slices of the
tensors here. Images are scaled to [0, 1], then standardized per channel with the statistics of
the training split.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from hpstudy.study.errors import UserError

if TYPE_CHECKING:
    from hpstudy.study.config import DataSection

#: Files torchvision's classes expect under the data root, per dataset (for error messages).
EXPECTED_FILES = {
    "mnist": ("MNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    "fashion_mnist": ("FashionMNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    "cifar10": ("cifar-10-batches-py", ("data_batch_1", "...", "data_batch_5", "test_batch",
                                        "batches.meta")),
}


@dataclass(frozen=True)
class Splits:
    """Training and validation tensors: images ``(N, C, H, W)`` float32, labels int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one image, ``(C, H, W)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.x_train.device

    def to(self, device: torch.device, *, channels_last: bool = False) -> Splits:
        """The same splits on ``device`` (pinned host memory and non-blocking copies for CUDA),
        images in channels-last layout when asked (what a CNN on a GPU reads fastest)."""
        layout = torch.channels_last if channels_last else torch.contiguous_format
        if self.device == device and self.x_train.is_contiguous(memory_format=layout):
            return self
        return replace(
            self,
            x_train=_move(self.x_train, device).contiguous(memory_format=layout),
            y_train=_move(self.y_train, device),
            x_val=_move(self.x_val, device).contiguous(memory_format=layout),
            y_val=_move(self.y_val, device),
        )


def _move(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda" and tensor.device.type == "cpu":
        moved = tensor.pin_memory().to(device, non_blocking=True)
        torch.cuda.current_stream(device).synchronize()  # the pinned source must outlive the copy
        return moved
    return tensor.to(device)


def load_splits(data: DataSection, *, seed: int, device: torch.device | None = None) -> Splits:
    """Load ``data.dataset``, cut the seeded validation split, standardize, move to ``device``."""
    images, labels = load_images(data)
    train_idx, val_idx = split_indices(len(labels), val_fraction=data.val_fraction, seed=seed)
    train_idx = _subset(train_idx, data.train_subset, "data.train_subset", "training")
    val_idx = _subset(val_idx, data.val_subset, "data.val_subset", "validation")
    x_train, x_val = images[train_idx], images[val_idx]
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    splits = Splits(
        x_train=((x_train - mean) / std).contiguous(),
        y_train=labels[train_idx].contiguous(),
        x_val=((x_val - mean) / std).contiguous(),
        y_val=labels[val_idx].contiguous(),
        n_classes=int(labels.max().item()) + 1,
    )
    return splits.to(device) if device is not None else splits


def split_indices(n: int, *, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut into (train, validation) index tensors."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    return order[n_val:], order[:n_val]


def _subset(indices: torch.Tensor, size: int | None, key: str, what: str) -> torch.Tensor:
    if size is None:
        return indices
    if size > len(indices):
        raise UserError(f"{key} is {size} but the {what} split has only {len(indices)} samples; lower it")
    return indices[:size]


def load_images(data: DataSection) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images of ``data.dataset`` as float32 ``(N, C, H, W)`` in [0, 1], and labels."""
    if data.dataset == "digits":
        return _digits()
    return _torchvision(data)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled digits, read from the file it ships (``load_digits`` reads the same
    file, but importing ``sklearn.datasets`` first costs over a second of start-up)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise UserError("dataset digits needs scikit-learn; pip install scikit-learn")
    table = np.loadtxt(Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    images = torch.from_numpy((table[:, :-1] / 16.0).astype(np.float32)).view(-1, 1, 8, 8)
    return images, torch.from_numpy(table[:, -1].astype(np.int64))


def _torchvision(data: DataSection) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(data.root).expanduser()
    folders = _folder_chain(root, EXPECTED_FILES[data.dataset][0])
    absent = [folder for folder in folders if not folder.exists()]
    try:
        dataset = _dataset_class(data)(str(root), train=True, download=data.download)
    except (RuntimeError, OSError, ValueError) as exc:
        _remove_if_empty(reversed(absent))  # a failed download leaves no empty folders behind
        raise _missing_data_error(data, root, exc) from None
    pixels = dataset.data
    if isinstance(pixels, np.ndarray):  # CIFAR-10: (N, H, W, C) uint8
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    else:  # MNIST family: (N, H, W) uint8
        images = pixels.unsqueeze(1)
    labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
    return images.float().div_(255.0), labels


def _folder_chain(root: Path, folder: str) -> list[Path]:
    """``root`` and each folder on the way to ``root / folder``, outermost first."""
    chain = [root]
    for part in Path(folder).parts:
        chain.append(chain[-1] / part)
    return chain


def _remove_if_empty(folders: Iterable[Path]) -> None:
    """Remove each of ``folders`` (innermost first) that is an empty directory."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty, or not there: leave it
            continue


def _dataset_class(data: DataSection) -> type:
    from torchvision import datasets

    if data.dataset == "mnist":
        return datasets.MNIST
    if data.dataset == "fashion_mnist":
        return datasets.FashionMNIST
    return datasets.CIFAR10 if data.verify_checksums else _unchecked_cifar10_class()


def _unchecked_cifar10_class() -> type:
    """torchvision's CIFAR10 with the MD5 checks off (``data.verify_checksums: false``)."""
    from torchvision.datasets import CIFAR10

    class UncheckedCIFAR10(CIFAR10):
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return UncheckedCIFAR10


def _missing_data_error(data: DataSection, root: Path, exc: Exception) -> UserError:
    folder, files = EXPECTED_FILES[data.dataset]
    how = (
        "the download failed (offline?)"
        if data.download
        else "it is not there and data.download is false"
    )
    checksum = (
        "; or set data.verify_checksums=false for re-packed files"
        if data.dataset == "cifar10" and data.verify_checksums
        else ""
    )
    return UserError(
        f"dataset {data.dataset}: {how} ({str(exc).strip().splitlines()[0][:120]}); "
        f"put {', '.join(files)} in {(root / folder).resolve()}{checksum}"
    )
