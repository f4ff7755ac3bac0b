"""Resolving the configured device name ("auto", "cpu", "mps", "cuda", "cuda:N") to a torch.device,
and checking a ``--devices`` list, before anything is created."""

from __future__ import annotations

import re

import torch

from hpstudy.study.errors import UserError, quote

DEVICE_NAMES = "auto, cpu, mps, cuda or cuda:N"
_DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(?::\d{1,4})?")
def check_device_name(name: str, *, source: str = "device") -> None:
    """UserError unless ``name`` is one of the device names hpstudy trains on (``DEVICE_NAMES``),
    whole: a name torch does not know (``tpu9``), one it knows but cannot train on (``meta``), or
    one with anything around it (``'cpu\\n'``) is refused before torch sees it."""
    if not isinstance(name, str) or _DEVICE_NAME.fullmatch(name) is None:
        raise UserError(f"{source} {quote(name)} is not a device hpstudy trains on; use {DEVICE_NAMES}")


def parse_device_list(text: str) -> list[str]:
    """The devices of ``--devices`` (comma-separated), each checked and resolvable on this machine;
    UserError for an empty list or entry, or a device listed twice (one worker per entry,
    round-robin: ``--workers`` gives a device several)."""
    names = [part.strip() for part in text.split(",")]
    if not any(names):
        raise UserError(f"--devices {quote(text)} names no device; list them separated by commas, e.g. cuda:0,cuda:1")
    if not all(names):
        raise UserError(f"--devices {quote(text)} has an empty entry; list devices separated by single commas, "
                        "e.g. cuda:0,cuda:1")
    for name in names:
        check_device_name(name, source="--devices entry")
        resolve_device(name)
    twice = next((name for index, name in enumerate(names) if name in names[:index]), None)
    if twice is not None:
        raise UserError(f"--devices lists {quote(twice)} twice; list each device once (--workers N puts several "
                        "workers on the devices, round-robin)")
    return names


def resolve_device(name: str) -> torch.device:
    """The torch.device for ``name``; ``auto`` picks CUDA when present. UserError when the name is
    not one hpstudy trains on, or the device is absent."""
    check_device_name(name)
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
