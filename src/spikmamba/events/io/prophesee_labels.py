"""Bounding-box labels of the Prophesee detection datasets (Gen1 ``*_bbox.npy``, 1Mpx ``*_bbox.npy``).

Each file is a NumPy structured array, one row per box: timestamp (``ts``, or ``t`` in the
oldest release) in microseconds, top-left ``x, y`` and ``w, h`` in pixels, ``class_id``,
``confidence`` and ``track_id``. We read it without pickle (``allow_pickle=False``), check the
fields and values, and return one dtype whichever release the file came from. Boxes are only
read here (detection heads are out of scope); classification and visualisation can use them.
"""
from __future__ import annotations

import warnings

import numpy as np

from .errors import EventFormatError

BBOX_DTYPE = np.dtype([("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "<i4"),
                       ("confidence", "<f4"), ("track_id", "<i8")])


def read_prophesee_bboxes(path, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """The boxes of ``path`` as a :data:`BBOX_DTYPE` array sorted by time (a warning if the file was not)."""
    try:
        raw = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated header, pickled objects, not an npy file at all
        raise EventFormatError(path, None, f"not a Prophesee bbox .npy ({type(err).__name__}: {err})") from None
    names = raw.dtype.names or ()
    time_field = "ts" if "ts" in names else "t"
    missing = [f for f in (time_field, "x", "y", "w", "h", "class_id") if f not in names]
    if raw.ndim != 1 or missing:
        raise EventFormatError(path, None, f"expected a 1-D structured array with fields ts (or t), x, y, w, h, "
                                           f"class_id[, confidence, track_id]; missing {missing or 'none'}, "
                                           f"shape {raw.shape}")
    out = np.empty(len(raw), BBOX_DTYPE)
    out["t"] = raw[time_field]
    for f in ("x", "y", "w", "h", "class_id"):
        out[f] = raw[f]
    out["confidence"] = raw["confidence"] if "confidence" in names else 1.0
    out["track_id"] = raw["track_id"] if "track_id" in names else -1
    geometry = np.stack([out[f] for f in ("x", "y", "w", "h")]) if len(out) else np.zeros((4, 0), np.float32)
    if not np.all(np.isfinite(geometry)):
        bad = int(np.flatnonzero(~np.isfinite(geometry).all(0))[0])
        raise EventFormatError(path, None, f"box {bad} has a non-finite coordinate")
    if np.any(out["w"] < 0) or np.any(out["h"] < 0):
        raise EventFormatError(path, None, f"box {int(np.flatnonzero((out['w'] < 0) | (out['h'] < 0))[0])} has a "
                                           f"negative width or height")
    if sensor_size is not None and len(out):
        W, H = sensor_size
        outside = (out["x"] + out["w"] < 0) | (out["y"] + out["h"] < 0) | (out["x"] >= W) | (out["y"] >= H)
        if np.any(outside):
            raise EventFormatError(path, None, f"box {int(np.flatnonzero(outside)[0])} lies outside the {W}x{H} sensor")
    if len(out) > 1 and np.any(np.diff(out["t"]) < 0):
        warnings.warn(f"{path}: box timestamps go backwards; sorted by time", stacklevel=2)
        out = out[np.argsort(out["t"], kind="stable")]
    return out
