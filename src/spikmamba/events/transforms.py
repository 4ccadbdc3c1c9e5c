"""Event -> event transforms: small callables composed with :class:`Compose` (tonic style).

Every transform returns a valid event array: coordinates inside its output sensor, sorted by
time. Random transforms take an optional ``numpy.random.Generator`` so a seeded pipeline is
reproducible. All are vectorised (no Python loop over events); the denoise filter uses one
``searchsorted`` per neighbour over (pixel, time) keys and the refractory filter advances a
frontier of kept events per pixel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from .types import check_events


def _rng(rng):
    return rng if rng is not None else np.random.default_rng()


def _sorted(events: np.ndarray) -> np.ndarray:
    if len(events) > 1 and np.any(np.diff(events["t"]) < 0):
        return events[np.argsort(events["t"], kind="stable")]
    return events


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, events):
        for t in self.transforms:
            events = t(events)
        return events

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


@dataclass
class Downsample:
    """Divide coordinates by ``factor`` (integer division), e.g. 346x260 -> 173x130 with 2."""
    factor: int

    def __post_init__(self):
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")

    def output_size(self, sensor_size):
        return (-(-sensor_size[0] // self.factor), -(-sensor_size[1] // self.factor))

    def __call__(self, events):
        out = events.copy()
        out["x"] //= self.factor
        out["y"] //= self.factor
        return out


def _crop(events, x0, y0, w, h):
    keep = (events["x"] >= x0) & (events["x"] < x0 + w) & (events["y"] >= y0) & (events["y"] < y0 + h)
    out = events[keep]
    out["x"] -= x0
    out["y"] -= y0
    return out


@dataclass
class CenterCrop:
    """Keep the centred ``size`` ``(w, h)`` window and shift coordinates to start at 0."""
    sensor_size: tuple
    size: tuple

    def __call__(self, events):
        W, H = self.sensor_size
        w, h = self.size
        if w > W or h > H:
            raise ValueError(f"crop {self.size} is larger than the {W}x{H} sensor")
        return _crop(events, (W - w) // 2, (H - h) // 2, w, h)


@dataclass
class RandomCrop:
    sensor_size: tuple
    size: tuple
    rng: Optional[np.random.Generator] = None

    def __call__(self, events):
        W, H = self.sensor_size
        w, h = self.size
        if w > W or h > H:
            raise ValueError(f"crop {self.size} is larger than the {W}x{H} sensor")
        r = _rng(self.rng)
        return _crop(events, int(r.integers(0, W - w + 1)), int(r.integers(0, H - h + 1)), w, h)


@dataclass
class RandomFlip:
    """Mirror left-right (``axis='x'``) or up-down (``axis='y'``) with probability ``p``."""
    sensor_size: tuple
    p: float = 0.5
    axis: str = "x"
    rng: Optional[np.random.Generator] = None

    def __call__(self, events):
        if _rng(self.rng).random() >= self.p:
            return events
        out = events.copy()
        k = 0 if self.axis == "x" else 1
        out[self.axis] = self.sensor_size[k] - 1 - out[self.axis]
        return out


@dataclass
class DropEvent:
    """Drop each event independently with probability ``p``."""
    p: float
    rng: Optional[np.random.Generator] = None

    def __call__(self, events):
        return events[_rng(self.rng).random(len(events)) >= self.p]


@dataclass
class TimeJitter:
    """Add Gaussian noise (``std`` µs) to timestamps, then re-sort (stable)."""
    std: float
    rng: Optional[np.random.Generator] = None
    clip_negative: bool = True

    def __call__(self, events):
        out = events.copy()
        out["t"] = out["t"] + np.round(_rng(self.rng).normal(0.0, self.std, len(out))).astype(np.int64)
        if self.clip_negative:
            out["t"] = np.maximum(out["t"], 0)
        return _sorted(out)


@dataclass
class TimeShift:
    """Shift all timestamps so the first event is at ``start`` µs (default 0)."""
    start: int = 0

    def __call__(self, events):
        out = events.copy()
        if len(out):
            out["t"] = out["t"] - out["t"][0] + self.start
        return out


@dataclass
class TimeSlice:
    """Keep events with ``start <= t - t_first < stop`` (µs, relative to the first event)."""
    start: int = 0
    stop: Optional[int] = None

    def __call__(self, events):
        if not len(events):
            return events
        rel = events["t"] - events["t"][0]
        keep = rel >= self.start
        if self.stop is not None:
            keep &= rel < self.stop
        return events[keep]


def _pixel_time_index(events, W, pad: int = 0):
    """Events sorted by (pixel, time): the order, the sorted pixel and time columns, and the
    sort keys ``pixel * span + (t - t_min)``. ``pad`` widens ``span`` so that a key plus up to
    ``pad`` µs never reaches the next pixel's keys."""
    pix = events["y"].astype(np.int64) * W + events["x"].astype(np.int64)
    t = events["t"].astype(np.int64)
    t0 = int(t.min())
    span = int(t.max()) - t0 + 1 + pad
    keys = pix * span + (t - t0)
    order = np.argsort(keys, kind="stable")
    return order, pix[order], t[order], keys[order], span


@dataclass
class Denoise:
    """Background-activity filter: keep an event when one of its 4 neighbouring pixels had an
    event within the last ``filter_time`` µs (at or before its own timestamp). Isolated noise
    events have no such support and are removed."""
    sensor_size: tuple
    filter_time: int = 10_000

    def __call__(self, events):
        W, H = self.sensor_size
        if len(events) == 0:
            return events
        check_events(events, self.sensor_size)
        # Queries "neighbour pixel, same time" taken in key order are themselves sorted (a
        # constant pixel offset keeps the order), so each searchsorted streams through memory.
        order, spix, st, keys, span = _pixel_time_index(events, W)
        sx, sy = spix % W, spix // W
        support = np.zeros(len(events), dtype=bool)
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            inside = (sx + dx >= 0) & (sx + dx < W) & (sy + dy >= 0) & (sy + dy < H)
            npix = spix + dy * W + dx
            j = np.searchsorted(keys, keys + (dy * W + dx) * span, side="right") - 1  # latest there at or before t
            jj = np.maximum(j, 0)
            support |= inside & (j >= 0) & (spix[jj] == npix) & (st - st[jj] < self.filter_time)
        keep = np.zeros(len(events), dtype=bool)
        keep[order[support]] = True
        return events[keep]


@dataclass
class RefractoryPeriod:
    """Drop events that arrive at a pixel less than ``period`` µs after the last *kept* event
    there (a pixel that fired cannot fire again at once)."""
    sensor_size: tuple
    period: int = 1_000

    def __call__(self, events):
        W, _ = self.sensor_size
        if len(events) == 0:
            return events
        order, spix, st, keys, _ = _pixel_time_index(events, W, pad=self.period)
        n = len(events)
        first = np.ones(n, dtype=bool)
        first[1:] = spix[1:] != spix[:-1]
        # next candidate of each event: first event at the same pixel at least `period` later
        nxt = np.searchsorted(keys, keys + self.period, side="left")
        valid = nxt < n
        nxt_same = np.where(valid, nxt, 0)
        valid &= spix[nxt_same] == spix
        kept = np.zeros(n, dtype=bool)
        frontier = np.flatnonzero(first)
        while frontier.size:
            kept[frontier] = True
            frontier = nxt[frontier[valid[frontier]]]
        keep = np.zeros(n, dtype=bool)
        keep[order[kept]] = True
        return events[keep]
