"""The one in-memory event type: a structured NumPy array with fields ``t, x, y, p``.

``t`` is int64 microseconds, ``x``/``y`` uint16 pixel coordinates, ``p`` int8 polarity
(1 = ON / brightness up, 0 = OFF). Arrays are sorted by ``t``. The sensor size ``(W, H)``
travels beside the array (datasets expose it as ``sensor_size``), as in tonic.
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..errors import InputError

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])
#: the latest timestamp an event can have: window and frame ends past it are clipped to it before
#: numpy compares them with ``t`` (a Python int beyond int64 overflows there)
T_END = 2**63 - 1


def check_integer_column(name: str, col: np.ndarray, lo: int, hi: int) -> None:
    """Raise ValueError unless every value of ``col`` is a finite integer in [lo, hi] (shared by
    :func:`make_events` and the array-file readers; validates without copying the column)."""
    if col.dtype.kind == "f":
        if not np.all(np.isfinite(col)):
            bad = int(np.flatnonzero(~np.isfinite(col))[0])
            raise InputError(f"event column {name} holds a non-finite value ({col[bad]}) at index {bad}; "
                             "NaN and inf are not event values")
        if np.any(col != np.round(col)):
            bad = int(np.flatnonzero(col != np.round(col))[0])
            raise InputError(f"event column {name} holds a fractional value ({col[bad]}) at index {bad}; "
                             "timestamps must be integer microseconds (multiply seconds by 1e6), "
                             "coordinates whole pixels")
    elif col.dtype.kind not in "iub" and len(col):
        raise InputError(f"event column {name} must be integer-like, got dtype {col.dtype}")
    if len(col) and (col.min() < lo or col.max() > hi):
        bad = int(np.flatnonzero((col < lo) | (col > hi))[0])
        raise InputError(f"event column {name} has {col[bad]} at index {bad}, outside [{lo}, {hi}]")


def make_events(t, x, y, p, sort: bool = True) -> np.ndarray:
    """Build an event array from columns (integer-like sequences of equal length).

    Values are checked, never wrapped or truncated: NaN/inf, fractional values and negative
    coordinates raise ``ValueError``. Polarity may be given as {0, 1} or {-1, 1} (-1 becomes 0).
    """
    t, x, y, p = (np.asarray(c) for c in (t, x, y, p))
    n = len(t)
    if not (len(x) == len(y) == len(p) == n):
        raise InputError(f"event columns differ in length: t={n}, x={len(x)}, y={len(y)}, p={len(p)}")
    for name, col, lo, hi in (("t", t, -2**63, 2**63 - 1), ("x", x, 0, 2**16 - 1), ("y", y, 0, 2**16 - 1),
                              ("p", p, -1, 1)):
        check_integer_column(name, col, lo, hi)
    if np.any(p == -1):
        if np.any(p == 0):
            raise InputError("polarity mixes -1, 0 and 1; use {0, 1} or {-1, 1}")
        p = (p > 0).astype(np.int64)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    return sort_by_time(ev) if sort else ev


def sort_by_time(events: np.ndarray) -> np.ndarray:
    """``events`` in time order (stable: equal timestamps keep their order); itself when already so."""
    return time_sorted(events)[0]


def time_sorted(events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sort_by_time(events), their times as one contiguous int64 array)``: the times are read
    out of the strided field once, for the order check, the sort and a caller's searches alike."""
    t = np.ascontiguousarray(events["t"])
    if len(t) > 1 and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        return events[order], t[order]
    return events, t


def concat_events(parts: list) -> np.ndarray:
    """Event arrays joined, in order, as :data:`EVENT_DTYPE`. Why not ``np.concatenate``: on a
    packed structured dtype it copies field by field, element by element (3.3 ms for 180,000
    events); joined as bytes it is a plain copy, about 20 times faster, and byte for byte the same."""
    parts = [np.ascontiguousarray(p, dtype=EVENT_DTYPE) for p in parts]
    if not parts:
        return np.empty(0, EVENT_DTYPE)
    return np.concatenate([p.view(np.uint8) for p in parts]).view(EVENT_DTYPE)


def sensor_wh(sensor_size) -> tuple[int, int]:
    """``(W, H)`` from ``(W, H)`` or tonic's ``(W, H, P)`` (``P``, the polarity count, 1 or 2)."""
    if sensor_size is None:
        raise InputError("sensor_size is None: this recording's file does not state its sensor size (N-MNIST "
                         ".bin/.bs2 and .npy files never do, some DAT and AEDAT files do not); pass (width, height), "
                         "e.g. read_events(path, sensor_size=(34, 34)) for N-MNIST")
    size = tuple(int(v) for v in sensor_size)
    if len(size) == 3 and size[2] in (1, 2):
        return size[0], size[1]
    if len(size) != 2:
        raise InputError(
            f"sensor_size must be (width, height) or tonic's (width, height, polarities), got {sensor_size}"
        )
    return size


def check_events(events: np.ndarray, sensor_size: tuple[int, int]) -> None:
    """Raise ValueError if ``events`` is not a valid event array for a ``(W, H)`` sensor."""
    if (
        not isinstance(events, np.ndarray)
        or events.dtype.names is None
        or not {"t", "x", "y", "p"} <= set(events.dtype.names)
    ):
        raise InputError(
            "events must be a structured NumPy array with fields t, x, y, p (see spikmamba.events.EVENT_DTYPE)"
        )
    W, H = sensor_wh(sensor_size)
    if len(events) and (events["x"].max() >= W or events["y"].max() >= H):
        raise InputError(
            f"events lie outside the {W}x{H} sensor (max x={int(events['x'].max())}, max y={int(events['y'].max())}); "
            "pass the right sensor_size or crop the events first"
        )
    p = events["p"]
    if len(events) and (p.view(np.uint8).max() > 1 if p.dtype == np.int8 else (p.min() < 0 or p.max() > 1)):
        raise InputError("event polarity must be 0 (OFF) or 1 (ON); map {-1, 1} with make_events or p = p > 0")


#: the longest duration a user may give (about 31 years, in µs): far past any recording, far from int64's end
MAX_DURATION_US = 10**15


def duration_us(ms, option: str) -> int:
    """A duration a user gave in milliseconds (``--window``, ``--stride``, ``--frame-ms``) as whole
    microseconds, the resolution of event timestamps: finite, positive, at least 1 µs once rounded,
    at most :data:`MAX_DURATION_US`. The error names the option."""
    try:
        value = float(ms)
    except (TypeError, ValueError):
        raise InputError(f"{option} must be a number of milliseconds, got {str(ms)[:40]!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise InputError(f"{option} must be a finite number of milliseconds, got {value}")
    if value <= 0:
        raise InputError(f"{option} must be > 0 ms, got {value:g}")
    us = round(value * 1e3)
    if us < 1:
        raise InputError(f"{option} {value:g} ms is below 1 µs, the resolution of event timestamps")
    if us > MAX_DURATION_US:
        raise InputError(f"{option} {value:g} ms is longer than {MAX_DURATION_US // 10**9:,} s; give a duration "
                         f"in milliseconds")
    return int(us)


#: the most memory one input or frame buffer may take before a clear error (a crafted sensor size
#: of 100000x100000 asked numpy for 596 GiB)
MEMORY_BUDGET = 2 << 30


def physical_memory() -> int:
    """Bytes of memory this machine has (a large number where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 50


def check_allocation(nbytes: int, what: str, fix: str, limit: int | None = None) -> None:
    """Refuse, naming ``what`` and ``fix``, an allocation above ``limit`` (default :data:`MEMORY_BUDGET`)."""
    limit = MEMORY_BUDGET if limit is None else limit
    if nbytes > limit:
        raise InputError(f"{what} would take {nbytes / 2**30:,.1f} GiB, more than the {limit / 2**30:,.1f} GiB "
                         f"allowed; {fix}")
