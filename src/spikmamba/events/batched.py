"""Representations of a whole batch of event streams, built with tensor ops where the model is.

Why: on a GPU the loader workers spend most of their time turning events into dense frames,
and then ship ``B x T x C x H x W`` floats to the device. Here the workers send the compact
events instead (:class:`EventBatch`: the batch's events end to end, and each sample's count),
and each representation is one scatter-add into ``[B, T, C, H, W]`` on the device.

Every builder gives what its per-sample NumPy twin gives (``to_frames``, ``to_voxel_grid``,
``to_count_image``, ``to_afe_frames``), sample by sample; the tests compare them. Counts are
integers, so they are exact whatever order the scatter adds them in; voxel weights accumulate
in float64 like the twin's ``bincount`` and agree to float32 rounding.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .types import sensor_wh


class EventBatch(NamedTuple):
    """The events of ``B`` samples, concatenated in sample order, and each sample's event count."""

    x: torch.Tensor  # int32 [N]
    y: torch.Tensor  # int32 [N]
    t: torch.Tensor  # int64 [N]
    p: torch.Tensor  # int32 [N], 0 = OFF, 1 = ON
    lengths: torch.Tensor  # int64 [B]

    @classmethod
    def pack(cls, streams: list[np.ndarray]) -> EventBatch:
        """One batch from structured event arrays (fields ``x, y, t, p``)."""
        def field(name, dtype):
            parts = [np.asarray(s[name]) for s in streams]
            return torch.from_numpy(np.concatenate(parts).astype(dtype, copy=False)) if parts else \
                torch.zeros(0, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)

        return cls(field("x", np.int32), field("y", np.int32), field("t", np.int64), field("p", np.int32),
                   torch.tensor([len(s) for s in streams], dtype=torch.int64))

    def to(self, device, non_blocking: bool = False) -> EventBatch:
        return EventBatch(*(v.to(device, non_blocking=non_blocking) for v in self))

    def pin_memory(self) -> EventBatch:  # DataLoader(pin_memory=True) calls this
        return EventBatch(*(v.pin_memory() for v in self))

    def __len__(self) -> int:  # the number of samples, as for a batch tensor
        return int(self.lengths.numel())

    @property
    def sample(self) -> torch.Tensor:
        """The sample of each event, int64 ``[N]``."""
        return torch.repeat_interleave(torch.arange(len(self), device=self.lengths.device), self.lengths)

    @property
    def starts(self) -> torch.Tensor:
        """The index of each sample's first event, int64 ``[B]``."""
        return torch.cumsum(self.lengths, 0) - self.lengths

    def rank(self) -> torch.Tensor:
        """Each event's position within its own sample, int64 ``[N]``."""
        return torch.arange(self.t.numel(), device=self.t.device) - self.starts[self.sample]


def _counts(index: torch.Tensor, size: int) -> torch.Tensor:
    """``bincount`` of ``index`` as float32 (integers: exact in any order up to 2**24 per bin)."""
    out = torch.zeros(size, dtype=torch.float32, device=index.device)
    return out.index_add_(0, index, torch.ones(index.numel(), dtype=torch.float32, device=index.device))


def _polarity_pixel(batch: EventBatch, slot: torch.Tensor, H: int, W: int, ev=slice(None)) -> torch.Tensor:
    """The flat index ``((slot * 2 + (p > 0)) * H + y) * W + x`` of the events ``ev`` into
    ``[slots, 2, H, W]`` count images (channel 0 OFF, 1 ON)."""
    return ((slot * 2 + (batch.p[ev] > 0).long()) * H + batch.y[ev]) * W + batch.x[ev]


def _halves(seg: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
    """Segments ``(sample, start, stop)`` cut at ``mid``: the first halves, then the second."""
    return torch.cat([torch.stack([seg[:, 0], seg[:, 1], mid], 1), torch.stack([seg[:, 0], mid, seg[:, 2]], 1)])


def _per_sample(values: torch.Tensor, sample: torch.Tensor, B: int, how: str) -> torch.Tensor:
    init = torch.full((B,), 0, dtype=values.dtype, device=values.device)
    return init.scatter_reduce(0, sample, values, how, include_self=False)


def frames(batch: EventBatch, sensor_size, n_frames: int, split_by: str = "time", binary: bool = False) -> torch.Tensor:
    """``[B, n_frames, 2, H, W]`` float32 counts (0/1 with ``binary``), as ``to_frames`` per sample:
    by ``time``, ``[min t, max t]`` cut into equal spans; by ``number``, runs of equal count."""
    if n_frames < 1:
        raise InputError(f"n_frames must be >= 1, got {n_frames}")
    if split_by not in ("time", "number"):
        raise InputError(f"split_by must be 'time' or 'number', got {split_by!r}")
    W, H = sensor_wh(sensor_size)
    B, sample = len(batch), batch.sample
    if split_by == "time":
        t0 = _per_sample(batch.t, sample, B, "amin")[sample]
        span = (_per_sample(batch.t, sample, B, "amax")[sample] - t0).clamp_min(1)
        frame = torch.div((batch.t - t0) * n_frames, span, rounding_mode="floor").clamp_(0, n_frames - 1)
    else:
        frame = torch.div(batch.rank() * n_frames, batch.lengths[sample], rounding_mode="floor")
    index = (((sample * n_frames + frame) * 2 + batch.p) * H + batch.y) * W + batch.x
    out = _counts(index, B * n_frames * 2 * H * W).view(B, n_frames, 2, H, W)
    return (out > 0).float() if binary else out


def count_image(batch: EventBatch, sensor_size) -> torch.Tensor:
    """``[B, 1, 2, H, W]`` float32 per-pixel counts (channel 0 OFF, 1 ON), as ``to_count_image``."""
    W, H = sensor_wh(sensor_size)
    index = _polarity_pixel(batch, batch.sample, H, W)
    return _counts(index, len(batch) * 2 * H * W).view(len(batch), 1, 2, H, W)


def voxel_grid(batch: EventBatch, sensor_size, n_bins: int) -> torch.Tensor:
    """``[B, n_bins, 1, H, W]`` float32 voxel grids, as ``to_voxel_grid`` per sample: time
    normalised over each sample's first..last event, each event's polarity split between its two
    nearest bins. Accumulated in float64, cast once."""
    if n_bins < 1:
        raise InputError(f"n_bins must be >= 1, got {n_bins}")
    W, H = sensor_wh(sensor_size)
    B, sample, HW = len(batch), batch.sample, H * W
    first = batch.starts.clamp_max(max(batch.t.numel() - 1, 0))
    last = (batch.starts + batch.lengths - 1).clamp_min(0)
    t = batch.t.double()
    if t.numel():
        t0, span = t[first][sample], (t[last] - t[first])[sample]
    else:
        t0 = span = t
    tn = torch.where(span > 0, (t - t0) * ((n_bins - 1) / span.clamp_min(1e-300)), torch.zeros_like(t))
    left = tn.floor()
    frac = tn - left
    left = left.long().clamp_(0, n_bins - 1)
    pol = torch.where(batch.p > 0, 1.0, -1.0).double()
    pix = batch.y.long() * W + batch.x
    grid = torch.zeros(B * n_bins * HW, dtype=torch.float64, device=t.device)
    grid.index_add_(0, (sample * n_bins + left) * HW + pix, pol * (1.0 - frac))
    ok = left + 1 < n_bins
    grid.index_add_(0, ((sample * n_bins + left + 1) * HW + pix)[ok], (pol * frac)[ok])
    return grid.view(B, n_bins, 1, H, W).float()


def _open2x2(img: torch.Tensor) -> torch.Tensor:
    """2x2 erosion then 2x2 dilation of ``[K, C, H, W]``, aligned as ``afe._open2x2``."""
    ero = -F.max_pool2d(-F.pad(img, (1, 0, 1, 0), value=float("inf")), 2, stride=1)
    return F.max_pool2d(F.pad(ero, (0, 1, 0, 1), value=float("-inf")), 2, stride=1)


def _ranges(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(which range, event index)`` of every index in the ranges ``[a_k, b_k)``."""
    n = (b - a).clamp_min(0)
    which = torch.repeat_interleave(torch.arange(a.numel(), device=a.device), n)
    offset = torch.arange(int(n.sum()), device=a.device) - (torch.cumsum(n, 0) - n)[which]
    return which, a[which] + offset


def afe_segments(batch: EventBatch, sensor_size, threshold: float = 50.0,
                 min_events: int = 100_000) -> list[list[tuple[int, int]]]:
    """Each sample's AFE segments (event ranges within the sample, in time order), as
    ``afe.afe_segments``: the recursion runs level by level over every sample's pending segments
    at once (one scatter and two pools per level)."""
    W, H = sensor_wh(sensor_size)
    dev, starts = batch.t.device, batch.starts
    done: list[tuple[int, int, int]] = []
    seg = torch.stack([torch.arange(len(batch), device=dev), torch.zeros_like(batch.lengths), batch.lengths], 1)
    while seg.numel():
        n = seg[:, 2] - seg[:, 1]
        small = n < 2
        done += [tuple(r) for r in seg[small].tolist()]
        seg, n = seg[~small], n[~small]
        if not seg.numel():
            break
        half = n // 2
        lo, mid, hi = seg[:, 1], seg[:, 1] + half, seg[:, 2]
        base = starts[seg[:, 0]]
        which, ev = _ranges(torch.cat([lo, mid]) + base.repeat(2), torch.cat([mid, hi]) + base.repeat(2))
        K = seg.shape[0]
        index = _polarity_pixel(batch, which, H, W, ev)
        gray = _open2x2(_counts(index, 2 * K * 2 * H * W).view(2 * K, 2, H, W)).sum(1)
        diff = (gray[:K] - gray[K:]).abs().sum((1, 2))
        whole = 200.0 * diff / n <= threshold  # float32, as the NumPy twin computes it
        split = ~whole & (half <= min_events)
        deeper = ~whole & ~split
        done += [tuple(r) for r in seg[whole].tolist()]
        done += [tuple(r) for r in _halves(seg[split], mid[split]).tolist()]
        seg = _halves(seg[deeper], mid[deeper])
    out: list[list[tuple[int, int]]] = [[] for _ in range(len(batch))]
    for b, a, e in sorted(done):
        out[b].append((a, e))
    return out


def afe_frames(batch: EventBatch, sensor_size, n_frames: int, threshold: float = 50.0,
               min_events: int = 100_000) -> torch.Tensor:
    """``[B, n_frames, 3, H, W]`` float32 AFE frames, as ``to_afe_frames`` per sample."""
    W, H = sensor_wh(sensor_size)
    B, dev = len(batch), batch.t.device
    picked = []
    for segs in afe_segments(batch, sensor_size, threshold, min_events):
        pick = np.round(np.linspace(0, len(segs) - 1, n_frames)).astype(int)  # the twin's own rounding
        picked += [segs[i] for i in pick]
    ranges = torch.tensor(picked, dtype=torch.int64, device=dev).view(B * n_frames, 2)
    base = batch.starts.repeat_interleave(n_frames)
    slot, ev = _ranges(ranges[:, 0] + base, ranges[:, 1] + base)
    index = _polarity_pixel(batch, slot, H, W, ev)
    seen = _counts(index, B * n_frames * 2 * H * W).view(B, n_frames, 2, H, W) > 0
    off, on = seen[:, :, 0], seen[:, :, 1]
    return torch.stack([~off, ~(off | on), ~on], 2).float()
