"""Selective state-space layers: the scan (reference, fast, CUDA dispatch) and Mamba blocks."""
from .linear_scan import linear_scan
from .mamba import Mamba, MambaBlock, RMSNorm
from .selective_scan import selective_scan_fast, selective_scan_fn, selective_scan_ref

__all__ = ["linear_scan", "Mamba", "MambaBlock", "RMSNorm", "selective_scan_fast", "selective_scan_fn",
           "selective_scan_ref"]
