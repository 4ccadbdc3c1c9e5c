"""N-MNIST / N-Caltech101 ``.bin`` (also the ``.bs2`` files): 40-bit big-endian events.

Each event is 5 bytes: x (8 bits), y (8 bits), polarity (1 bit, 1 = ON), timestamp (23 bits, µs)
— the layout of Orchard et al.'s ``Read_Ndataset.m``. The format carries no sensor size
(N-MNIST is 34x34, N-Caltech101 at most 240x180): datasets supply it.
"""
from __future__ import annotations

import numpy as np

from ...errors import InputError
from ._common import CHUNK_BYTES, EventStream, file_size
from .errors import EventFormatError
from .recording import Recording

RECORD = 5


def decode_nbin(raw: np.ndarray):
    """``[n, 5]`` uint8 records -> (t, x, y, p) columns."""
    t = ((raw[:, 2] & 0x7F).astype(np.int64) << 16) | (raw[:, 3].astype(np.int64) << 8) | raw[:, 4]
    return t, raw[:, 0], raw[:, 1], raw[:, 2] >> 7


def stream_nbin(path) -> EventStream:
    size = file_size(path)
    if size == 0:
        raise EventFormatError(
            path, 0, "empty file (0 bytes): no events; an N-MNIST-format recording holds at least one 5-byte event"
        )
    if size % RECORD:
        raise EventFormatError(
            path,
            size - size % RECORD,
            f"truncated event: the file holds 5-byte events but ends with {size % RECORD} stray byte(s)",
        )

    def chunks(stream):
        per_chunk = CHUNK_BYTES // RECORD
        with open(path, "rb") as f:
            while True:
                raw = np.fromfile(f, dtype=np.uint8, count=per_chunk * RECORD)
                if raw.size == 0:
                    return
                yield decode_nbin(raw.reshape(-1, RECORD))

    return EventStream(path, "nbin", None, size // RECORD, chunks)


def read_nbin(path) -> Recording:
    return stream_nbin(path).collect()


def encode_nbin(events: np.ndarray) -> bytes:
    t = events["t"].astype(np.int64)
    if len(events) and (t.min() < 0 or t.max() >= 1 << 23):
        raise InputError("N-MNIST .bin timestamps must lie in [0, 2**23) µs; shift the events to start at 0 first")
    if len(events) and (events["x"].max() > 255 or events["y"].max() > 255):
        raise InputError("N-MNIST .bin coordinates must fit in 8 bits")
    raw = np.empty((len(events), RECORD), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = events["x"], events["y"]
    raw[:, 2] = ((events["p"] > 0).astype(np.int64) << 7) | (t >> 16)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return raw.tobytes()


def write_nbin(path, events: np.ndarray, sensor_size=None) -> None:
    with open(path, "wb") as f:
        f.write(encode_nbin(events))

