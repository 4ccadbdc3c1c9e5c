"""The one in-memory event type: a structured NumPy array with fields ``t, x, y, p``.

``t`` is int64 microseconds, ``x``/``y`` uint16 pixel coordinates, ``p`` int8 polarity
(1 = ON / brightness up, 0 = OFF). Arrays are sorted by ``t``. The sensor size ``(W, H)``
travels beside the array (datasets expose it as ``sensor_size``), as in tonic.
"""
from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])


def make_events(t, x, y, p, sort: bool = True) -> np.ndarray:
    """Build an event array from columns (any integer-like sequences of equal length)."""
    t, x, y, p = (np.asarray(c) for c in (t, x, y, p))
    n = len(t)
    if not (len(x) == len(y) == len(p) == n):
        raise ValueError(f"event columns differ in length: t={n}, x={len(x)}, y={len(y)}, p={len(p)}")
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    if sort and n and np.any(np.diff(ev["t"]) < 0):
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


def check_events(events: np.ndarray, sensor_size: "tuple[int, int]") -> None:
    """Raise ValueError if ``events`` is not a valid event array for a ``(W, H)`` sensor."""
    if not isinstance(events, np.ndarray) or events.dtype.names is None or not {"t", "x", "y", "p"} <= set(events.dtype.names):
        raise ValueError("events must be a structured NumPy array with fields t, x, y, p (see spikmamba.events.EVENT_DTYPE)")
    W, H = sensor_size
    if len(events) and (events["x"].max() >= W or events["y"].max() >= H):
        raise ValueError(
            f"events lie outside the {W}x{H} sensor (max x={int(events['x'].max())}, max y={int(events['y'].max())}); "
            "pass the right sensor_size or crop the events first"
        )
