"""Shared pieces of the benchmarks: the machine line printed with every result, and data files."""

from __future__ import annotations

import datetime as dt
import os
import platform
import struct
from pathlib import Path

import numpy as np
import torch


def machine_line() -> str:
    """Date, CPU count, torch version and device: printed at the top of every benchmark."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return (
        f"{dt.date.today().isoformat()} | {platform.machine()} {os.cpu_count()} cores | "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads) | {device}"
    )


def write_fashion_mnist(root: Path, *, n_train: int, n_test: int = 1_000, seed: int = 0) -> Path:
    """FashionMNIST-format IDX files (``root/FashionMNIST/raw``) with ``n_train`` 28x28 images:
    the bundled digits, upscaled, shifted and noised, so the task is learnable but not trivial."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits()
    base = np.kron(digits.images / 16.0, np.ones((3, 3)))  # 24x24
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        pick = rng.integers(0, len(base), size=count)
        images = np.zeros((count, 28, 28), dtype=np.float32)
        offsets = rng.integers(0, 5, size=(count, 2))
        for i, (index, (dy, dx)) in enumerate(zip(pick, offsets)):
            images[i, dy : dy + 24, dx : dx + 24] = base[index]
        images = np.clip(images * 255 + rng.normal(0, 25, size=images.shape), 0, 255).astype(np.uint8)
        labels = digits.target[pick].astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, count) + labels.tobytes())
    return raw
