"""Helpers shared by the readers: chunked file access, output buffers, validation."""
from __future__ import annotations

import os

import numpy as np

from ..types import EVENT_DTYPE
from .errors import EventFormatError

#: Bytes read per chunk: large enough to amortise Python overhead, small next to the output.
CHUNK_BYTES = 1 << 20


def file_size(path) -> int:
    try:
        return os.path.getsize(path)
    except OSError as err:
        raise FileNotFoundError(f"cannot read event file {os.fspath(path)!r}: {err.strerror}") from None


def read_header_lines(
    f, prefix: bytes, end_marker: bytes | None = None, limit: int = 1 << 20
) -> tuple[list[bytes], int]:
    """Read the ``prefix``-started text lines at the start of a file; return them and the data offset.

    Stops at the first line that does not start with ``prefix`` (or after ``end_marker``).
    A header longer than ``limit`` bytes means the file is not what it claims to be.
    """
    lines, offset = [], 0
    f.seek(0)
    while True:
        line = f.readline(limit)
        if not line.startswith(prefix):
            break
        if not line.endswith(b"\n") and len(line) < limit:  # the file ended in the middle of this line
            raise EventFormatError(f.name, offset, f"the file ends inside its text header (a {len(line)}-byte line "
                                                   f"without its end, at byte {offset}): truncated")
        offset += len(line)
        lines.append(line)
        if offset > limit:
            raise EventFormatError(
                f.name,
                offset,
                f"text header longer than {limit} bytes; expected it to end with a line not starting with {prefix!r}",
            )
        if end_marker is not None and line.strip() == end_marker:
            break
    f.seek(offset)
    return lines, offset


class EventBuffer:
    """Grow-once output array: readers that know an upper bound on the event count fill it
    in place, so memory stays at about the final array's size (no list of chunks + concat)."""

    def __init__(self, capacity: int):
        self.data = np.empty(max(int(capacity), 0), dtype=EVENT_DTYPE)
        self.n = 0

    def append(self, t, x, y, p) -> None:
        k = len(t)
        if self.n + k > len(self.data):  # bound was an estimate: grow geometrically
            new = np.empty(max(2 * len(self.data), self.n + k), dtype=EVENT_DTYPE)
            new[: self.n] = self.data[: self.n]
            self.data = new
        s = self.data[self.n : self.n + k]
        s["t"], s["x"], s["y"], s["p"] = t, x, y, p
        self.n += k

    def result(self) -> np.ndarray:
        out = self.data[: self.n]
        return out.copy() if self.n < len(self.data) // 2 else out


def check_bounds(path, events: np.ndarray, sensor_size, what: str) -> None:
    """Coordinates beyond the declared sensor mean a corrupt file or a wrong camera setting."""
    if sensor_size is None or len(events) == 0:
        return
    W, H = sensor_size
    bad = (events["x"] >= W) | (events["y"] >= H)
    if bad.any():
        i = int(np.argmax(bad))
        raise EventFormatError(
            path, None,
            f"event {i} at (x={int(events['x'][i])}, y={int(events['y'][i])}) lies outside the {W}x{H} sensor "
            f"({int(bad.sum())} such events); {what}",
        )


class EventStream:
    """A recording read in chunks: iterate for structured event arrays in file order; the facts
    known from the header (``sensor_size``, ``format``, an upper bound ``capacity`` on the event
    count) are there before the first chunk, ``skipped`` (non-polarity records) grows as it goes.

    Every reader is a stream, and ``read_events`` collects one into a single array; a long
    recording can instead be processed chunk by chunk (``spikmamba predict --window``) and never
    sit whole in memory."""

    def __init__(self, path, fmt: str, sensor_size, capacity: int, chunks):
        self.path, self.format, self.sensor_size, self.capacity = path, fmt, sensor_size, capacity
        self.skipped = 0
        self._chunks = chunks  # a generator of (t, x, y, p) columns or structured arrays; it adds to .skipped

    def __iter__(self):
        for cols in self._chunks(self):
            if isinstance(cols, np.ndarray):
                chunk = cols
            else:
                t, x, y, p = cols
                chunk = np.empty(len(t), dtype=EVENT_DTYPE)
                chunk["t"], chunk["x"], chunk["y"], chunk["p"] = t, x, y, p
            if len(chunk):
                check_bounds(self.path, chunk, self.sensor_size, "pass the right sensor_size=")
                yield chunk

    def collect(self):
        """Every event in one array (grown once, in place), as a :class:`Recording`."""
        from ..types import check_allocation, physical_memory
        from .recording import Recording

        check_allocation(int(self.capacity or 0) * EVENT_DTYPE.itemsize,
                         f"{os.fspath(self.path)}: its {int(self.capacity or 0):,} events read whole",
                         "read it as a stream (spikmamba predict --window, show) or in parts", physical_memory())
        buf = EventBuffer(self.capacity)
        for chunk in self:
            buf.append(chunk["t"], chunk["x"], chunk["y"], chunk["p"])
        return Recording(buf.result(), self.sensor_size, self.format, self.skipped)
