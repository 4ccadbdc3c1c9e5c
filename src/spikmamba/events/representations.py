"""Event array -> dense tensors the models eat.

``to_frames`` integrates events into ``T`` frames of shape ``[T, 2, H, W]`` (channel 0 = OFF,
channel 1 = ON), splitting the stream by equal time (``split_by='time'``) or by equal event
count (``split_by='number'``), the two modes of SpikingJelly's ``integrate_events_*``. Each frame
of a sorted stream is a contiguous run of events, so frames are ``np.bincount`` calls over runs
found by binary search: no Python loop over events, no per-event frame index.
"""
from __future__ import annotations

import bisect

import numpy as np

from ..errors import InputError
from . import _numba
from .types import EVENT_DTYPE, check_events, sensor_wh


def frame_index_by_time(
    t: np.ndarray, n_frames: int, t_start: int | None = None, t_end: int | None = None
) -> np.ndarray:
    """Frame of each event when ``[t_start, t_end]`` is cut into ``n_frames`` equal spans."""
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64)
    t0 = int(t[0]) if t_start is None else int(t_start)
    t1 = int(t[-1]) if t_end is None else int(t_end)
    span = max(t1 - t0, 1)
    idx = ((t.astype(np.int64) - t0) * n_frames) // span
    return np.clip(idx, 0, n_frames - 1)


def _count_frame_bounds(n_events: int, n_frames: int) -> np.ndarray:
    """Start of each frame (and the end) when ``n_events`` are cut into ``n_frames`` runs of (nearly)
    equal count: event ``i`` is in frame ``floor(i * n_frames / n_events)``, i.e. frame ``k`` starts
    at ``ceil(k * n_events / n_frames)``."""
    return np.array([-(-k * n_events // n_frames) for k in range(n_frames + 1)], dtype=np.int64)


def _pixel_index(events: np.ndarray, W: int, H: int) -> np.ndarray:
    """``(p * H + y) * W + x`` per event (channel 0 = OFF, 1 = ON), int64."""
    pixel = events["p"].astype(np.int64)  # 0/1, checked by check_events
    pixel *= H
    pixel += events["y"]
    pixel *= W
    pixel += events["x"]
    return pixel


def _is_sorted(t: np.ndarray) -> bool:
    return bool(np.all(t[1:] >= t[:-1]))


def _time_frame_bounds(t: np.ndarray, n_frames: int) -> np.ndarray:
    """Start of each frame in a sorted ``t`` (and the end), the same split as :func:`frame_index_by_time`:
    event ``i`` is in frame ``k`` iff ``k*span <= (t_i - t0)*n_frames < (k+1)*span``, i.e.
    ``t_i - t0 >= ceil(k*span/n_frames)``; the last event (``t = t1``) belongs to the last frame."""
    t0, t1 = int(t[0]), int(t[-1])
    span = max(t1 - t0, 1)
    starts = [t0 + -(-k * span // n_frames) for k in range(1, n_frames)]
    # bisect reads ~log2(n) elements per boundary; np.searchsorted would first copy the strided
    # field of the structured array into a contiguous one (20 ms at 1e7 events)
    return np.array([0] + [bisect.bisect_left(t, s) for s in starts] + [len(t)], dtype=np.int64)


def to_frames(events: np.ndarray, sensor_size: tuple[int, int], n_frames: int, split_by: str = "time",
              binary: bool = False, dtype=np.float32) -> np.ndarray:
    """Integrate events into ``[n_frames, 2, H, W]`` counts (or 0/1 with ``binary=True``).

    ``split_by='time'`` cuts [earliest, latest] timestamp into equal spans; ``'number'`` cuts the
    array, in its order, into runs of (nearly) equal count. An empty event array gives all-zero frames.
    """
    if n_frames < 1:
        raise InputError(f"n_frames must be >= 1, got {n_frames}")
    if split_by not in ("time", "number"):
        raise InputError(f"split_by must be 'time' or 'number', got {split_by!r}")
    if _numba.AVAILABLE and isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE and sensor_size is not None:
        frames = _numba.frames(events, sensor_size, n_frames, split_by)
        if isinstance(frames, int):  # an invalid event: the same message as the NumPy path
            check_events(events, sensor_size)
            raise AssertionError(f"event {frames} failed the compiled bounds check but not check_events")
        if binary:
            frames = frames > 0
        return frames.astype(dtype)
    check_events(events, sensor_size)
    W, H = sensor_wh(sensor_size)
    pixel = _pixel_index(events, W, H)
    n = len(events)
    if split_by == "number":
        bounds = _count_frame_bounds(n, n_frames)
    elif n and _is_sorted(events["t"]):  # each frame is one contiguous run, found by binary search
        bounds = _time_frame_bounds(events["t"], n_frames)
    else:  # unsorted (or empty) stream: a frame index per event, over the earliest..latest time
        t = events["t"]
        f = frame_index_by_time(t, n_frames, *((int(t.min()), int(t.max())) if n else (None, None)))
        frames = np.bincount(f * (2 * H * W) + pixel, minlength=n_frames * 2 * H * W).reshape(n_frames, 2, H, W)
        bounds = None
    if bounds is not None:  # contiguous runs: no per-event frame index (an int64 multiply, divide, clip)
        bins = 2 * H * W
        if n > n_frames * bins:  # many events per bin: one bincount per run (measured fastest at 1e6+)
            frames = np.stack([np.bincount(pixel[a:b], minlength=bins) for a, b in zip(bounds[:-1], bounds[1:])])
        else:  # few: one bincount, each run offset by its frame (T small bincounts cost more)
            pixel += np.repeat(np.arange(n_frames, dtype=np.int64) * bins, np.diff(bounds))
            frames = np.bincount(pixel, minlength=n_frames * bins)
        frames = frames.reshape(n_frames, 2, H, W)
    if binary:
        frames = frames > 0
    return frames.astype(dtype)


class ToFrame:
    """Transform: event array -> ``[T, 2, H, W]`` float32 frames (see :func:`to_frames`)."""

    def __init__(self, sensor_size: tuple[int, int], n_frames: int, split_by: str = "time", binary: bool = False):
        self.sensor_size, self.n_frames, self.split_by, self.binary = tuple(sensor_size), n_frames, split_by, binary

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return to_frames(events, self.sensor_size, self.n_frames, self.split_by, self.binary)

    def __repr__(self) -> str:
        return (f"ToFrame(sensor_size={self.sensor_size}, n_frames={self.n_frames}, split_by={self.split_by!r}, "
                f"binary={self.binary})")
