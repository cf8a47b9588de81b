"""Where computations run: the one device policy (names, "auto", a GPU that is absent or out of memory).

``check_device_name`` needs no torch; the rest imports it when called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEVICE_CHOICES = ("auto", "cpu", "cuda")
_NAME = re.compile(r"^(auto|cpu|cuda(:\d{1,3})?)$")
NO_CUDA = "CUDA is not available; running on the CPU"


def check_device_name(name: object) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; anything else is a ValueError naming the choices."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"unknown device {name!r}; expected auto, cpu or cuda")
    return name


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def available_devices() -> tuple[str, ...]:
    """The CPU, and CUDA when a GPU is present."""
    return ("cpu", "cuda") if cuda_available() else ("cpu",)


@dataclass(frozen=True)
class Placement:
    """The device a computation runs on, and why it is not the one asked for (empty when it is)."""

    device: str
    notice: str = ""


def resolve_device(name: str, *, strict: bool = False) -> Placement:
    """Where to run when ``name`` is asked for: ``auto`` is CUDA when present, else the CPU. A CUDA device
    that is absent falls back to the CPU with a notice, or is a ValueError when ``strict``."""
    name = check_device_name(name)
    if name == "auto":
        return Placement("cuda" if cuda_available() else "cpu")
    if name.startswith("cuda") and not cuda_available():
        if strict:
            raise ValueError(f"device {name} was asked for but no CUDA GPU is available")
        return Placement("cpu", NO_CUDA)
    return Placement(name)


def is_out_of_memory(exc: BaseException) -> bool:
    """A GPU allocation failure (torch's OutOfMemoryError, or the RuntimeError older code paths raise)."""
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def out_of_memory_notice(device: str) -> str:
    return f"the GPU ({device}) ran out of memory; running on the CPU"
