"""Benchmark 1: the same work in two loops, the usual PyTorch objective vs hpstudy's trial.

The usual objective is the shape of Optuna's own PyTorch example: a torchvision FashionMNIST
dataset with a per-sample ``ToTensor`` transform, new DataLoaders every trial, ``.item()`` on every
batch. hpstudy's trial is a real one-trial study on a SQLite file (data loaded once per process,
batches sliced from tensors, one read-back per epoch, checkpoints on). Identical fixed work: MLP
2x128, ReLU, dropout 0.2, Adam 1e-3, batch 128, 10 epochs, the same training and validation
samples of 60,000 FashionMNIST-format images that this script writes itself.

    python -m bench.two_loops                 # full size, 3 interleaved repeats, on the GPU if there is one
    python -m bench.two_loops --device cpu    # both loops on the CPU
    python -m bench.two_loops --quick         # 6,000 images, 2 epochs, 1 repeat (a smoke run)

On a GPU both loops train there: the usual objective moves each batch to the device as Optuna's
example does, hpstudy keeps the data on the device (``train.device``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from bench.common import machine_line, write_fashion_mnist
from hpstudy.study.config import load_config
from hpstudy.study.data import split_indices
from hpstudy.study.runner import run_study

SEED = 0
VAL_FRACTION = 1 / 6  # 50,000 training and 10,000 validation images at full size


def conventional_objective(root: Path, *, epochs: int, train_idx: list[int], val_idx: list[int], device: torch.device):
    """The usual objective, as in Optuna's PyTorch example (one call = one trial)."""
    from torchvision import datasets, transforms

    def objective(trial: optuna.Trial) -> float:
        torch.manual_seed(SEED)
        model = nn.Sequential(
            nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(128, 128), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(128, 10), nn.LogSoftmax(dim=1),
        ).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        dataset = datasets.FashionMNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
        train_loader = DataLoader(Subset(dataset, train_idx), batch_size=128, shuffle=True)
        valid_loader = DataLoader(Subset(dataset, val_idx), batch_size=128, shuffle=False)
        accuracy = 0.0
        for epoch in range(epochs):
            model.train()
            running = 0.0
            for data, target in train_loader:
                data, target = data.view(data.size(0), -1).to(device), target.to(device)
                optimizer.zero_grad()
                loss = F.nll_loss(model(data), target)
                loss.backward()
                optimizer.step()
                running += loss.item()
            model.eval()
            correct, val_loss = 0, 0.0
            with torch.no_grad():
                for data, target in valid_loader:
                    data, target = data.view(data.size(0), -1).to(device), target.to(device)
                    output = model(data)
                    val_loss += F.nll_loss(output, target, reduction="sum").item()
                    correct += output.argmax(dim=1).eq(target).sum().item()
            accuracy = correct / len(val_idx)
            trial.report(val_loss / len(val_idx), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    return objective


def hpstudy_config(root: Path, storage: str, name: str, *, epochs: int, device: str):
    """The same fixed work as an hpstudy study of one trial."""
    return load_config(values={
        "study.name": name,
        "study.n_trials": 1,
        "study.seed": SEED,
        "study.pruner": {"name": "none"},
        "storage": storage,
        "data": {"dataset": "fashion_mnist", "root": str(root), "download": False, "val_fraction": VAL_FRACTION},
        "train.device": device,
        "search_space": {"lr": 1e-3, "batch_size": 128, "epochs": epochs, "n_layers": 2, "hidden_units": 128,
                         "dropout": 0.2, "optimizer": "adam", "activation": "relu", "initializer": "default"},
    })


def trial_seconds(study: optuna.Study) -> float:
    """Wall time of the study's (only) trial, as Optuna recorded it."""
    (trial,) = study.get_trials()
    return trial.duration.total_seconds()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, 2 epochs, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (the GPU when there is one)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    n_images, epochs, repeats = (6_000, 2, 1) if args.quick else (60_000, 10, 3)
    repeats = args.repeats or repeats
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_fashion_mnist(root, n_train=n_images)
        train_idx, val_idx = split_indices(n_images, val_fraction=VAL_FRACTION, seed=SEED)
        usual = conventional_objective(root, epochs=epochs, train_idx=train_idx.tolist(), val_idx=val_idx.tolist(),
                                       device=device)
        timings: dict[str, list[float]] = {"usual": [], "hpstudy": []}
        for repeat in range(repeats):  # interleaved, so drift in machine load hits both alike
            study = optuna.create_study(direction="maximize")
            study.optimize(usual, n_trials=1)
            timings["usual"].append(trial_seconds(study))
            storage = f"sqlite:///{root / 'bench.db'}"
            began = time.perf_counter()
            run_study(hpstudy_config(root, storage, f"loop-{repeat}", epochs=epochs, device=device.type))
            whole = time.perf_counter() - began
            timings["hpstudy"].append(trial_seconds(optuna.load_study(study_name=f"loop-{repeat}", storage=storage)))
            print(f"repeat {repeat + 1}: usual {timings['usual'][-1]:.2f} s/trial, hpstudy {timings['hpstudy'][-1]:.2f} "
                  f"s/trial ({whole:.2f} s with loading the data once)")
    usual_s, ours_s = statistics.median(timings["usual"]), statistics.median(timings["hpstudy"])
    print(f"images {n_images}, epochs {epochs}, batch 128, MLP 2x128, repeats {repeats}, device {device.type}")
    print(f"median seconds per trial: usual {usual_s:.2f}, hpstudy {ours_s:.2f}")
    print(f"ratio (usual / hpstudy): {usual_s / ours_s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
