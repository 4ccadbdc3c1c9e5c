"""Voxel grid and event-count image.

The voxel grid (Zhu et al. 2019) spreads each event's polarity (+1 ON, -1 OFF) over the two
nearest of ``n_bins`` time bins with bilinear weights, so sub-bin timing survives
discretisation. Both are single ``np.bincount`` calls over flat indices.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from . import _numba
from .types import EVENT_DTYPE, check_events, sensor_wh


def to_voxel_grid(events: np.ndarray, sensor_size: tuple[int, int], n_bins: int, dtype=np.float32) -> np.ndarray:
    """``[n_bins, H, W]`` voxel grid; time normalised over the events' own span."""
    if n_bins < 1:
        raise InputError(f"n_bins must be >= 1, got {n_bins}")
    if len(events) and _numba.AVAILABLE and isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE \
            and sensor_size is not None:
        grid = _numba.voxel(events, sensor_size, n_bins)
        if not isinstance(grid, int):
            return grid.astype(dtype)
        if grid >= 0:  # an invalid event: the same message as the NumPy path
            check_events(events, sensor_size)
    check_events(events, sensor_size)
    W, H = sensor_wh(sensor_size)
    size = n_bins * H * W
    if len(events) == 0:
        return np.zeros((n_bins, H, W), dtype=dtype)
    t = events["t"].astype(np.float64)
    span = t[-1] - t[0]
    tn = (t - t[0]) * ((n_bins - 1) / span) if span > 0 else np.zeros_like(t)
    left = np.floor(tn).astype(np.int64)
    frac = tn - left
    pol = np.where(events["p"] > 0, 1.0, -1.0)
    pix = events["y"].astype(np.int64) * W + events["x"].astype(np.int64)
    grid = np.bincount(left * H * W + pix, weights=pol * (1.0 - frac), minlength=size)
    right = left + 1
    ok = right < n_bins
    grid += np.bincount(right[ok] * H * W + pix[ok], weights=(pol * frac)[ok], minlength=size)
    return grid.reshape(n_bins, H, W).astype(dtype)


def to_count_image(events: np.ndarray, sensor_size: tuple[int, int], dtype=np.float32) -> np.ndarray:
    """``[2, H, W]`` per-pixel event counts (channel 0 OFF, 1 ON)."""
    check_events(events, sensor_size)
    W, H = sensor_wh(sensor_size)
    flat = ((events["p"] > 0).astype(np.int64) * H + events["y"].astype(np.int64)) * W + events["x"].astype(np.int64)
    return np.bincount(flat, minlength=2 * H * W).reshape(2, H, W).astype(dtype)


class ToVoxelGrid:
    def __init__(self, sensor_size, n_bins: int):
        self.sensor_size, self.n_bins = tuple(sensor_size), n_bins

    def __call__(self, events):
        return to_voxel_grid(events, self.sensor_size, self.n_bins)

    def __repr__(self):
        return f"ToVoxelGrid(sensor_size={self.sensor_size}, n_bins={self.n_bins})"
