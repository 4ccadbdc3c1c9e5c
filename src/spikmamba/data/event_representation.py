"""One configurable event -> tensor representation, named in configs by ``kind``.

``frames`` (T frames, 2 polarity channels, split by time or by event count, counts or binary),
``adaptive`` (the same frames at ``frames * fine_steps`` fine bins: the input of EAS-SNN's
learned sampler, :class:`~spikmamba.nn.AdaptiveSampler`, which makes the T steps itself),
``voxel`` (T bilinear time bins, 1 signed channel), ``count`` (one 2-channel count image,
T = 1) and ``afe`` (ExACT's adaptive frames, 3 channels). Counts may be ``log1p``-scaled (robust
to a clip's event rate), and frames resized to ``resolution`` with area averaging (the
published scripts resize to 128x128).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..events import batched as on_device
from ..events.afe import to_afe_frames
from ..events.representations import to_frames
from ..events.voxel import to_count_image, to_voxel_grid

KINDS = ("frames", "voxel", "count", "afe", "adaptive")
#: the largest count :func:`_log1p_counts` looks up in a table (larger ones are computed)
LOOKUP_COUNTS = 1 << 16


def _log1p_counts(raw: np.ndarray) -> np.ndarray:
    """``float32 log1p(raw)``. Why a table: counts are small non-negative integers, so looking
    each up in ``log1p(0..max)`` (computed by the same float32 ``np.log1p``, so the values are
    identical) is several times faster than ``log1p`` over every pixel (2.3 ms against 0.3 ms
    for 8x2x128x128 frames), which matters for live windows."""
    if raw.dtype.kind in "iu" and raw.size:
        low, high = int(raw.min()), int(raw.max())
        if low >= 0 and high <= LOOKUP_COUNTS:
            return np.log1p(np.arange(high + 1, dtype=np.float32))[raw]
    return np.log1p(raw.astype(np.float32))


@dataclass(frozen=True)
class EventRepresentation:
    sensor_size: tuple[int, int]
    kind: str = "frames"
    frames: int = 8
    split_by: str = "time"
    binary: bool = False
    normalize: str = "log1p"
    resolution: tuple[int, int] | None = None
    afe_threshold: float = 50.0
    afe_min_events: int = 100_000
    fine_steps: int = 1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(f"representation kind {self.kind!r} unknown; choose one of {KINDS}")
        if self.normalize not in ("log1p", "none"):
            raise InputError(f"normalize must be 'log1p' or 'none', got {self.normalize!r}")

    @property
    def channels(self) -> int:
        return {"frames": 2, "voxel": 1, "count": 2, "afe": 3, "adaptive": 2}[self.kind]

    @property
    def time_steps(self) -> int:
        if self.kind == "adaptive":
            return self.frames * self.fine_steps
        return 1 if self.kind == "count" else self.frames

    def raw(self, events: np.ndarray) -> np.ndarray:
        """The integer (or, for voxels, float) stage, before any float scaling or resizing: what
        the representation cache stores. ``finish(raw(events))`` is the model input."""
        if self.kind in ("frames", "adaptive"):
            return to_frames(events, self.sensor_size, self.time_steps, self.split_by, self.binary, dtype=np.int64)
        if self.kind == "voxel":
            return to_voxel_grid(events, self.sensor_size, self.frames)[:, None]
        if self.kind == "count":
            return to_count_image(events, self.sensor_size, dtype=np.int64)[None]
        return to_afe_frames(events, self.sensor_size, self.frames, self.afe_threshold, self.afe_min_events).astype(
            np.uint8
        )

    def raw_shape(self) -> tuple[int, int, int, int]:
        W, H = self.sensor_size
        return (self.time_steps, self.channels, H, W)

    @property
    def log_scaled(self) -> bool:
        """Whether the counts are ``log1p``-scaled (``normalize``; counting kinds only)."""
        return self.normalize == "log1p" and self.kind in ("frames", "count", "adaptive")

    @property
    def resized_hw(self) -> tuple[int, int] | None:
        """``(H, W)`` the frames are resized to, or None when they keep the sensor's size."""
        if self.resolution is None or tuple(self.resolution) == tuple(self.sensor_size):
            return None
        W, H = self.resolution
        return H, W

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """``float32 [T, C, H, W]``: ``log1p`` of counts (``normalize``), then resized to ``resolution``."""
        x = _log1p_counts(raw) if self.log_scaled else raw.astype(np.float32)
        if self.resized_hw is not None:
            x = F.interpolate(torch.from_numpy(np.ascontiguousarray(x)), size=self.resized_hw, mode="area").numpy()
        return x.astype(np.float32, copy=False)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return self.finish(self.raw(events))

    def batched(self, batch: on_device.EventBatch) -> torch.Tensor:
        """``float32 [B, T, C, H, W]`` of a whole batch of events, built where the batch is (see
        :mod:`spikmamba.events.batched`): each sample equals ``self(events)``."""
        if self.kind in ("frames", "adaptive"):
            x = on_device.frames(batch, self.sensor_size, self.time_steps, self.split_by, self.binary)
        elif self.kind == "voxel":
            x = on_device.voxel_grid(batch, self.sensor_size, self.frames)
        elif self.kind == "count":
            x = on_device.count_image(batch, self.sensor_size)
        else:
            x = on_device.afe_frames(batch, self.sensor_size, self.frames, self.afe_threshold, self.afe_min_events)
        if self.log_scaled:
            x = torch.log1p(x)
        if self.resized_hw is not None:
            x = F.interpolate(x.flatten(0, 1), size=self.resized_hw, mode="area").unflatten(0, x.shape[:2])
        return x

    def __repr__(self) -> str:
        return "EventRepresentation(" + ", ".join(f"{k}={v!r}" for k, v in asdict(self).items()) + ")"
