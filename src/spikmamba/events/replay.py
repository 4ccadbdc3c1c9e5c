"""Serve a recording as a live camera would: the AEDAT 4 stream DV's network output sends, paced
by the events' own timestamps (``speed`` times real time), for tests, demos and anyone without a
camera (``spikmamba replay FILE --serve tcp://:7777``).

Each client that connects gets the recording from its start, in packets of ``packet_us``
microseconds of the wall clock, as a camera commits them (libcaer and DV close a packet at an
interval), each sent when the wall clock reaches its last event's time. So at ``speed`` X a
packet holds X times ``packet_us`` of the recording: a 300,000 events/s recording replayed at
6.7x arrives as a 2 M events/s camera would send it, 500 packets a second of 4,000 events, not
3,300 packets of 600. (As fast as possible, ``speed`` inf, packets hold ``packet_us`` of the
recording.) With ``loop`` it starts again when it ends, its timestamps continuing upward.
"""
from __future__ import annotations

import math
import socket
import threading
import time
from pathlib import Path

import numpy as np

from .io import stream_events
from .io.aedat4_wire import encode_events, encode_header
from .io.live import parse_address


def packets(path, packet_us: int = 2000, loop: bool = False):
    """``(events, stream time of the packet's end)`` of ``path``, in order, looping if asked."""
    shift, first = 0, None
    while True:
        last = None
        for chunk in stream_events(path):
            if first is None:
                first = int(chunk["t"][0])
            t = chunk["t"].astype(np.int64)
            cuts = np.flatnonzero(np.diff((t - first) // packet_us)) + 1
            for part in np.split(chunk, cuts):
                out = part.copy()
                out["t"] += shift
                last = int(out["t"][-1])
                yield out, last
        if not loop or last is None:
            return
        shift = last + packet_us - first  # the next pass starts one packet after this one ended


class ReplayServer:
    """A TCP server sending ``path`` to every client that connects (``port`` 0: any free port;
    ``address`` gives the one bound). ``speed``: times real time (``math.inf``: as fast as the
    socket takes it)."""

    def __init__(self, path, host: str = "127.0.0.1", port: int = 0, speed: float = 1.0, loop: bool = False,
                 packet_us: int = 2000):
        from ..errors import InputError

        if not speed > 0:
            raise InputError(f"--speed must be > 0 (times real time; inf = as fast as possible), got {speed}")
        self.path, self.speed, self.loop, self.packet_us = Path(path), speed, loop, packet_us
        stream = stream_events(path)
        if stream.sensor_size is None:
            raise InputError(f"{path} does not state its sensor size, which the stream's header must carry; "
                             f"convert it to .npz with a sensor_size entry first")
        self.sensor_size = tuple(int(v) for v in stream.sensor_size[:2])
        self.sock = socket.create_server((host, port))
        self.address = f"tcp://{host}:{self.sock.getsockname()[1]}"
        self.clients = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.clients += 1
            threading.Thread(target=self._send, args=(conn,), daemon=True).start()

    def _send(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(encode_header(*self.sensor_size, source=f"spikmamba replay {self.path.name}"))
                start, first = None, None
                span = self.packet_us * self.speed if math.isfinite(self.speed) else self.packet_us
                for events, end_us in packets(self.path, max(1, int(span)), self.loop):
                    if self._stop.is_set():
                        return
                    if first is None:  # the clock starts with the first packet, once the file is open and
                        start, first = time.monotonic(), end_us  # read: not a burst of packets made late by it
                    if math.isfinite(self.speed):
                        wait = start + (end_us - first) / 1e6 / self.speed - time.monotonic()
                        if wait > 0:
                            self._stop.wait(wait)
                    conn.sendall(encode_events(events))
            except (BrokenPipeError, ConnectionResetError):
                return  # the client left

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def serve(path, address: str, speed: float = 1.0, loop: bool = False, echo=print) -> None:
    """``spikmamba replay``: serve until Ctrl-C."""
    host, port = parse_address(address, default_host="0.0.0.0")
    with ReplayServer(path, host, port, speed, loop) as server:
        w, h = server.sensor_size
        echo(f"serving {path} ({w}x{h}) at {server.address} as an AEDAT 4 stream, "
             f"{'as fast as it is read' if math.isinf(speed) else f'{speed:g}x real time'}"
             f"{', looping' if loop else ''}; Ctrl-C stops")
        while True:
            time.sleep(3600)
