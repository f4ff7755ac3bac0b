"""Resolving the configured device name ("auto", "cpu", "cuda", "cuda:N") to a torch.device."""

from __future__ import annotations

import torch

from hpstudy.study.errors import UserError


def resolve_device(name: str) -> torch.device:
    """The torch.device for ``name``; ``auto`` picks CUDA when present. UserError when it is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"device '{name}' asked for, but no CUDA GPU is visible to PyTorch; "
                "use --device cpu (or auto)"
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"device '{name}' does not exist: {torch.cuda.device_count()} CUDA device(s) visible "
                f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
            )
        return device
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' asked for, but Apple's MPS backend is not available; use --device cpu")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """A short human name, e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads != 1 else ''})"
