"""Live event input: the AEDAT 4 byte stream DV serves over TCP (``tcp://HOST:PORT``), or the
same bytes from standard input (``-``) or a named pipe, as an :class:`~._common.EventStream`
like any file (``stream_events("tcp://127.0.0.1:7777")``), so readers' consumers and
transforms work on live input unchanged.

Each chunk is one packet's polarity events; ``stream.last_arrival`` is the monotonic clock
(``time.monotonic()``) when that packet's last byte arrived, which is what latency is measured
from. A broken stream is an :class:`EventFormatError` naming the byte offset: a header that
never comes (``timeout`` seconds), a size past the bounds, a body that does not decompress, a
server that closes inside a packet. A stream that is merely quiet between packets is waited on
(a still scene sends nothing), but a packet that stops halfway for ``timeout`` seconds is an
error, never a hang.
"""
from __future__ import annotations

import os
import queue
import socket
import struct
import sys
import threading
import time

from ._common import EventStream
from .aedat4_wire import MAX_HEADER_BYTES, MAX_PACKET_BYTES, decode_events, decompress, parse_header
from .errors import EventFormatError

LIVE_PREFIX = "tcp://"


def is_live_source(source) -> bool:
    """``tcp://HOST:PORT``, ``-`` (standard input) or a named pipe: read as a live stream."""
    text = os.fspath(source) if isinstance(source, os.PathLike) else source
    if not isinstance(text, str):
        return False
    if text == "-" or text.startswith(LIVE_PREFIX):
        return True
    try:
        import stat

        return stat.S_ISFIFO(os.stat(text).st_mode)
    except OSError:
        return False


def parse_address(source: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``tcp://HOST:PORT`` (``tcp://:PORT``: ``default_host``) as ``(host, port)``."""
    from ...errors import InputError

    rest = source[len(LIVE_PREFIX):] if source.startswith(LIVE_PREFIX) else source
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{source!r} is not a stream address; write tcp://HOST:PORT, e.g. tcp://127.0.0.1:7777")
    return host.strip("[]") or default_host, int(port)


class _Bytes:
    """Exact reads from a socket or a binary file, counting the offset, with the stream's errors."""

    def __init__(self, source: str, timeout: float):
        self.source, self.timeout, self.offset = source, timeout, 0
        self.sock = self.file = None
        if source.startswith(LIVE_PREFIX):
            host, port = parse_address(source)
            try:
                self.sock = socket.create_connection((host, port), timeout=timeout)
            except OSError as err:
                raise ConnectionError(f"cannot connect to {source}: {err.strerror or err} (is DV's network "
                                      f"output, or `spikmamba replay ... --serve`, running there?)") from None
            self.sock.settimeout(timeout)
        elif source == "-":
            self.file = sys.stdin.buffer
        else:
            self.file = open(source, "rb", buffering=0)  # noqa: SIM115  (closed by close())

    def _recv(self, n: int) -> bytes:
        if self.sock is not None:
            return self.sock.recv(n)
        return self.file.read(n)

    def read(self, n: int, what: str, idle_ok: bool = False) -> bytes | None:
        """``n`` bytes, or None at a clean end of stream when nothing of them came (``idle_ok``:
        waiting for them may take any time while none has come)."""
        parts, got = [], 0
        while got < n:
            try:
                chunk = self._recv(n - got)
            except TimeoutError:
                if idle_ok and got == 0:
                    continue
                said = f"{got} of {n} bytes came" if got else "nothing came"
                raise EventFormatError(self.source, self.offset, f"the stream stalled while sending {what}: "
                                                                 f"{said} in {self.timeout:g} s") from None
            except OSError as err:
                raise EventFormatError(self.source, self.offset, f"the connection failed while reading {what} "
                                                                 f"({err.strerror or err})") from None
            if not chunk:
                if got == 0 and idle_ok:
                    return None
                raise EventFormatError(self.source, self.offset, f"the stream ended inside {what} ({got} of {n} "
                                                                 f"bytes)")
            parts.append(chunk)
            got += len(chunk)
        self.offset += n
        return b"".join(parts)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        elif self.file is not None and self.file is not sys.stdin.buffer:
            self.file.close()


def open_live(source: str, timeout: float = 10.0) -> EventStream:
    """Connect to ``source`` and read its AEDAT 4 header (within ``timeout`` seconds)."""
    source = os.fspath(source)
    wire = _Bytes(source, timeout)
    try:
        raw = wire.read(4, "the header size")
        size = struct.unpack("<i", raw)[0]
        if not 0 < size <= MAX_HEADER_BYTES:
            raise EventFormatError(source, 0, f"header size {size} is not in (0, {MAX_HEADER_BYTES}]: not an "
                                              f"AEDAT 4 stream")
        compression, sensor, ids = parse_header(source, wire.read(size, "the header"), 4)
    except BaseException:
        wire.close()
        raise

    def chunks(stream):
        try:
            while True:
                start = wire.offset
                head = wire.read(8, "a packet header", idle_ok=True)
                if head is None:
                    return
                sid, n = struct.unpack("<ii", head)
                if not 0 <= n <= MAX_PACKET_BYTES:
                    raise EventFormatError(source, start, f"a packet of {n} bytes (at most {MAX_PACKET_BYTES:,} "
                                                          f"are read): corrupt stream")
                body = wire.read(n, f"a {n}-byte packet")
                stream.last_arrival = time.monotonic()
                stream.packets += 1
                if sid not in ids:
                    stream.skipped += 1
                    continue
                yield decode_events(source, decompress(source, body, compression, start + 8), start + 8)
        finally:
            wire.close()

    stream = EventStream(source, "aedat4-live", sensor, 0, chunks)
    stream.last_arrival, stream.packets, stream.close = None, 0, wire.close
    return stream


class ReadAhead:
    """A live stream read in a thread of its own, so that packets leave the socket as they arrive
    while the consumer is busy (classifying a window, say).

    Why: read in the consumer's thread, a slow consumer stops reading, TCP's flow control then
    slows the sender, and each packet is stamped when it is finally read: the stream falls behind
    real time while the measured latency stays small, and nothing counts as late. Here each
    chunk keeps the time its packet arrived (``last_arrival`` is that of the chunk last handed
    out), so a consumer that falls behind sees it and can drop stale work. The chunks waiting
    are bounded (``max_events``); past it the reader waits (``stalls`` counts how often).
    Errors of the stream reach the consumer as they would have without the thread."""

    _END = object()

    def __init__(self, stream, max_events: int = 4_000_000):
        self.stream, self.max_events = stream, max_events
        self.path, self.format, self.sensor_size = stream.path, stream.format, stream.sensor_size
        self.last_arrival: float | None = None
        self.stalls, self.waiting = 0, 0
        self.newest_t: int | None = None  # the latest event time read so far
        self.ended = False  # the stream ended (or broke): nothing more will arrive
        self._queue: queue.Queue = queue.Queue()
        self._room = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="spikmamba-read-ahead", daemon=True)
        self._thread.start()

    def arrived(self, t: int) -> bool:
        """Whether reading up to stream time ``t`` will not wait for the network: an event at or
        after ``t`` has already arrived (read, not yet taken), or the stream has ended (what
        is left is all here: the windows it closes can be decided together)."""
        return self.ended or (self.newest_t is not None and self.newest_t >= t)

    @property
    def packets(self) -> int:
        return self.stream.packets

    @property
    def skipped(self) -> int:
        return self.stream.skipped

    def _read(self) -> None:
        try:
            for chunk in self.stream:
                n = len(chunk)
                room = lambda n=n: self._closed or not self.waiting or self.waiting + n <= self.max_events  # noqa: E731
                with self._room:
                    if not room():
                        self.stalls += 1
                        self._room.wait_for(room)
                    if self._closed:
                        return
                    self.waiting += n
                last = int(chunk["t"][-1])
                self.newest_t = last if self.newest_t is None else max(self.newest_t, last)
                self._queue.put((chunk, self.stream.last_arrival))
            self.ended = True
            self._queue.put((self._END, None))
        except BaseException as err:  # handed to the consumer, raised there
            self.ended = True
            self._queue.put((err, None))

    def __iter__(self):
        while True:
            item, arrival = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                if self._closed:
                    return
                raise item
            with self._room:
                self.waiting -= len(item)
                self._room.notify()
            self.last_arrival = arrival
            yield item

    def close(self) -> None:
        with self._room:
            self._closed = True
            self._room.notify()
        self.stream.close()
        self._thread.join(timeout=5)
