"""AFE: the adaptive fine-grained event frames of ExACT (CVPR 2024) that SpikMamba's published
results use.

The stream is halved by event count, recursively, until the two halves of a segment look
alike: for a segment of N events, the per-pixel count images of its halves are cleaned by a
2x2 erosion then a 2x2 dilation (per polarity), and the segment is *sufficiently sampled* when
``200 * sum|A - B| / N <= threshold``. A sufficiently sampled segment gives one frame; a
segment whose halves hold at most ``min_events`` events gives two; otherwise both halves are
sampled recursively. Busy (fast-moving) parts of an action therefore get more frames.

Each frame has 3 channels on a white background, as published: channel 0 = 0 where an OFF
event fell, channel 1 = 0 where any event fell, channel 2 = 0 where an ON event fell, else 1.
The variable list of frames is reduced to ``n_frames`` by picking evenly spaced frames
(repeating frames when there are fewer), our choice since the published pre-sampled files do
not say. ``flip_vertical`` reproduces the published upside-down flip for DAVIS data.
Parameters (published): threshold 50, min_events 100000.
"""
from __future__ import annotations

import numpy as np

from . import _numba
from .types import EVENT_DTYPE, check_events, sensor_wh


def _counts(events, W, H):
    """``[2, H, W]`` (OFF, ON) counts (events already checked against the sensor)."""
    if _numba.AVAILABLE and events.dtype == EVENT_DTYPE:
        return _numba.counts(events, 0, len(events), W, H).astype(np.float32)
    flat = ((events["p"] > 0).astype(np.int64) * H + events["y"].astype(np.int64)) * W + events["x"].astype(np.int64)
    return np.bincount(flat, minlength=2 * H * W).reshape(2, H, W).astype(np.float32)


def _open2x2(img: np.ndarray) -> np.ndarray:
    """2x2 erosion then 2x2 dilation on the last two axes (the window covers the pixel and its
    upper/left neighbours for erosion, lower/right for dilation, so the opening is aligned)."""
    p = np.pad(img, [(0, 0)] * (img.ndim - 2) + [(1, 0), (1, 0)], constant_values=np.inf)
    ero = np.minimum(np.minimum(p[..., 1:, 1:], p[..., :-1, 1:]), np.minimum(p[..., 1:, :-1], p[..., :-1, :-1]))
    q = np.pad(ero, [(0, 0)] * (img.ndim - 2) + [(0, 1), (0, 1)], constant_values=-np.inf)
    return np.maximum(np.maximum(q[..., :-1, :-1], q[..., 1:, :-1]), np.maximum(q[..., :-1, 1:], q[..., 1:, 1:]))


def _cleaned_gray(events, W, H):
    return _open2x2(_counts(events, W, H)).sum(0)


def afe_segments(
    events: np.ndarray, sensor_size, threshold: float = 50.0, min_events: int = 100_000
) -> list[tuple[int, int]]:
    """``(start, stop)`` event-index ranges of the adaptive frames, in time order."""
    W, H = sensor_wh(sensor_size)
    out = []

    def visit(a: int, b: int):
        n = b - a
        half = n // 2
        if n < 2:
            out.append((a, b))
            return
        diff = np.abs(_cleaned_gray(events[a : a + half], W, H) - _cleaned_gray(events[a + half : b], W, H)).sum()
        if 200.0 * diff / n <= threshold:
            out.append((a, b))
        elif half <= min_events:
            out.extend([(a, a + half), (a + half, b)])
        else:
            visit(a, a + half)
            visit(a + half, b)

    visit(0, len(events))
    return out


def afe_frame(events: np.ndarray, W: int, H: int) -> np.ndarray:
    c = _counts(events, W, H)
    off, on = c[0] > 0, c[1] > 0
    return np.stack([~off, ~(off | on), ~on]).astype(np.float32)


def to_afe_frames(events: np.ndarray, sensor_size, n_frames: int, threshold: float = 50.0, min_events: int = 100_000,
                  flip_vertical: bool = False) -> np.ndarray:
    """``[n_frames, 3, H, W]`` AFE frames in [0, 1] (see the module docstring)."""
    check_events(events, sensor_size)
    W, H = sensor_wh(sensor_size)
    if len(events) == 0:
        return np.ones((n_frames, 3, H, W), dtype=np.float32)
    segs = afe_segments(events, sensor_size, threshold, min_events)
    pick = np.round(np.linspace(0, len(segs) - 1, n_frames)).astype(int)
    frames = np.stack([afe_frame(events[segs[i][0] : segs[i][1]], W, H) for i in pick])
    return frames[..., ::-1, :].copy() if flip_vertical else frames


class ToAFE:
    def __init__(
        self,
        sensor_size,
        n_frames: int,
        threshold: float = 50.0,
        min_events: int = 100_000,
        flip_vertical: bool = False,
    ):
        self.sensor_size, self.n_frames = tuple(sensor_size), n_frames
        self.threshold, self.min_events, self.flip_vertical = threshold, min_events, flip_vertical

    def __call__(self, events):
        return to_afe_frames(
            events, self.sensor_size, self.n_frames, self.threshold, self.min_events, self.flip_vertical
        )

    def __repr__(self):
        return (f"ToAFE(sensor_size={self.sensor_size}, n_frames={self.n_frames}, threshold={self.threshold}, "
                f"min_events={self.min_events}, flip_vertical={self.flip_vertical})")
