"""Event array -> dense tensors the models eat.

``to_frames`` integrates events into ``T`` frames of shape ``[T, 2, H, W]`` (channel 0 = OFF,
channel 1 = ON), splitting the stream by equal time (``split_by='time'``) or by equal event
count (``split_by='number'``), the two modes of SpikingJelly's ``integrate_events_*``. One
``np.bincount`` over a flat index: no Python loop over events.
"""
from __future__ import annotations

import numpy as np

from .types import check_events


def frame_index_by_time(t: np.ndarray, n_frames: int, t_start: "int | None" = None, t_end: "int | None" = None) -> np.ndarray:
    """Frame of each event when ``[t_start, t_end]`` is cut into ``n_frames`` equal spans."""
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64)
    t0 = int(t[0]) if t_start is None else int(t_start)
    t1 = int(t[-1]) if t_end is None else int(t_end)
    span = max(t1 - t0, 1)
    idx = ((t.astype(np.int64) - t0) * n_frames) // span
    return np.clip(idx, 0, n_frames - 1)


def frame_index_by_number(n_events: int, n_frames: int) -> np.ndarray:
    """Frame of each event when the stream is cut into ``n_frames`` runs of (nearly) equal count."""
    return (np.arange(n_events, dtype=np.int64) * n_frames) // max(n_events, 1)


def to_frames(events: np.ndarray, sensor_size: "tuple[int, int]", n_frames: int, split_by: str = "time",
              binary: bool = False, dtype=np.float32) -> np.ndarray:
    """Integrate events into ``[n_frames, 2, H, W]`` counts (or 0/1 with ``binary=True``).

    An empty event array gives all-zero frames.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    check_events(events, sensor_size)
    W, H = sensor_size
    if split_by == "time":
        f = frame_index_by_time(events["t"], n_frames)
    elif split_by == "number":
        f = frame_index_by_number(len(events), n_frames)
    else:
        raise ValueError(f"split_by must be 'time' or 'number', got {split_by!r}")
    p = (events["p"] > 0).astype(np.int64)
    flat = ((f * 2 + p) * H + events["y"].astype(np.int64)) * W + events["x"].astype(np.int64)
    frames = np.bincount(flat, minlength=n_frames * 2 * H * W).reshape(n_frames, 2, H, W)
    if binary:
        frames = frames > 0
    return frames.astype(dtype)


class ToFrame:
    """Transform: event array -> ``[T, 2, H, W]`` float32 frames (see :func:`to_frames`)."""

    def __init__(self, sensor_size: "tuple[int, int]", n_frames: int, split_by: str = "time", binary: bool = False):
        self.sensor_size, self.n_frames, self.split_by, self.binary = tuple(sensor_size), n_frames, split_by, binary

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return to_frames(events, self.sensor_size, self.n_frames, self.split_by, self.binary)

    def __repr__(self) -> str:
        return f"ToFrame(sensor_size={self.sensor_size}, n_frames={self.n_frames}, split_by={self.split_by!r}, binary={self.binary})"
