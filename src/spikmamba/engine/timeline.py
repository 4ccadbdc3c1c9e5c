"""What happened when: a model's window slid along a long recording (``spikmamba predict --window``).

The recording is read as a stream of chunks (``stream_events``), so a long file never sits
whole in memory: only the events of the windows still open are kept. Windows start at the first
event and every ``stride`` after it, each ``window`` long; a window is represented exactly as the
model's training data were (the stored representation and, in their evaluation form, its
transforms) and classified in batches. A window without events is labelled ``(no events)``,
never guessed. ``smooth=K`` averages the class probabilities of each window with its K-1
nearest non-empty neighbours before taking the label (the raw top classes are kept too).
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..events.io import stream_events
from ..events.types import T_END, concat_events, duration_us, time_sorted
from .inputs import EMPTY, prepare_events

#: the most windows one timeline holds (rows of a few hundred bytes each): a timestamp that jumps
#: by 2**40 µs asked for billions of empty windows
MAX_WINDOWS = 200_000
#: the most events one window may hold (13 bytes each): a file of 10**12 events at one timestamp
#: would otherwise be gathered whole
MAX_WINDOW_EVENTS = 1 << 27
#: chunks held unmerged while no window completes (small live packets; a file's chunks are larger)
PENDING_EVENTS = 1 << 20


@dataclass
class Timeline:
    path: str
    window_us: int
    stride_us: int
    rows: list = field(default_factory=list)
    duration_us: int = 0
    events: int = 0
    seconds: float = 0.0
    late_events: int = 0
    first_us: int = 0
    notes: list = field(default_factory=list)

    @property
    def realtime_factor(self) -> float:
        """Recording duration / processing time (above 1: faster than real time)."""
        return (self.duration_us / 1e6) / max(self.seconds, 1e-9)

    def summary(self) -> dict:
        return {"file": self.path, "first_event_us": self.first_us, "window_ms": self.window_us / 1e3,
                "stride_ms": self.stride_us / 1e3,
                "windows": len(self.rows), "empty_windows": sum(r["label"] == EMPTY for r in self.rows),
                "duration_s": self.duration_us / 1e6, "events": self.events, "processing_s": self.seconds,
                "realtime_factor": self.realtime_factor, "late_events": self.late_events, "notes": self.notes}

    def write(self, prefix: str | Path, summary: dict | None = None) -> list[Path]:
        """``prefix.csv`` (one row per window: start, end, events, label, top classes) and ``prefix.json``
        (``summary``, by default this timeline's, and the windows)."""
        prefix = Path(prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = prefix.with_suffix(".csv"), prefix.with_suffix(".json")
        k = max((len(r["top"]) for r in self.rows), default=0)
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["start_ms", "end_ms", "start_us", "events", "label"] + [c for i in range(1, k + 1)
                                                                                 for c in (f"top{i}", f"p{i}")])
            for r in self.rows:
                tops = [v for t in r["top"] for v in (t["class"], f"{t['probability']:.4f}")]
                w.writerow(
                    [f"{r['start_ms']:.3f}", f"{r['end_ms']:.3f}", r["start_us"], r["events"], r["label"], *tops]
                )
        json_path.write_text(json.dumps({**(summary or self.summary()), "windows": self.rows}, indent=2))
        return [csv_path, json_path]


class Windows:
    """``(start, end, n_events, input or None)`` for every window, in order, from a stream of
    chunks (see the module docstring). ``late`` counts events that arrived after their window had
    closed (timestamps going back by more than a window)."""

    def __init__(self, stream, window_us: int, stride_us: int, transforms, rep, sensor):
        self.stream, self.window_us, self.stride_us = stream, window_us, stride_us
        self.transforms, self.rep, self.sensor = transforms, rep, sensor
        self.late = 0  # events whose timestamps went back behind an already closed window
        self.count = 0
        self.ended = False  # the stream has ended: the windows still to come are closed by its end, not by an event

    def _budget(self, start: int, upto: int, t) -> None:
        """Refuse, before making any, windows from ``start`` to ``upto`` beyond :data:`MAX_WINDOWS`."""
        needed = (upto - start) // self.stride_us + 1
        if self.count + needed > MAX_WINDOWS:
            jump = ""
            if t is not None and len(t) > 1:
                gaps = np.diff(t)
                i = int(np.argmax(gaps))
                jump = f"; the timestamps jump by {int(gaps[i]):,} µs after t={int(t[i]):,} µs"
            raise InputError(f"the events span {(upto - start) / 1e6:,.1f} s{jump}: at a stride of "
                             f"{self.stride_us / 1e3:g} ms that is {self.count + needed:,} windows, more than the "
                             f"{MAX_WINDOWS:,} a timeline holds. Give a longer --stride, or check the recording's "
                             f"timestamps")
        self.count += needed

    def __iter__(self):
        buf, t, next_start, newest, before = None, None, None, None, None
        pending, pending_n = [], 0  # chunks not yet merged: small live packets are merged once per window
        for chunk in self.stream:
            if not len(chunk):
                continue
            if next_start is None:
                next_start = int(chunk["t"].min())
            newest = int(chunk["t"].max()) if newest is None else max(newest, int(chunk["t"].max()))
            pending.append(chunk)
            pending_n += len(chunk)
            if next_start + self.window_us > newest and pending_n < PENDING_EVENTS:
                continue  # no window completes yet: merging now would copy the open window once per packet
            buf, t = self._merge(buf, pending, next_start, before)
            pending, pending_n, before = [], 0, newest
            if len(t) > MAX_WINDOW_EVENTS:
                raise InputError(f"more than {MAX_WINDOW_EVENTS:,} events fall in the window starting at "
                                 f"t={next_start:,} µs; give a shorter --window, or check the recording's timestamps")
            if next_start + self.window_us <= newest:
                self._budget(next_start, newest - self.window_us, t)
            while next_start + self.window_us <= newest:  # complete: an event at or after its end has arrived
                yield self._window(buf, t, next_start)
                next_start += self.stride_us
            keep = int(np.searchsorted(t, min(next_start, T_END), "left"))  # drop what no later window needs
            buf, t = buf[keep:], t[keep:]
        self.ended = True
        if next_start is None:
            return
        if pending:
            buf, t = self._merge(buf, pending, next_start, before)
        last = newest  # the windows that start at or before the last event
        if next_start <= last:
            self._budget(next_start, last, t)
        while next_start <= last:
            yield self._window(buf, t, next_start)
            next_start += self.stride_us

    def _merge(self, buf, pending: list, next_start: int, before):
        """``(events, their times)``: the open windows' events and the new chunks, in time order,
        without what falls before ``next_start`` (counted as late when older than ``before``, the
        newest time seen at the last merge; else it fell in a gap between windows)."""
        parts = ([buf] if buf is not None and len(buf) else []) + pending
        # contiguous times: searchsorted on a strided field is several times slower
        buf, t = time_sorted(parts[0] if len(parts) == 1 else concat_events(parts))
        old = int(np.searchsorted(t, next_start, "left"))
        if old:
            self.late += int(np.searchsorted(t[:old], before, "left")) if before is not None else 0
            buf, t = buf[old:], t[old:]
        return buf, t

    def _window(self, buf, t, start: int):
        a, b = np.searchsorted(t, [min(start, T_END), min(start + self.window_us, T_END)], "left")
        events = buf[a:b]
        if not len(events):
            return start, start + self.window_us, 0, None
        return start, start + self.window_us, len(events), prepare_events(events, self.rep, self.sensor,
                                                                           self.transforms)


@torch.no_grad()
def predict_timeline(predictor, path, window_ms: float, stride_ms: float | None = None, batch_size: int = 16,
                     topk: int = 3, smooth: int = 1, sensor_size=None, progress: bool = False,
                     event_format: str | None = None) -> Timeline:
    """Slide ``predictor``'s model along ``path`` (see the module docstring); ``stride_ms`` defaults
    to half the window; ``progress`` shows a bar of the events read on a terminal."""
    window_us = duration_us(window_ms, "--window")
    stride_us = duration_us(window_ms / 2 if stride_ms is None else stride_ms, "--stride")
    if smooth < 1:
        raise InputError(f"--smooth must be >= 1 window, got {smooth}")
    if topk < 1:
        raise InputError(f"--top must be >= 1 class, got {topk}")
    stream = stream_events(path, format=event_format, sensor_size=sensor_size)
    rep = predictor.representation
    sensor = tuple(stream.sensor_size) if stream.sensor_size else tuple(rep.sensor_size)
    classes = predictor.classes
    k = min(topk, len(classes))
    tl = Timeline(str(path), window_us, stride_us)
    started = time.perf_counter()
    rows, probs, pending = [], [], []

    def flush():
        if pending:
            p = predictor.forward(torch.stack([torch.from_numpy(x) for _, x in pending])).softmax(1)
            for (i, _), row_p in zip(pending, p):
                probs[i] = row_p
            pending.clear()

    from tqdm import tqdm

    bar = tqdm(total=stream.capacity or None, unit="ev", unit_scale=True, desc=Path(str(path)).name, leave=False,
               disable=None if progress else True)  # None: shown on a terminal only
    counted = _Counting(stream, bar)
    windows = Windows(counted, window_us, stride_us, predictor.transforms, rep, sensor)
    try:
        for start, end, n, x in windows:
            rows.append({"start_us": start, "end_us": end, "events": n})
            probs.append(None)
            if x is not None:
                pending.append((len(rows) - 1, x))
                if len(pending) == batch_size:
                    flush()
    except ValueError as err:  # a representation error names the events, not the file: add it
        raise (err if str(path) in str(err) else InputError(f"{path}: {err}")) from None
    finally:
        bar.close()
    flush()
    tl.late_events = windows.late
    if counted.n:
        tl.duration_us, tl.events, tl.first_us = counted.last - counted.first, counted.n, counted.first
    for row in rows:  # times from the first event, for people; the file's own clock in start_us
        row["start_ms"], row["end_ms"] = (row["start_us"] - tl.first_us) / 1e3, (row["end_us"] - tl.first_us) / 1e3
    if rows and window_us > tl.duration_us:
        tl.notes.append(f"the window ({window_ms:g} ms) is longer than the recording "
                        f"({tl.duration_us / 1e3:g} ms): one window holds all of it")
    if tl.late_events:
        tl.notes.append(f"{tl.late_events} events arrived after their window had closed (timestamps going back "
                        f"more than a window) and were left out")
    between = counted.n - tl.late_events - sum(r["events"] for r in rows) if stride_us > window_us else 0
    if between:  # windows do not overlap here: what no window counted fell between them
        tl.notes.append(f"{between} events fall between windows (the stride, {stride_us / 1e3:g} ms, is "
                        f"longer than the window, {window_us / 1e3:g} ms) and belong to none")
    smoothed = _smooth(probs, smooth)
    for row, p, ps in zip(rows, probs, smoothed):
        if p is None:
            row.update(label=EMPTY, top=[])
            continue
        top = p.topk(k)
        row["top"] = [{"class": classes[int(i)], "probability": float(v)} for v, i in zip(top.values, top.indices)]
        row["label"] = classes[int(ps.argmax())]
    tl.rows = rows
    tl.seconds = time.perf_counter() - started
    return tl


def _smooth(probs: list, k: int) -> list:
    """Each non-empty window's probabilities averaged with its k-1 nearest non-empty neighbours."""
    if k <= 1:
        return probs
    filled = [i for i, p in enumerate(probs) if p is not None]
    out = list(probs)
    for j, i in enumerate(filled):
        lo = max(0, j - (k - 1) // 2)
        hi = min(len(filled), lo + k)
        lo = max(0, hi - k)
        out[i] = torch.stack([probs[filled[m]] for m in range(lo, hi)]).mean(0)
    return out


class _Counting:
    """Passes a stream's chunks through, noting the first and last timestamps and the event count."""

    def __init__(self, stream, bar=None):
        self.stream, self.bar, self.n, self.first, self.last = stream, bar, 0, None, None

    def __iter__(self):
        for chunk in self.stream:
            if not len(chunk):
                continue
            self.n += len(chunk)
            if self.bar is not None:
                self.bar.update(len(chunk))
            lo, hi = int(chunk["t"].min()), int(chunk["t"].max())
            self.first = lo if self.first is None else min(self.first, lo)
            self.last = hi if self.last is None else max(self.last, hi)
            yield chunk

