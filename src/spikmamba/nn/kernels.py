"""Which kernels run on CUDA tensors: Triton (default), ``mamba_ssm`` (when asked for), or PyTorch.

``SPIKMAMBA_CUDA_KERNELS`` (or :func:`set_cuda_kernels`) chooses:

* ``auto`` / ``triton``: the Triton scan and LIF (``nn/ssm/triton_scan.py``, ``nn/lif_triton.py``)
  when ``triton`` imports, else PyTorch. Triton ships with PyTorch's CUDA wheels, so nothing is
  built at install time;
* ``mamba_ssm``: the compiled ``mamba_ssm`` selective scan (an error when it does not import),
  with the Triton LIF;
* ``torch``: the PyTorch paths, as on the CPU.

CPU tensors always take the PyTorch paths; nothing here imports Triton for them.

:func:`scan_backend` and :func:`lif_backend` are the one place the choice is made. When a CUDA
tensor cannot take the fast path (float64, a surrogate the Triton LIF lacks, Triton missing),
the PyTorch path runs and a warning says why, once per reason.
"""
from __future__ import annotations

import functools
import os
import warnings

import torch

from ..errors import InputError

CHOICES = ("auto", "triton", "mamba_ssm", "torch")
#: the implementations behind the spikmamba:: operators (nn/ssm/scan_op.py, nn/lif_op.py)
OP_BACKENDS = ("torch", "triton")
_chosen: str | None = None


def set_cuda_kernels(choice: str | None) -> None:
    """Override ``SPIKMAMBA_CUDA_KERNELS`` for this process (``None``: back to the variable)."""
    if choice is not None and choice not in CHOICES:
        raise InputError(f"cuda kernels must be one of {CHOICES}, got {choice!r}")
    global _chosen
    _chosen = choice


def cuda_kernels() -> str:
    choice = _chosen or os.environ.get("SPIKMAMBA_CUDA_KERNELS", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise InputError(f"SPIKMAMBA_CUDA_KERNELS must be one of {CHOICES}, got {choice!r}")
    return choice


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # not installed, or a build that cannot load here
        return False
    return True


@functools.cache
def _warn_once(reason: str) -> None:
    warnings.warn(reason, RuntimeWarning, stacklevel=3)


def _triton_or_torch(tensor, what: str) -> str:
    """'triton' or 'torch' for a CUDA tensor under the auto/triton choice, saying why when not Triton."""
    if not triton_available():
        _warn_once(f"the {what} runs in PyTorch on CUDA (slower): triton does not import here "
                   "(pip install triton, or set SPIKMAMBA_CUDA_KERNELS=torch to silence this)")
        return "torch"
    if tensor.dtype == torch.float64:
        _warn_once(f"the Triton {what} computes in float32; float64 CUDA tensors take the PyTorch {what}")
        return "torch"
    return "triton"


def scan_backend(u) -> str:
    """Which selective scan runs for ``u``: 'torch', 'triton' or 'mamba_ssm'. An empty tensor (a DDP
    rank's empty shard) takes the PyTorch path, which has nothing to launch."""
    if not u.is_cuda or u.numel() == 0:
        return "torch"
    choice = cuda_kernels()
    if choice in ("torch", "mamba_ssm"):
        return choice
    return _triton_or_torch(u, "selective scan")


def lif_backend(x, surrogate) -> str:
    """Which multi-step LIF runs for ``x``: 'torch' or 'triton' (the built-in surrogates only)."""
    if not x.is_cuda or x.numel() == 0 or cuda_kernels() == "torch":
        return "torch"
    backend = _triton_or_torch(x, "LIF")
    if backend == "triton" and surrogate.kernel_name is None:
        _warn_once(f"the Triton LIF knows the built-in surrogates, not {type(surrogate).__name__}; "
                   "the PyTorch LIF runs for it")
        return "torch"
    return backend


def check_op_backend(backend: str, op: str) -> None:
    """An operator's ``backend`` argument, checked before anything runs."""
    if backend not in OP_BACKENDS:
        raise InputError(f"{op} backend must be one of {OP_BACKENDS}, got {backend!r}")
