"""Data: digits offline, MNIST/FashionMNIST/CIFAR-10 through torchvision's classes on real-format files."""

from __future__ import annotations

import pytest
import torch

from hpstudy.study.config import load_config
from hpstudy.study.data import load_splits, split_indices
from hpstudy.study.errors import UserError
from tests.helpers.datasets import write_cifar10_like, write_mnist_like


def data_section(**values):
    return load_config(values={f"data.{k}": v for k, v in values.items()}).data


def test_digits_split_is_fixed_by_the_seed_and_disjoint():
    a = load_splits(data_section(), seed=1)
    b = load_splits(data_section(), seed=1)
    c = load_splits(data_section(), seed=2)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.y_val, c.y_val)
    assert len(a.x_train) + len(a.x_val) == 1797
    assert len(a.x_val) == round(1797 * 0.2)
    assert a.input_shape == (1, 8, 8) and a.n_classes == 10
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    # standardized with the training split's statistics
    assert abs(a.x_train.mean().item()) < 1e-4


def test_split_indices_partition_the_range():
    train, val = split_indices(100, val_fraction=0.3, seed=0)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    assert len(val) == 30


def test_subsets_and_a_subset_larger_than_the_split():
    splits = load_splits(data_section(train_subset=100, val_subset=50), seed=0)
    assert len(splits.x_train) == 100 and len(splits.x_val) == 50
    with pytest.raises(UserError, match="data.train_subset is 5000 but the training split has only 1438"):
        load_splits(data_section(train_subset=5000), seed=0)


@pytest.mark.parametrize(("dataset", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_from_idx_files(tmp_path, dataset, folder):
    write_mnist_like(tmp_path, folder, n_train=200)
    splits = load_splits(data_section(dataset=dataset, root=str(tmp_path), download=False), seed=0)
    assert splits.input_shape == (1, 28, 28)
    assert len(splits.x_train) + len(splits.x_val) == 200
    assert splits.n_classes == 10


def test_cifar10_from_pickled_batches(tmp_path):
    write_cifar10_like(tmp_path, per_batch=40)
    splits = load_splits(
        data_section(dataset="cifar10", root=str(tmp_path), download=False, verify_checksums=False), seed=0
    )
    assert splits.input_shape == (3, 32, 32)
    assert len(splits.x_train) + len(splits.x_val) == 200
    assert splits.x_train.mean(dim=(0, 2, 3)).abs().max().item() < 1e-4  # per-channel standardized


def test_cifar10_checksum_mismatch_names_the_option(tmp_path):
    write_cifar10_like(tmp_path, per_batch=10)
    with pytest.raises(UserError, match="verify_checksums=false"):
        load_splits(data_section(dataset="cifar10", root=str(tmp_path), download=False), seed=0)


def test_missing_files_name_the_folder_and_files(tmp_path):
    with pytest.raises(UserError) as info:
        load_splits(data_section(dataset="mnist", root=str(tmp_path), download=False), seed=0)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "data.download is false" in message


def test_failed_download_offline_is_one_line_and_leaves_no_folders(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(UserError) as info:
        load_splits(data_section(dataset="fashion_mnist", root=str(root), download=True), seed=0)
    assert "download failed" in str(info.value)
    assert str(root / "FashionMNIST" / "raw") in str(info.value)
    assert "\n" not in str(info.value)
    assert not root.exists()  # the folders the attempt made are gone


def test_failed_download_keeps_folders_that_were_there(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="download failed"):
        load_splits(data_section(dataset="mnist", root=str(tmp_path), download=True), seed=0)
    assert (tmp_path / "MNIST" / "raw").is_dir() and (tmp_path / "notes.txt").read_text() == "mine"


def test_digits_are_scikit_learns_bundled_digits():
    from sklearn.datasets import load_digits

    from hpstudy.study.data import load_images

    images, labels = load_images(load_config().data)
    bunch = load_digits()
    assert torch.equal(images[:, 0], torch.from_numpy(bunch.images / 16.0).float())
    assert torch.equal(labels, torch.from_numpy(bunch.target).long())
