"""Write small datasets in the real on-disk formats torchvision's classes read (IDX, CIFAR pickles).

Each class gets its own fixed pattern plus noise, so a model can learn them and a falling loss
means something.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def patterned_images(n: int, shape: tuple[int, ...], *, n_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images of ``shape``: a per-class template plus noise, and their labels."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(n_classes, *shape))
    labels = rng.integers(0, n_classes, size=n)
    noise = rng.normal(0, 40, size=(n, *shape))
    images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels.astype(np.uint8)


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """An IDX3 ubyte image file (magic 2051), as in the MNIST distribution."""
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """An IDX1 ubyte label file (magic 2049)."""
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, folder: str = "MNIST", *, n_train: int = 300, n_test: int = 50, size: int = 28) -> Path:
    """Write ``root/<folder>/raw/`` with the four IDX files; ``folder`` is MNIST or FashionMNIST."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = patterned_images(n, (size, size), seed=seed)
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


def write_cifar10_like(root: Path, *, per_batch: int = 60, n_test: int = 20) -> Path:
    """Write ``root/cifar-10-batches-py/`` with five training batches, a test batch and the meta file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = [(f"data_batch_{i}", per_batch, i) for i in range(1, 6)] + [("test_batch", n_test, 9)]
    for name, n, seed in batches:
        images, labels = patterned_images(n, (3, 32, 32), seed=seed)
        entry = {"data": images.reshape(n, 3 * 32 * 32), "labels": [int(v) for v in labels]}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder
