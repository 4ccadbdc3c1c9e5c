"""Selective state-space layers: the scan (reference, fast, CUDA dispatch), Mamba blocks, SS2D."""
from .linear_scan import linear_scan
from .mamba import Mamba, MambaBlock, RMSNorm
from .selective_scan import selective_scan_fast, selective_scan_fn, selective_scan_ref
from .ss2d import SS2D, cross_merge, cross_scan

__all__ = [
    "SS2D",
    "cross_merge",
    "cross_scan",
    "linear_scan",
    "Mamba",
    "MambaBlock",
    "RMSNorm",
    "selective_scan_fast",
    "selective_scan_fn",
    "selective_scan_ref",
]
