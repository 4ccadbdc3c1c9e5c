"""Event -> event transforms: small callables composed with :class:`Compose` (tonic style).

Every transform returns a valid event array: coordinates inside its output sensor, sorted by
time. Random transforms draw from a ``numpy.random.Generator``: the one passed to the call
(``t(events, rng=g)``; the training pipeline passes one seeded from (seed, epoch, sample), so a
run is reproducible whatever the number of loader workers), else their own ``rng`` field, else
a fresh one. All are vectorised (no Python loop over events); the denoise filter uses one
``searchsorted`` per neighbour over (pixel, time) keys and the refractory filter advances a
frontier of kept events per pixel.

Each transform also says what it does to the sensor (``output_size``) and what replaces it when
a model is evaluated (``eval_form``: deterministic ones stay, random ones are dropped, and
``RandomCrop`` becomes the ``CenterCrop`` of the same size), so configs can name them
(:func:`transforms_from_config`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields

import numpy as np

from ..errors import InputError
from .types import check_events, sensor_wh, sort_by_time


def _rng(rng):
    return rng if rng is not None else np.random.default_rng()


def _call(t: Callable, events, rng):
    """``t(events, rng=rng)`` for transforms that draw random numbers, ``t(events)`` for the others
    (tonic's and any plain callable)."""
    if rng is not None and getattr(t, "random", False):
        return t(events, rng=rng)
    return t(events)


class Compose:
    """Apply transforms in order; ``rng`` (optional) is handed to each random one."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    @property
    def random(self) -> bool:
        return any(getattr(t, "random", False) for t in self.transforms)

    def __call__(self, events, rng=None):
        for t in self.transforms:
            events = _call(t, events, rng)
        return events

    def output_size(self, sensor_size):
        for t in self.transforms:
            sensor_size = output_size(t, sensor_size)
        return tuple(sensor_size)

    def eval_form(self) -> Compose:
        return Compose([e for e in (eval_form(t) for t in self.transforms) if e is not None])

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def output_size(t, sensor_size):
    """The sensor size after ``t`` (unchanged for transforms that do not say)."""
    f = getattr(t, "output_size", None)
    return tuple(f(sensor_size)) if f is not None else tuple(sensor_size)


def eval_form(t):
    """What replaces ``t`` when evaluating: itself when deterministic, else its ``eval_form()`` (None: dropped)."""
    if not getattr(t, "random", False):
        return t
    f = getattr(t, "eval_form", None)
    return f() if f is not None else None


@dataclass
class Downsample:
    """Divide coordinates by ``factor`` (integer division), e.g. 346x260 -> 173x130 with 2."""
    factor: int

    def __post_init__(self):
        if self.factor < 1:
            raise InputError(f"factor must be >= 1, got {self.factor}")

    def output_size(self, sensor_size):
        return (-(-sensor_size[0] // self.factor), -(-sensor_size[1] // self.factor))

    def __call__(self, events):
        out = events.copy()
        out["x"] //= self.factor
        out["y"] //= self.factor
        return out


def _check_probability(p) -> None:
    if not 0.0 <= p <= 1.0:
        raise InputError(f"p must be a probability in [0, 1], got {p}")


def _check_crop(sensor_size, size) -> None:
    if len(size) != 2 or min(size) < 1:
        raise InputError(f"size must be (width, height) in pixels, got {size}")
    if size[0] > sensor_size[0] or size[1] > sensor_size[1]:
        raise InputError(f"crop {tuple(size)} is larger than the {sensor_size[0]}x{sensor_size[1]} sensor")


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

    def __post_init__(self):
        _check_crop(self.sensor_size, self.size)

    def output_size(self, sensor_size):
        return tuple(self.size)

    def __call__(self, events):
        W, H = sensor_wh(self.sensor_size)
        w, h = self.size
        if w > W or h > H:
            raise InputError(f"crop {self.size} is larger than the {W}x{H} sensor")
        return _crop(events, (W - w) // 2, (H - h) // 2, w, h)


@dataclass
class RandomCrop:
    """Keep a ``size`` ``(w, h)`` window at a random place (the centre one when evaluating)."""
    sensor_size: tuple
    size: tuple
    rng: np.random.Generator | None = None
    random = True

    def __post_init__(self):
        _check_crop(self.sensor_size, self.size)

    def output_size(self, sensor_size):
        return tuple(self.size)

    def eval_form(self):
        return CenterCrop(self.sensor_size, self.size)

    def __call__(self, events, rng=None):
        W, H = sensor_wh(self.sensor_size)
        w, h = self.size
        if w > W or h > H:
            raise InputError(f"crop {self.size} is larger than the {W}x{H} sensor")
        r = _rng(rng if rng is not None else self.rng)
        return _crop(events, int(r.integers(0, W - w + 1)), int(r.integers(0, H - h + 1)), w, h)


@dataclass
class RandomFlip:
    """Mirror left-right (``axis='x'``) or up-down (``axis='y'``) with probability ``p``."""
    sensor_size: tuple
    p: float = 0.5
    axis: str = "x"
    rng: np.random.Generator | None = None
    random = True

    def __post_init__(self):
        _check_probability(self.p)
        if self.axis not in ("x", "y"):
            raise InputError(f"axis must be 'x' or 'y', got {self.axis!r}")

    def __call__(self, events, rng=None):
        if _rng(rng if rng is not None else self.rng).random() >= self.p:
            return events
        out = events.copy()
        k = 0 if self.axis == "x" else 1
        out[self.axis] = self.sensor_size[k] - 1 - out[self.axis]
        return out


@dataclass
class DropEvent:
    """Drop each event independently with probability ``p``."""
    p: float
    rng: np.random.Generator | None = None
    random = True

    def __post_init__(self):
        _check_probability(self.p)

    def __call__(self, events, rng=None):
        return events[_rng(rng if rng is not None else self.rng).random(len(events)) >= self.p]


@dataclass
class TimeJitter:
    """Add Gaussian noise (``std`` µs) to timestamps, then re-sort (stable)."""
    std: float
    rng: np.random.Generator | None = None
    clip_negative: bool = True
    random = True

    def __post_init__(self):
        if not self.std >= 0:
            raise InputError(f"std must be >= 0 µs, got {self.std}")

    def __call__(self, events, rng=None):
        out = events.copy()
        r = _rng(rng if rng is not None else self.rng)
        out["t"] = out["t"] + np.round(r.normal(0.0, self.std, len(out))).astype(np.int64)
        if self.clip_negative:
            out["t"] = np.maximum(out["t"], 0)
        return sort_by_time(out)


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
    stop: int | None = None

    def __post_init__(self):
        if self.start < 0 or (self.stop is not None and self.stop <= self.start):
            raise InputError(f"need 0 <= start < stop, got start={self.start}, stop={self.stop}")

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

    def __post_init__(self):
        if not self.filter_time > 0:
            raise InputError(f"filter_time must be > 0 µs, got {self.filter_time}")

    def __call__(self, events):
        W, H = sensor_wh(self.sensor_size)
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

    def __post_init__(self):
        if not self.period >= 0:
            raise InputError(f"period must be >= 0 µs, got {self.period}")

    def __call__(self, events):
        W, _ = sensor_wh(self.sensor_size)
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


#: the transforms a config can name (``transforms:`` in YAML)
TRANSFORMS = {cls.__name__: cls for cls in (Downsample, CenterCrop, RandomCrop, RandomFlip, DropEvent, TimeJitter,
                                             TimeShift, TimeSlice, Denoise, RefractoryPeriod)}


def _spec_items(spec) -> list[tuple[str, dict]]:
    """``[name or {name: {param: value}}, ...]`` -> ``[(name, params), ...]``, with clear errors."""
    if spec is None:
        return []
    if not isinstance(spec, (list, tuple)):
        raise InputError(f"transforms must be a list, e.g. [RandomFlip, {{DropEvent: {{p: 0.1}}}}]; got {spec!r}")
    items = []
    for n, item in enumerate(spec, 1):
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            (name, params), = item.items()
            params = {} if params is None else params
            if not isinstance(params, dict):
                raise InputError(f"transforms item {n} ({name}): parameters must be a mapping, e.g. "
                                 f"{{{name}: {{p: 0.5}}}}; got {params!r}")
        else:
            raise InputError(f"transforms item {n} must be a name or a one-key mapping {{Name: {{param: value}}}}, "
                             f"got {item!r}")
        if name not in TRANSFORMS:
            raise InputError(f"transforms item {n}: unknown transform {name!r}; choose from {', '.join(TRANSFORMS)}")
        items.append((name, dict(params)))
    return items


def transforms_from_config(spec, sensor_size) -> Compose:
    """Build the transforms a config names, for events of a ``(W, H)`` sensor. ``sensor_size`` is
    filled in for each transform that needs it (the size left by the transforms before it); list
    values become tuples (``size: [112, 112]``). Errors name the item, the transform and the key."""
    out = []
    sensor = tuple(sensor_size)
    for n, (name, params) in enumerate(_spec_items(spec), 1):
        cls = TRANSFORMS[name]
        names = [f.name for f in fields(cls) if f.name not in ("sensor_size", "rng")]
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise InputError(f"transforms item {n} ({name}): unknown parameter(s) {', '.join(unknown)}; "
                             f"{name} takes {', '.join(names) or 'none'}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        if "sensor_size" in [f.name for f in fields(cls)]:
            kwargs["sensor_size"] = sensor
        try:
            t = cls(**kwargs)
        except TypeError as err:  # a required parameter missing
            need = [f.name for f in fields(cls) if f.name in names and f.default is MISSING
                    and f.default_factory is MISSING]
            raise InputError(f"transforms item {n} ({name}): {err}; it needs {', '.join(need)}") from None
        except ValueError as err:
            raise InputError(f"transforms item {n} ({name}): {err}") from None
        sensor = output_size(t, sensor)
        out.append(t)
    return Compose(out)


def check_transforms_spec(spec) -> None:
    """Validate names and parameters of a ``transforms:`` list without knowing the sensor yet."""
    transforms_from_config(spec, (1 << 15, 1 << 15))
