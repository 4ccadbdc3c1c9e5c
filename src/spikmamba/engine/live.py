"""Recognition as the events arrive (``spikmamba predict --live SOURCE``): DV's AEDAT 4 stream
over TCP, standard input or a named pipe, windowed exactly as ``--window`` windows a file (the
same :class:`~.timeline.Windows`), one label per window as soon as an event at or after its end
has arrived.

**Latency** of a window: from the arrival of the packet holding the event that closes it (the
monotonic clock when that packet's last byte was read) to the moment its label is emitted. It
is reported per window and as p50 / p95 / p99. When a stream ends, the windows still open (up to
a window's length past its last event) are closed by the end, not by an event: all at once, so
they queue behind each other. Their latency, from the last packet's arrival, is reported apart
(``end_windows``, ``end_latency_max_ms``): a camera's stream does not end, and mixed in they
would make the tail of a replay's percentiles.

**Falling behind.** The stream is read in a thread of its own (:class:`~..events.io.live.ReadAhead`),
so packets are taken and stamped as they arrive even while a window is being classified. A
window whose closing packet arrived more than ``max_lag`` ago (default: one stride) when its
turn comes is dropped, not classified: its label would be stale, and classifying it would put
the next window further behind. Drops are counted and listed, so a model too slow for the stream
shows as drops, never as a queue growing without bound (the read-ahead is bounded; when it is
full the reader waits, the sender is slowed, and ``read_stalls`` counts it).

``smooth=K`` averages each window's probabilities with the K-1 windows *before* it (live, there
is no after).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import InputError
from ..events.io import EventFormatError, stream_events
from ..events.io.live import ReadAhead
from ..events.types import duration_us
from .inputs import EMPTY, prepare_events
from .timeline import Timeline, Windows

DROPPED = "(dropped)"
#: at most this many closed windows share one forward pass (see :meth:`_Run._batch_limit`)
MAX_BATCH = 8


@dataclass
class LiveResult:
    timeline: Timeline
    latencies_ms: list = field(default_factory=list)  # windows closed by an event
    end_latencies_ms: list = field(default_factory=list)  # windows closed by the stream's end
    dropped: int = 0
    packets: int = 0
    reconnects: int = 0
    read_stalls: int = 0  # times the read-ahead buffer was full and the reader waited (the stream was slowed)
    ended: str = "the stream ended"
    #: wall seconds from the first event's arrival to the last window's decision (what the
    #: sustained rate is over: not the connection's set-up, nor a replay reading its file first)
    streaming_s: float | None = None

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms, dtype=float)
        pct = {f"latency_p{q}_ms": (float(np.percentile(lat, q)) if len(lat) else None) for q in (50, 95, 99)}
        s = self.timeline.summary()
        streaming = self.streaming_s if self.streaming_s is not None else s["processing_s"]
        return {**s, **pct, "dropped_windows": self.dropped, "packets": self.packets, "reconnects": self.reconnects,
                "read_stalls": self.read_stalls, "streaming_s": streaming, "end_windows": len(self.end_latencies_ms),
                "end_latency_max_ms": max(self.end_latencies_ms, default=None),
                "events_per_s_sustained": s["events"] / max(streaming, 1e-9), "ended": self.ended}


@torch.no_grad()
def predict_live(predictor, source: str, window_ms: float, stride_ms: float | None = None, topk: int = 3,
                 smooth: int = 1, timeout: float = 10.0, max_lag_ms: float | None = None, max_windows: int = 0,
                 echo=None, reconnect: bool = False, note=None) -> LiveResult:
    """Classify ``source``'s windows as they close (see the module docstring). ``echo(row)`` is
    called for each window as it is decided; ``max_windows`` > 0 stops after that many; Ctrl-C
    stops cleanly with what was decided so far. ``reconnect``: when the stream ends or breaks (or
    cannot be reached), say so through ``note(text)`` and connect again a second later, until
    Ctrl-C or ``max_windows``."""
    window_us = duration_us(window_ms, "--window")
    stride_us = duration_us(window_ms / 2 if stride_ms is None else stride_ms, "--stride")
    if smooth < 1 or topk < 1:
        raise InputError(f"--smooth and --top must be >= 1, got {smooth} and {topk}")
    _warm_up(predictor, tuple(predictor.representation.sensor_size))
    run = _Run(predictor, source, window_us, stride_us, topk, smooth,
               (stride_us / 1e6) if max_lag_ms is None else max_lag_ms / 1e3, max_windows, echo)
    try:
        while True:
            try:
                run.connection(stream_events(source, timeout=timeout))
            except (EventFormatError, ConnectionError) as err:
                if not reconnect:
                    raise
                run.result.ended = f"the stream broke: {err}"
            if not reconnect or run.finished:
                break
            run.result.reconnects += 1
            if note is not None:
                note(f"{run.result.ended}; connecting again in 1 s (Ctrl-C stops)")
            time.sleep(1.0)
    except KeyboardInterrupt:
        run.result.ended = "stopped by Ctrl-C"
    return run.finish()


class _Run:
    """One live run's state across connections: the windows decided, the smoothing history, counts."""

    def __init__(self, predictor, source, window_us, stride_us, topk, smooth, max_lag_s, max_windows, echo):
        self.predictor, self.window_us, self.stride_us = predictor, window_us, stride_us
        self.k, self.max_lag_s, self.max_windows, self.echo = min(topk, len(predictor.classes)), max_lag_s, \
            max_windows, echo
        self.result = LiveResult(Timeline(str(source), window_us, stride_us))
        self.recent: deque = deque(maxlen=smooth)
        self.started, self.first, self.events, self.late = time.perf_counter(), None, 0, 0
        self.first_arrival: float | None = None  # monotonic clock of the first event's arrival
        self.finished = False
        self.cost: dict = {}  # forward seconds per window, moving averages: "one" window alone, "batch" together

    def _counted(self, stream):
        for chunk in stream:
            if self.first is None:
                self.first = int(chunk["t"][0])
                self.first_arrival = getattr(stream, "last_arrival", None) or time.monotonic()
            self.events += len(chunk)
            yield chunk

    def connection(self, stream) -> None:
        """Decide the windows of one connection until it ends (or ``max_windows``)."""
        rep, result = self.predictor.representation, self.result
        if hasattr(stream, "last_arrival"):  # a live stream: taken off the socket as it arrives
            stream = ReadAhead(stream)
        sensor = tuple(stream.sensor_size) if stream.sensor_size else tuple(rep.sensor_size)
        windows = Windows(self._counted(stream), self.window_us, self.stride_us, self.predictor.transforms, rep,
                          sensor)
        pending: list = []
        try:
            result.ended = "the stream ended"
            for start, end, n, x in windows:
                arrival = getattr(stream, "last_arrival", None)  # None: a file
                pending.append((start, end, n, x, arrival, windows.ended))
                # the next window's closing event already here: decide it together with this one
                more = getattr(stream, "arrived", lambda t: False)(end + self.stride_us)
                if more and len(pending) < self._batch_limit() and not self._enough(len(pending)):
                    continue
                self._decide(pending)
                pending = []
                if self._enough(0):
                    break
            self._decide(pending)
        finally:
            getattr(stream, "close", lambda: None)()
            self.late += windows.late
            result.packets += getattr(stream, "packets", 0)
            result.read_stalls += getattr(stream, "stalls", 0)

    def _batch_limit(self) -> int:
        """How many windows one forward pass may take: up to :data:`MAX_BATCH`, no more than fit in
        ``max_lag`` at the measured cost per window (a slow model decides one at a time), and one
        when a batch has proved to cost more per window than a single window (a large model on a
        CPU can)."""
        one, batch = self.cost.get("one"), self.cost.get("batch")
        if one is None or (batch is not None and batch > one):
            return 1
        return max(1, int(min(MAX_BATCH, self.max_lag_s / max(min(one, batch or one), 1e-6))))

    def _enough(self, pending: int) -> bool:
        """``max_windows`` reached, counting ``pending`` windows not yet decided."""
        if self.max_windows and len(self.result.timeline.rows) + pending >= self.max_windows:
            if not pending:
                self.result.ended, self.finished = f"stopped after {self.max_windows} windows", True
            return True
        return False

    def _decide(self, pending: list) -> None:
        """Label the closed windows in ``pending`` (in order), those with events in one forward
        pass; a window whose closing packet arrived more than ``max_lag`` ago is dropped."""
        if not pending:
            return
        classes, result, now = self.predictor.classes, self.result, time.monotonic()
        rows, inputs = [], []
        for start, end, n, x, arrival, by_end in pending:
            row = {"start_us": start, "end_us": end, "events": n, "top": [],
                   "start_ms": (start - self.first) / 1e3, "end_ms": (end - self.first) / 1e3}
            if by_end:
                row["closed_by"] = "end of stream"
            if arrival is not None and now - arrival > self.max_lag_s:
                row["label"] = DROPPED
                result.dropped += 1
            elif x is None:
                row["label"] = EMPTY
            else:
                inputs.append((row, x))
            rows.append((row, arrival))
        if inputs:
            began = time.perf_counter()
            probs = self.predictor.forward(torch.from_numpy(np.stack([x for _, x in inputs]))).softmax(1)
            cost, kind = (time.perf_counter() - began) / len(inputs), "one" if len(inputs) == 1 else "batch"
            self.cost[kind] = cost if kind not in self.cost else 0.8 * self.cost[kind] + 0.2 * cost
            for (row, _), p in zip(inputs, probs):
                self.recent.append(p)
                top = p.topk(self.k)
                row["top"] = [{"class": classes[int(i)], "probability": float(v)}
                              for v, i in zip(top.values, top.indices)]
                row["label"] = classes[int(torch.stack(list(self.recent)).mean(0).argmax())]
        done = time.monotonic()
        for row, arrival in rows:
            if row["label"] != DROPPED and arrival is not None:
                row["latency_ms"] = (done - arrival) * 1e3
                (result.end_latencies_ms if "closed_by" in row else result.latencies_ms).append(row["latency_ms"])
            result.timeline.rows.append(row)
            if self.echo is not None:
                self.echo(row)

    def finish(self) -> LiveResult:
        tl = self.result.timeline
        tl.seconds, tl.events, tl.first_us, tl.late_events = time.perf_counter() - self.started, self.events, \
            self.first or 0, self.late
        if tl.rows:
            tl.duration_us = tl.rows[-1]["end_us"] - tl.rows[0]["start_us"]
        if self.first_arrival is not None:
            self.result.streaming_s = time.monotonic() - self.first_arrival
        return self.result


def _warm_up(predictor, sensor) -> None:
    """One window's work before the stream opens: compiled loops and first-call allocations would
    otherwise count against the first windows' latency (and drop them)."""
    from ..events import make_events

    w, h = sensor[:2]
    events = make_events(np.arange(64) * 1000, np.arange(64) % w, np.arange(64) % h, np.arange(64) % 2)
    x = prepare_events(events, predictor.representation, (w, h), predictor.transforms)
    predictor.forward(torch.from_numpy(x)[None])
