"""While a model is exported (ONNX), the fused kernels run their plain-op twins.

Why: the fast LIF (:mod:`.lif_kernel`), the surrogate spike and the time-blocked scan are custom
autograd functions; an exporter sees them as opaque Python calls it cannot write down. Each has
a twin made of ordinary tensor operations that the tests check equal (the per-step LIF loop, the
Heaviside forward, :func:`~.ssm.selective_scan.selective_scan_ref`), and those are what an
exporter records: the exported graph computes exactly what the fast path computes.
"""
from __future__ import annotations

import torch


def exporting() -> bool:
    """True while ``torch.onnx.export`` (or a TorchScript trace) records the model."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
