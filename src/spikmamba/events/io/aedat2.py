"""AEDAT 2.0 (jAER): ``#``-prefixed text header, then big-endian (uint32 address, int32 µs) pairs.

Address layouts (as jAER writes them):

* DVS128: bit 0 polarity (0 = ON), bits 1-7 x (mirrored: x = 127 - field), bits 8-14 y.
* DAVIS240 / DAVIS346: bit 31 type (0 = DVS event; 1 = APS/IMU sample, skipped and counted),
  bit 10 external-input flag (skipped and counted), bit 11 polarity (0 = ON), bits 12-21 x
  (mirrored: x = W - 1 - field), bits 22-30 y.

The camera is taken from the header (``DVS128``, ``DAVIS240``, ``DAVIS346``) or from ``camera=``.
"""
from __future__ import annotations

import numpy as np

from ...errors import InputError
from ._common import CHUNK_BYTES, EventStream, file_size, read_header_lines
from .errors import EventFormatError
from .recording import Recording

MAGIC = b"#!AER-DAT2.0"
RECORD_DTYPE = np.dtype([("a", ">u4"), ("t", ">i4")])
CAMERAS = {"dvs128": (128, 128), "davis240": (240, 180), "davis346": (346, 260)}


def detect_camera(header: list[bytes]) -> str | None:
    text = b"".join(header).upper().replace(b"-", b"").replace(b" ", b"")
    for name in ("DAVIS346", "DAVIS240", "DVS128"):
        if name.encode() in text:
            return name.lower()
    return None


def decode_aedat2(addr: np.ndarray, t: np.ndarray, camera: str):
    """Addresses -> (t, x, y, p, keep mask) for the given camera layout."""
    W, H = CAMERAS[camera]
    a = addr.astype(np.int64)
    if camera == "dvs128":
        keep = np.ones(len(a), dtype=bool)
        x = 127 - ((a >> 1) & 0x7F)
        y = (a >> 8) & 0x7F
        p = 1 - (a & 1)
    else:
        keep = ((a >> 31) & 1 == 0) & ((a >> 10) & 1 == 0)
        x = W - 1 - ((a >> 12) & 0x3FF)
        y = (a >> 22) & 0x1FF
        p = 1 - ((a >> 11) & 1)
    return t, x, y, p, keep


def stream_aedat2(path, camera: str | None = None) -> EventStream:
    size = file_size(path)
    with open(path, "rb") as f:
        header, offset = read_header_lines(f, b"#")
    if not header or not header[0].startswith(MAGIC):
        raise EventFormatError(path, 0, f"expected an AEDAT 2.0 header starting with {MAGIC.decode()!r}")
    cam = camera or detect_camera(header)
    if cam not in CAMERAS:
        raise EventFormatError(path, 0, "the AEDAT 2.0 header does not name the camera; pass "
                                        f"camera= one of {sorted(CAMERAS)} (address layouts differ)")
    body = size - offset
    if body % RECORD_DTYPE.itemsize:
        end = size - body % RECORD_DTYPE.itemsize
        raise EventFormatError(path, end, f"truncated event: 8-byte address/timestamp pairs expected, "
                                          f"{body % RECORD_DTYPE.itemsize} stray byte(s) at the end")

    def chunks(stream):
        with open(path, "rb") as f:
            f.seek(offset)
            while True:
                rec = np.fromfile(f, dtype=RECORD_DTYPE, count=CHUNK_BYTES // RECORD_DTYPE.itemsize)
                if rec.size == 0:
                    return
                t, x, y, p, keep = decode_aedat2(rec["a"], rec["t"], cam)
                stream.skipped += int((~keep).sum())
                yield t[keep], x[keep], y[keep], p[keep]

    stream = EventStream(path, "aedat2", CAMERAS[cam], body // RECORD_DTYPE.itemsize, chunks)
    stream.camera = cam
    return stream


def read_aedat2(path, camera: str | None = None) -> Recording:
    stream = stream_aedat2(path, camera)
    try:
        return stream.collect()
    except EventFormatError as err:  # out of the sensor: say which camera layout was assumed
        if "lies outside" in str(err):
            raise EventFormatError(path, None, f"{err.detail.rsplit(';', 1)[0]}; is camera={stream.camera!r} right "
                                               f"for this file?") from None
        raise


def write_aedat2(path, events: np.ndarray, sensor_size=(128, 128), camera: str | None = None) -> None:
    """Write DVS128 or DAVIS AEDAT 2.0 (camera from ``sensor_size`` when not given)."""
    cam = camera or {v: k for k, v in CAMERAS.items()}.get(tuple(sensor_size))
    if cam not in CAMERAS:
        raise InputError(f"AEDAT 2.0 address layouts exist for {CAMERAS}; got sensor_size={sensor_size}")
    W, H = CAMERAS[cam]
    x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
    off = 1 - (events["p"] > 0).astype(np.int64)
    if cam == "dvs128":
        a = ((127 - x) << 1) | (y << 8) | off
    else:
        a = ((W - 1 - x) << 12) | (y << 22) | (off << 11)
    rec = np.empty(len(events), dtype=RECORD_DTYPE)
    rec["a"], rec["t"] = a, events["t"]
    with open(path, "wb") as f:
        f.write(MAGIC + b"\r\n# This is a raw AE data file created by spikmamba\r\n")
        f.write(f"# HardwareInterface: {cam.upper()}\r\n".encode())
        f.write(rec.tobytes())
