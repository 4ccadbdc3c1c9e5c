"""Where a run computes: the device a config names, and its mixed-precision context."""
from __future__ import annotations

import contextlib

import torch

from ..errors import InputError
from . import distributed as D


def resolve_device(name: str, env: D.DistEnv | None = None) -> torch.device:
    """``auto`` is CUDA when available; under torchrun each process takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device.name={name!r} but CUDA is not available here; use device.name=cpu")
        if name == "cuda" and env is not None and env.enabled:
            name = f"cuda:{env.local_rank}"
    return torch.device(name)


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise InputError("device.amp=fp16 needs a CUDA device; on the CPU use device.amp=bf16")
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
