"""Compiled single-pass loops for the representations, used when ``numba`` is installed.

Why: the vectorised NumPy paths make several passes over the events (an int64 pixel index, a
frame index, ``bincount``), each streaming the strided fields of the structured array; one
compiled loop reads each event once. Same definitions, same results: the tests compare every
kernel with its NumPy twin (values and dtypes, bit for bit). ``numba`` is optional
(``pip install spikmamba[fast]``); without it the NumPy paths run. ``SPIKMAMBA_NUMBA=0`` turns the
kernels off. The first call compiles them (about a second, cached on disk when the package
folder is writable).
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from .types import sensor_wh

try:
    if os.environ.get("SPIKMAMBA_NUMBA", "1") == "0":
        raise ImportError("turned off by SPIKMAMBA_NUMBA=0")
    import numba
except ImportError:  # optional: the NumPy paths are the reference and the fallback
    numba = None

AVAILABLE = numba is not None


@contextlib.contextmanager
def disabled():
    """Run the NumPy paths inside the ``with`` block (to time or test them beside the kernels)."""
    global AVAILABLE
    saved, AVAILABLE = AVAILABLE, False
    try:
        yield
    finally:
        AVAILABLE = saved


def _jit(fn):
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn


@_jit
def _frames_time(t, x, y, p, n_frames, W, H, out):
    """Counts into ``out [n_frames, 2, H, W]``: frame ``((t - t_min) * n_frames) // span``, clipped;
    returns the index of the first event outside the sensor or with p > 1 (-1: none). A sorted
    stream (the usual case) takes one pass: its first and last times are its extremes; a stream
    found unsorted on the way is counted again from a min/max pass."""
    n = t.shape[0]
    t0 = t[0]
    t1 = t[n - 1]
    span = max(t1 - t0, 1)
    # frame f starts at starts[f] = t0 + ceil(f * span / n_frames): ((t - t0) * n_frames) // span >= f
    # exactly when t >= starts[f]. In time order the frame only moves forward, so each event is a
    # comparison or two instead of an integer division (the loop's cost, at a million events)
    starts = np.empty(n_frames + 1, dtype=np.int64)
    for k in range(n_frames + 1):
        starts[k] = t0 + (k * span + n_frames - 1) // n_frames
    starts[n_frames] = t1 + 1  # the last frame takes everything to the end (the clip)
    f = 0
    for i in range(n):
        xi, yi, pi = x[i], y[i], p[i]
        if xi >= W or yi >= H or pi > 1 or pi < 0:
            return i
        ti = t[i]
        if ti < t0 or ti > t1:  # unsorted: the extremes are elsewhere
            out[:] = 0
            return _frames_time_unsorted(t, x, y, p, n_frames, W, H, out)
        if ti < starts[f]:  # back in time (unsorted within the extremes): the division
            f = min(((ti - t0) * n_frames) // span, n_frames - 1)
        while ti >= starts[f + 1]:
            f += 1
        out[f, pi, yi, xi] += 1
    return -1


@_jit
def _frames_time_unsorted(t, x, y, p, n_frames, W, H, out):
    n = t.shape[0]
    t0 = t[0]
    t1 = t[0]
    for i in range(n):
        if t[i] < t0:
            t0 = t[i]
        if t[i] > t1:
            t1 = t[i]
    span = max(t1 - t0, 1)
    for i in range(n):
        xi, yi, pi = x[i], y[i], p[i]
        if xi >= W or yi >= H or pi > 1 or pi < 0:
            return i
        f = ((t[i] - t0) * n_frames) // span
        if f >= n_frames:
            f = n_frames - 1
        out[f, pi, yi, xi] += 1
    return -1


@_jit
def _frames_number(x, y, p, n_frames, W, H, out):
    """Counts into ``out``: event ``i`` of ``n`` in frame ``(i * n_frames) // n``."""
    n = x.shape[0]
    for i in range(n):
        xi, yi, pi = x[i], y[i], p[i]
        if xi >= W or yi >= H or pi > 1 or pi < 0:
            return i
        out[(i * n_frames) // n, pi, yi, xi] += 1
    return -1


@_jit
def _voxel(t, x, y, p, n_bins, W, H, left_grid, right_grid):
    """The two halves of the bilinear voxel grid (left and right bin weights), accumulated in event
    order as the NumPy path's two ``bincount`` calls do, so their sum is bit-identical."""
    n = t.shape[0]
    t_first = np.float64(t[0])
    span = np.float64(t[n - 1]) - t_first
    scale = (n_bins - 1) / span if span > 0 else 0.0
    for i in range(n):
        xi, yi, pi = x[i], y[i], p[i]
        if xi >= W or yi >= H or pi > 1 or pi < 0:
            return i
        tn = (np.float64(t[i]) - t_first) * scale
        left = np.int64(np.floor(tn))
        if left < 0 or left >= n_bins:  # an unsorted stream reaches outside [t_first, t_last]
            return -2
        frac = tn - left
        pol = 1.0 if pi > 0 else -1.0
        left_grid[left, yi, xi] += pol * (1.0 - frac)
        if left + 1 < n_bins:
            right_grid[left + 1, yi, xi] += pol * frac
    return -1


@_jit
def _counts(x, y, p, a, b, W, H, out):
    """``out [2, H, W]`` = OFF/ON counts of events ``a:b`` (``p > 0`` is ON)."""
    for i in range(a, b):
        out[1 if p[i] > 0 else 0, y[i], x[i]] += 1


def frames(events: np.ndarray, sensor_size, n_frames: int, split_by: str) -> np.ndarray | int:
    """int32 counts ``[n_frames, 2, H, W]`` (exact up to 2**31 events in one bin), or the index of
    the first invalid event."""
    W, H = sensor_wh(sensor_size)
    out = np.zeros((n_frames, 2, H, W), dtype=np.int64 if len(events) >= 2**31 else np.int32)
    if len(events) == 0:
        return out
    x, y, p = events["x"], events["y"], events["p"]
    bad = (_frames_time(events["t"], x, y, p, n_frames, W, H, out) if split_by == "time"
           else _frames_number(x, y, p, n_frames, W, H, out))
    return out if bad < 0 else int(bad)


def voxel(events: np.ndarray, sensor_size, n_bins: int) -> np.ndarray | int:
    """float64 voxel grid ``[n_bins, H, W]`` (before the cast), or the index of the first invalid
    event, or -2 for an unsorted stream (left to the NumPy path)."""
    W, H = sensor_wh(sensor_size)
    left = np.zeros((n_bins, H, W), dtype=np.float64)
    right = np.zeros((n_bins, H, W), dtype=np.float64)
    bad = _voxel(events["t"], events["x"], events["y"], events["p"], n_bins, W, H, left, right)
    return left + right if bad == -1 else int(bad)


def counts(events: np.ndarray, a: int, b: int, W: int, H: int) -> np.ndarray:
    """int64 ``[2, H, W]`` counts of ``events[a:b]`` (bounds already checked)."""
    out = np.zeros((2, H, W), dtype=np.int64)
    _counts(events["x"], events["y"], events["p"], a, b, W, H, out)
    return out
