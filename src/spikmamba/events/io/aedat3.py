"""AEDAT 3.1 (cAER / DV 1.x), the format of DVS128 Gesture.

Text header ``#!AER-DAT3.1`` ... ``#!END-HEADER``, then packets. Each packet starts with a
28-byte little-endian header (int16 type, int16 source, int32 event size, int32 timestamp
offset, int32 timestamp overflow, int32 capacity, int32 number, int32 valid) followed by
``number x size`` bytes. Polarity packets (type 1) hold 8-byte events: uint32 data (bit 0
valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and int32 timestamp; the full timestamp is
``overflow << 31 | timestamp``. Other packet types (frames, IMU, special) and events flagged
invalid are skipped and counted.
"""
from __future__ import annotations

import re

import numpy as np

from ...errors import InputError
from ._common import EventStream, file_size, read_header_lines
from .errors import EventFormatError
from .recording import Recording

MAGIC = b"#!AER-DAT3.1"
END = b"#!END-HEADER"
PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                          ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
POLARITY_EVENT = np.dtype([("data", "<u4"), ("t", "<i4")])
POLARITY_TYPE = 1
SENSORS = {b"DVS128": (128, 128), b"DAVIS240": (240, 180), b"DAVIS346": (346, 260), b"DVXPLORER": (640, 480)}


def sensor_from_header(header: list[bytes]):
    text = b"".join(header).upper()
    m = re.search(rb"SIZEX[^0-9]*(\d+).*?SIZEY[^0-9]*(\d+)", text, re.S)
    if m:
        return int(m.group(1)), int(m.group(2))
    for name, size in SENSORS.items():
        if name in text.replace(b"-", b""):
            return size
    return None


def stream_aedat3(path, sensor_size=None) -> EventStream:
    size = file_size(path)
    with open(path, "rb") as f:
        header, data_start = read_header_lines(f, b"#", end_marker=END)
    if not header or not header[0].startswith(MAGIC):
        raise EventFormatError(path, 0, f"expected an AEDAT 3.1 header starting with {MAGIC.decode()!r}")
    if header[-1].strip() != END:
        raise EventFormatError(path, data_start, f"the text header does not end with {END.decode()!r}")
    sensor = tuple(sensor_size) if sensor_size else sensor_from_header(header)

    def chunks(stream):
        offset = data_start
        with open(path, "rb") as f:
            f.seek(offset)
            while offset < size:
                if size - offset < PACKET_HEADER.itemsize:
                    raise EventFormatError(path, offset, f"truncated packet header: {PACKET_HEADER.itemsize} bytes "
                                                         f"expected, {size - offset} left")
                h = np.frombuffer(f.read(PACKET_HEADER.itemsize), dtype=PACKET_HEADER)[0]
                ev_size, number = int(h["size"]), int(h["number"])
                if ev_size <= 0 or number < 0:
                    raise EventFormatError(path, offset, f"corrupt packet header (event size {ev_size}, event number "
                                                         f"{number})")
                body = ev_size * number
                if offset + PACKET_HEADER.itemsize + body > size:
                    raise EventFormatError(
                        path,
                        offset,
                        f"truncated packet: its header announces {number} events of "
                        f"{ev_size} bytes but only {size - offset - PACKET_HEADER.itemsize}"
                        f" bytes follow",
                    )
                data = f.read(body)
                if int(h["type"]) == POLARITY_TYPE:
                    if ev_size != POLARITY_EVENT.itemsize:
                        raise EventFormatError(path, offset, f"polarity packet with {ev_size}-byte events; 8 expected")
                    ev = np.frombuffer(data, dtype=POLARITY_EVENT)
                    d = ev["data"].astype(np.int64)
                    valid = (d & 1) == 1
                    t = (np.int64(h["ts_overflow"]) << 31) | ev["t"].astype(np.int64)
                    stream.skipped += int((~valid).sum())
                    yield t[valid], (d[valid] >> 17) & 0x7FFF, (d[valid] >> 2) & 0x7FFF, (d[valid] >> 1) & 1
                else:
                    stream.skipped += number
                offset += PACKET_HEADER.itemsize + body

    return EventStream(path, "aedat3", sensor, (size - data_start) // POLARITY_EVENT.itemsize, chunks)


def read_aedat3(path, sensor_size=None) -> Recording:
    return stream_aedat3(path, sensor_size).collect()


def write_aedat3(path, events: np.ndarray, sensor_size=(128, 128), packet_events: int = 4096) -> None:
    """Write polarity packets (at most ``packet_events`` each; a new packet at every 2**31 µs overflow)."""
    t = events["t"].astype(np.int64)
    if len(t) and t.min() < 0:
        raise InputError("AEDAT 3.1 timestamps must be non-negative")
    data = (
        (events["x"].astype(np.int64) << 17)
        | (events["y"].astype(np.int64) << 2)
        | ((events["p"] > 0).astype(np.int64) << 1)
        | 1
    )
    overflow = t >> 31
    W, H = sensor_size
    with open(path, "wb") as f:
        f.write(MAGIC + b"\r\n#Format: RAW\r\n")
        f.write(f"#Source 1: spikmamba sizeX {W} sizeY {H}\r\n".encode())
        f.write(END + b"\r\n")
        start = 0
        while start < len(t):
            stop = min(start + packet_events, len(t))
            same = np.flatnonzero(overflow[start:stop] != overflow[start])
            if same.size:
                stop = start + int(same[0])
            h = np.zeros(1, dtype=PACKET_HEADER)
            h["type"], h["source"], h["size"] = POLARITY_TYPE, 1, POLARITY_EVENT.itemsize
            h["ts_offset"], h["ts_overflow"] = 4, overflow[start]
            h["capacity"] = h["number"] = h["valid"] = stop - start
            ev = np.empty(stop - start, dtype=POLARITY_EVENT)
            ev["data"], ev["t"] = data[start:stop], t[start:stop] & 0x7FFFFFFF
            f.write(h.tobytes() + ev.tobytes())
            start = stop
