"""SynthActions: a built-in, no-download action dataset rendered and passed through the DVS simulator.

Ten classes of a textured shape moving over a textured static background. Five of them are
the *time reversal* of the other five (the same rendered frames played backwards), so the
pairs differ only in temporal order; a model that ignores time cannot separate them:

    0 move_right   <-> 1 move_left        2 move_down  <-> 3 move_up
    4 rotate_cw    <-> 5 rotate_ccw       6 approach   <-> 7 recede
    8 wave_start_left <-> 9 wave_start_right   (a half-swing of a pendulum arm)

Each sample draws the shape (bar, cross, ellipse, rectangle), size, speed/extent, position,
contrast, background texture and sensor noise from a generator seeded by
``(seed, split, index)``, so a sample is reproducible without storing anything. Samples come
out as event arrays (the same type the real-data readers return), followed by ``transform``.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..events.simulator import SimulatorConfig, simulate_events

CLASSES = (
    "move_right", "move_left", "move_down", "move_up", "rotate_cw", "rotate_ccw",
    "approach", "recede", "wave_start_left", "wave_start_right",
)
SHAPES = ("bar", "cross", "ellipse", "rectangle")
_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


def _smooth_texture(rng: np.random.Generator, H: int, W: int, cells: int) -> np.ndarray:
    """Low-frequency random texture in [0, 1]: bilinear upsampling of a coarse random grid."""
    grid = rng.random((cells + 1, cells + 1))
    ys, xs = np.linspace(0, cells, H), np.linspace(0, cells, W)
    y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    return ((1 - fy) * (1 - fx) * grid[y0][:, x0] + (1 - fy) * fx * grid[y0][:, x0 + 1]
            + fy * (1 - fx) * grid[y0 + 1][:, x0] + fy * fx * grid[y0 + 1][:, x0 + 1])


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    """Soft (anti-aliased) mask of a shape in object coordinates (u, v), unit = pixels."""
    def soft(d):  # signed distance -> coverage, 1 px ramp
        return np.clip(0.5 - d, 0.0, 1.0)

    if shape == "bar":
        d = np.maximum(np.abs(u) - size, np.abs(v) - size * 0.25)
    elif shape == "cross":
        d = np.minimum(np.maximum(np.abs(u) - size, np.abs(v) - size * 0.25),
                       np.maximum(np.abs(u) - size * 0.25, np.abs(v) - size))
    elif shape == "ellipse":
        d = (np.sqrt((u / size) ** 2 + (v / (0.6 * size)) ** 2) - 1.0) * 0.6 * size
    else:
        d = np.maximum(np.abs(u) - size * 0.8, np.abs(v) - size * 0.5)
    return soft(d)


def render_action(label: int, rng: np.random.Generator, sensor_size=(64, 64), n_frames: int = 64) -> np.ndarray:
    """Render ``n_frames`` intensity frames ``[N, H, W]`` in [0, 1] for class ``label``."""
    W, H = sensor_size
    base, reverse = divmod(label, 2)
    shape = SHAPES[rng.integers(len(SHAPES))]
    scale = min(W, H)
    size = scale * rng.uniform(0.12, 0.2)
    bg = 0.25 + 0.5 * _smooth_texture(rng, H, W, int(rng.integers(3, 8)))
    obj_tex = _smooth_texture(rng, H, W, int(rng.integers(2, 5)))
    contrast = rng.uniform(0.3, 0.6) * rng.choice([-1.0, 1.0])
    cx, cy = W / 2 + rng.uniform(-0.1, 0.1) * W, H / 2 + rng.uniform(-0.1, 0.1) * H
    s = np.linspace(0.0, 1.0, n_frames)  # normalised time of the forward motion
    travel = scale * rng.uniform(0.3, 0.5)
    angle0 = rng.uniform(0, np.pi)
    sweep = rng.uniform(0.5, 1.0) * np.pi
    # per-frame pose: centre (x, y), angle, scale factor
    if base == 0:  # horizontal translation (right; reversed = left)
        px, py, ang, k = cx + (s - 0.5) * travel, np.full_like(s, cy), np.full_like(s, angle0), np.ones_like(s)
    elif base == 1:  # vertical translation (down; reversed = up)
        px, py, ang, k = np.full_like(s, cx), cy + (s - 0.5) * travel, np.full_like(s, angle0), np.ones_like(s)
    elif base == 2:  # rotation (clockwise on screen; reversed = counter-clockwise)
        px, py, ang, k = np.full_like(s, cx), np.full_like(s, cy), angle0 + sweep * s, np.ones_like(s)
    elif base == 3:  # approach: grows (reversed = recede)
        px, py, ang, k = np.full_like(s, cx), np.full_like(s, cy), np.full_like(s, angle0), 0.5 + 1.3 * s
    else:  # wave: an arm swinging from left to right about a pivot below it (reversed = right to left)
        pivot_y = cy + size * 1.5
        theta = (s - 0.5) * 0.9 * np.pi * 0.6
        px, py = cx + np.sin(theta) * size * 1.5, pivot_y - np.cos(theta) * size * 1.5
        ang, k = np.pi / 2 + theta, np.ones_like(s)
        shape = "bar"
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    frames = np.empty((n_frames, H, W))
    for i in range(n_frames):
        dx, dy = xs - px[i], ys - py[i]
        c, sn = np.cos(ang[i]), np.sin(ang[i])
        u, v = (c * dx + sn * dy) / k[i], (-sn * dx + c * dy) / k[i]
        m = _shape_mask(shape, u, v, size)
        frames[i] = np.clip(bg * (1 - m) + (bg + contrast * obj_tex) * m, 0.02, 1.0)
    return frames[::-1].copy() if reverse else frames


class SynthActions:
    """The built-in action dataset: ``ds[i] -> (transform(events), label)``.

    Args:
        split: ``'train'``, ``'val'`` or ``'test'`` (disjoint random streams).
        num_samples: samples in this split (balanced over the 10 classes).
        sensor_size: ``(W, H)`` of the simulated sensor.
        duration_us: clip length; ``n_render_frames`` frames are rendered across it.
        noise_rate_hz: background-activity rate per pixel (sampled per clip up to this value).
        seed: base seed; a sample depends only on ``(seed, split, index)``.
        transform: applied to the event array (e.g. :class:`~spikmamba.events.ToFrame`, or a
            random transform that draws from the ``rng`` :meth:`sample` passes).
        cache: keep generated samples in memory (they are deterministic, so this only saves time).
        representation, pre_transform: as for recorded datasets (:class:`~spikmamba.data.EventDataset`):
            ``pre_transform`` (deterministic) and ``transform`` run on the events, then
            ``representation`` makes the model input, returned as a float tensor.
    """

    classes = CLASSES
    name = "synth"
    modality = "events"

    def __init__(self, split: str = "train", num_samples: int = 2000, sensor_size=(64, 64),
                 duration_us: int = 500_000, n_render_frames: int = 48, noise_rate_hz: float = 0.5,
                 seed: int = 0, transform=None, cache: bool = True, representation=None, pre_transform=None):
        if split not in _SPLIT_OFFSET:
            raise InputError(f"split must be one of {sorted(_SPLIT_OFFSET)}, got {split!r}")
        if num_samples < 1:
            raise InputError(f"num_samples must be >= 1, got {num_samples}")
        self.split, self.num_samples, self.sensor_size = split, num_samples, tuple(sensor_size)
        self.duration_us, self.n_render_frames, self.noise_rate_hz = duration_us, n_render_frames, noise_rate_hz
        self.seed, self.transform = seed, transform
        self.representation, self.pre_transform = representation, pre_transform
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    @classmethod
    def from_config(cls, cfg, split: str) -> SynthActions:
        synth = cfg.data.synth
        n = synth.num_train if split == "train" else synth.num_test
        return cls(split, num_samples=n, sensor_size=(synth.sensor_size, synth.sensor_size), seed=cfg.run.seed,
                   cache=False)

    def configured(self, representation=None, transform=None, pre_transform=None, cache_dir=None) -> SynthActions:
        """A copy with another pipeline (``cache_dir`` is not used: clips are generated, not read)."""
        import copy

        other = copy.copy(self)
        other.representation, other.transform, other.pre_transform = representation, transform, pre_transform
        return other

    def source(self, index: int) -> str:
        return f"SynthActions {self.split} clip {index} (seed {self.seed})"

    def sample(self, index: int, rng=None):
        """``(x, label)``: like ``ds[index]``, random transforms drawing from ``rng``."""
        import torch

        ev = self.events(index)
        if self.pre_transform is not None:
            ev = self.pre_transform(ev)
        if self.transform is not None:
            ev = self.transform(ev, rng=rng) if getattr(self.transform, "random", False) else self.transform(ev)
        if self.representation is None:
            return ev, self.label(index)
        return torch.from_numpy(np.ascontiguousarray(self.representation(ev), dtype=np.float32)), self.label(index)

    def __len__(self) -> int:
        return self.num_samples

    def label(self, index: int) -> int:
        return index % len(CLASSES)

    @property
    def targets(self) -> list[int]:
        return [self.label(i) for i in range(self.num_samples)]

    def events(self, index: int) -> np.ndarray:
        """The raw event array of sample ``index`` (before ``transform``)."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        rng = np.random.default_rng([self.seed, _SPLIT_OFFSET[self.split], index])
        frames = render_action(self.label(index), rng, self.sensor_size, self.n_render_frames)
        ts = np.linspace(0, self.duration_us, self.n_render_frames).astype(np.int64)
        cfg = SimulatorConfig(
            contrast_threshold_on=rng.uniform(0.15, 0.3), contrast_threshold_off=rng.uniform(0.15, 0.3),
            threshold_sigma=0.03, refractory_us=int(rng.integers(0, 2000)),
            noise_rate_hz=rng.uniform(0, self.noise_rate_hz), hot_pixel_fraction=rng.uniform(0, 0.001),
            seed=int(rng.integers(2**31)),
        )
        ev = simulate_events(frames, ts, cfg)
        if self._cache is not None:
            self._cache[index] = ev
        return ev

    def __getitem__(self, index: int):
        if self.representation is not None or self.pre_transform is not None:
            return self.sample(index)
        ev = self.events(index)
        return (self.transform(ev) if self.transform else ev), self.label(index)


def export_clips(out_dir, count: int = 20, split: str = "test", sensor_size=(32, 32), seed: int = 0,
                 extension: str = ".npz") -> list:
    """Write ``count`` SynthActions clips of ``split`` as event files ``NNNN_<class>.<ext>`` plus
    ``labels.csv`` (``file,class_id,class_name``), so the built-in data can be read, shown and
    classified like recordings (``spikmamba synth --out DIR``). The clips are those a run with the
    same ``seed`` and ``sensor_size`` uses: test clip ``i`` is sample ``i`` of its test split.
    ``.npz`` (and ``.h5``) files store the sensor size; other formats need it passed when read."""
    import csv
    from pathlib import Path

    from ..events.io import write_events

    if count < 1:
        raise InputError(f"count must be >= 1, got {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = SynthActions(split, num_samples=count, sensor_size=tuple(sensor_size), seed=seed, cache=False)
    ext = extension if extension.startswith(".") else f".{extension}"
    rows, paths = [], []
    for i in range(count):
        name = f"{i:04d}_{CLASSES[ds.label(i)]}{ext}"
        write_events(out / name, ds.events(i), sensor_size=tuple(sensor_size))
        rows.append((name, ds.label(i), CLASSES[ds.label(i)]))
        paths.append(out / name)
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class_id", "class_name"])
        w.writerows(rows)
    return paths
