"""Which kernels run on CUDA tensors: Triton (default), ``mamba_ssm`` (when asked for), or PyTorch.

``SPIKMAMBA_CUDA_KERNELS`` (or :func:`set_cuda_kernels`) chooses:

* ``auto`` / ``triton``: the Triton scan and LIF (``nn/ssm/triton_scan.py``, ``nn/lif_triton.py``)
  when ``triton`` imports, else PyTorch. Triton ships with PyTorch's CUDA wheels, so nothing is
  built at install time;
* ``mamba_ssm``: the compiled ``mamba_ssm`` selective scan (an error when it does not import),
  with the Triton LIF;
* ``torch``: the PyTorch paths, as on the CPU.

CPU tensors always take the PyTorch paths; nothing here imports Triton for them.
"""
from __future__ import annotations

import functools
import os

CHOICES = ("auto", "triton", "mamba_ssm", "torch")
_chosen: "str | None" = None


def set_cuda_kernels(choice: "str | None") -> None:
    """Override ``SPIKMAMBA_CUDA_KERNELS`` for this process (``None``: back to the variable)."""
    if choice is not None and choice not in CHOICES:
        raise ValueError(f"cuda kernels must be one of {CHOICES}, got {choice!r}")
    global _chosen
    _chosen = choice


def cuda_kernels() -> str:
    choice = _chosen or os.environ.get("SPIKMAMBA_CUDA_KERNELS", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"SPIKMAMBA_CUDA_KERNELS must be one of {CHOICES}, got {choice!r}")
    return choice


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # not installed, or a build that cannot load here
        return False
    return True


def use_triton(tensor) -> bool:
    """True when ``tensor`` is on CUDA and the choice allows Triton and it imports."""
    return tensor.is_cuda and cuda_kernels() != "torch" and triton_available()
