"""Prophesee recordings: DAT (Gen1, N-CARS), EVT 2.0 and EVT 3.0 ``.raw``.

* DAT: ``%`` text header, then 1 byte event type and 1 byte event size, then little-endian
  (uint32 timestamp µs, uint32 data) with x = bits 0-13, y = bits 14-27, polarity = bits 28-31.
* EVT 2.0: ``%`` header ending ``% end``, then little-endian 32-bit words; the top 4 bits are
  the type: 0 CD_OFF / 1 CD_ON (6 low timestamp bits, 11-bit x, 11-bit y), 8 EVT_TIME_HIGH
  (the upper 28 timestamp bits); triggers (10), vendor words (14) and continuations (15) are
  skipped and counted. Decoded vectorised: the time-high word in force is found with a running
  maximum over word indices, so the file is streamed in chunks with one word of state.
* EVT 3.0 (16-bit words with vectorised events): decoded by ``expelliarmus`` (NumPy-only,
  maintained) after we check the header.
"""
from __future__ import annotations

import re

import numpy as np

from ..types import EVENT_DTYPE
from ._common import CHUNK_BYTES, EventBuffer, check_bounds, file_size, read_header_lines
from .errors import EventFormatError
from .recording import Recording

DAT_RECORD = np.dtype([("t", "<u4"), ("d", "<u4")])
CD_OFF, CD_ON, TIME_HIGH = 0x0, 0x1, 0x8
KNOWN_EVT2 = {CD_OFF, CD_ON, TIME_HIGH, 0xA, 0xE, 0xF}


def sensor_from_header(header: "list[bytes]"):
    """Sensor ``(W, H)`` from a Prophesee text header (geometry, width/height, or the plugin)."""
    text = b"".join(header).decode("latin-1").lower()
    m = re.search(r"geometry\s+(\d+)x(\d+)", text)
    if m:
        return int(m.group(1)), int(m.group(2))
    w, h = re.search(r"width[\s=]+(\d+)", text), re.search(r"height[\s=]+(\d+)", text)
    if w and h:
        return int(w.group(1)), int(h.group(1))
    if re.search(r"gen4|gen41|imx636|gen31", text):
        return 1280, 720
    if "gen3" in text:
        return 640, 480
    return None


def read_dat(path, sensor_size=None) -> Recording:
    size = file_size(path)
    with open(path, "rb") as f:
        header, offset = read_header_lines(f, b"%")
        kind = f.read(2)
        if len(kind) < 2:
            raise EventFormatError(path, offset, "truncated DAT file: the event type/size bytes are missing")
        if kind[1] != DAT_RECORD.itemsize:
            raise EventFormatError(path, offset + 1, f"DAT event size {kind[1]}; 8 expected (CD events)")
        offset += 2
        body = size - offset
        if body % DAT_RECORD.itemsize:
            raise EventFormatError(path, size - body % 8, f"truncated event: 8-byte events expected, {body % 8} stray byte(s) at the end")
        sensor = tuple(sensor_size) if sensor_size else sensor_from_header(header)
        buf = EventBuffer(body // 8)
        while True:
            rec = np.fromfile(f, dtype=DAT_RECORD, count=CHUNK_BYTES // 8)
            if rec.size == 0:
                break
            d = rec["d"]
            buf.append(rec["t"], d & 0x3FFF, (d >> 14) & 0x3FFF, (d >> 28) & 0xF)
    events = buf.result()
    if len(events) and events["p"].max() > 1:
        raise EventFormatError(path, offset, f"polarity values up to {int(events['p'].max())}; DAT CD events carry 0 or 1")
    check_bounds(path, events, sensor, "pass the right sensor_size=")
    return Recording(events, sensor, "dat")


def write_dat(path, events: np.ndarray, sensor_size=(304, 240)) -> None:
    rec = np.empty(len(events), dtype=DAT_RECORD)
    rec["t"] = events["t"]
    rec["d"] = events["x"].astype(np.uint32) | (events["y"].astype(np.uint32) << 14) | ((events["p"] > 0).astype(np.uint32) << 28)
    W, H = sensor_size
    with open(path, "wb") as f:
        f.write(f"% Data file containing Event2d events.\n% Version 2\n% Width {W}\n% Height {H}\n".encode())
        f.write(bytes([0, 8]) + rec.tobytes())


def _raw_header(path):
    with open(path, "rb") as f:
        header, offset = read_header_lines(f, b"%")
    return header, offset


def read_evt2(path, sensor_size=None) -> Recording:
    size = file_size(path)
    header, offset = _raw_header(path)
    body = size - offset
    if body % 4:
        raise EventFormatError(path, size - body % 4, f"truncated word: EVT 2.0 is made of 4-byte words, {body % 4} stray byte(s) at the end")
    sensor = tuple(sensor_size) if sensor_size else sensor_from_header(header)
    buf, skipped, time_high = EventBuffer(body // 4), 0, 0
    with open(path, "rb") as f:
        f.seek(offset)
        pos = offset
        while True:
            w = np.fromfile(f, dtype="<u4", count=CHUNK_BYTES // 4)
            if w.size == 0:
                break
            kind = w >> 28
            unknown = ~np.isin(kind, list(KNOWN_EVT2))
            if unknown.any():
                i = int(np.argmax(unknown))
                raise EventFormatError(path, pos + 4 * i, f"unknown EVT 2.0 word type {int(kind[i]):#x}; "
                                                          "is this an EVT 3.0 or a corrupt file?")
            is_th = kind == TIME_HIGH
            # index of the latest time-high word at or before each word (-1: the one carried in)
            last = np.maximum.accumulate(np.where(is_th, np.arange(w.size), -1))
            high = np.where(last >= 0, w[np.maximum(last, 0)].astype(np.int64) & 0x0FFFFFFF, time_high)
            cd = kind <= CD_ON
            ww = w[cd].astype(np.int64)
            buf.append((high[cd] << 6) | ((ww >> 22) & 0x3F), (ww >> 11) & 0x7FF, ww & 0x7FF, kind[cd])
            skipped += int((~cd & ~is_th).sum())
            if is_th.any():
                time_high = int(w[np.flatnonzero(is_th)[-1]]) & 0x0FFFFFFF
            pos += 4 * w.size
    events = buf.result()
    check_bounds(path, events, sensor, "pass the right sensor_size=")
    return Recording(events, sensor, "evt2", skipped)


def write_evt2(path, events: np.ndarray, sensor_size=(640, 480)) -> None:
    """Encode events as EVT 2.0: a time-high word whenever the upper timestamp bits change."""
    t = events["t"].astype(np.int64)
    if len(t) and (t.min() < 0 or np.any(np.diff(t) < 0)):
        raise ValueError("EVT 2.0 needs sorted, non-negative timestamps")
    high = t >> 6
    new_high = np.ones(len(t), dtype=bool)
    new_high[1:] = high[1:] != high[:-1]
    cd = ((events["p"] > 0).astype(np.int64) << 28) | ((t & 0x3F) << 22) | (events["x"].astype(np.int64) << 11) | events["y"].astype(np.int64)
    n = len(t) + int(new_high.sum())
    words = np.empty(n, dtype="<u4")
    pos = np.arange(len(t)) + np.cumsum(new_high)  # each event slot, after its time-high words
    words[pos] = cd
    words[pos[new_high] - 1] = (TIME_HIGH << 28) | (high[new_high] & 0x0FFFFFFF)
    W, H = sensor_size
    with open(path, "wb") as f:
        f.write(f"% evt 2.0\n% format EVT2;height={H};width={W}\n% geometry {W}x{H}\n% end\n".encode())
        f.write(words.tobytes())


def read_evt3(path, sensor_size=None) -> Recording:
    try:
        from expelliarmus import Wizard
    except ImportError:
        raise ImportError("reading EVT 3.0 needs the 'expelliarmus' package: pip install expelliarmus "
                          "(or pip install 'spikmamba[io]')") from None
    size = file_size(path)
    header, offset = _raw_header(path)
    if (size - offset) % 2:
        raise EventFormatError(path, size - 1, "truncated word: EVT 3.0 is made of 2-byte words, 1 stray byte at the end")
    sensor = tuple(sensor_size) if sensor_size else sensor_from_header(header)
    try:
        arr = Wizard(encoding="evt3").read(str(path))
    except Exception as err:
        raise EventFormatError(path, None, f"EVT 3.0 decoding failed ({err})") from None
    events = np.empty(len(arr), dtype=EVENT_DTYPE)
    for k in "txyp":
        events[k] = arr[k]
    check_bounds(path, events, sensor, "pass the right sensor_size=")
    return Recording(events, sensor, "evt3")


def write_evt3(path, events: np.ndarray, sensor_size=(1280, 720)) -> None:
    """Encode EVT 3.0 with ``expelliarmus`` (used for round-trip tests and conversions)."""
    from expelliarmus import Wizard

    arr = np.empty(len(events), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    for k in "txyp":
        arr[k] = events[k]
    Wizard(encoding="evt3").save(str(path), arr)
