"""What the PyTorch and the Triton multi-step LIF share: the charge coefficients and the
reduction of a broadcast gradient. A leaf; both kernels and the operator import it."""
from __future__ import annotations

import torch


def charge_coefficients(k: float, v_reset: float | None, decay_input: bool) -> tuple[float, float, float]:
    """``(a, b, c)`` of the charge ``h = a v + b x + c`` (see ``nn/lif_kernel.py``)."""
    return 1.0 - k, (k if decay_input else 1.0), (k * v_reset if v_reset is not None else 0.0)


def sum_to_shape(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Reduce a broadcast gradient back to ``shape`` (for a scalar or broadcast initial v)."""
    if g.shape == shape:
        return g
    lead = g.dim() - len(shape)
    g = g.sum(dim=tuple(range(lead))) if lead > 0 else g
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(dim=dims, keepdim=True) if dims else g
