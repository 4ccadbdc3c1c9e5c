"""An ESIM-style DVS simulator: intensity frames with timestamps -> an event array.

Model (Rebecq et al., ESIM, CoRL 2018; Gallego et al., "Event-based Vision: A Survey"):

* each pixel tracks ``L = log(I + eps)`` and a reference level ``ref`` (the log intensity at its
  last event; initially the first frame);
* between two frames ``L`` is linearly interpolated; every time it crosses ``ref + k*C_on``
  (or ``ref - k*C_off``) the pixel emits an ON (OFF) event at the interpolated crossing time,
  and ``ref`` moves by one threshold, so one interval can yield several events per pixel;
* per-pixel thresholds carry a fixed Gaussian mismatch ``C * (1 + sigma * N(0, 1))``;
* a refractory period drops events closer than ``refractory_us`` to the pixel's previous
  emitted event (the reference still moves: the change has been consumed);
* background activity: Poisson noise events at ``noise_rate_hz`` per pixel, random polarity;
  hot pixels: a fixed random subset firing at ``hot_pixel_rate_hz``.

Vectorised over pixels; the only Python loops are over frame intervals and over the (few)
crossings one pixel makes inside an interval. All randomness comes from ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .types import make_events


@dataclass
class SimulatorConfig:
    contrast_threshold_on: float = 0.2
    contrast_threshold_off: float = 0.2
    threshold_sigma: float = 0.03
    refractory_us: int = 0
    noise_rate_hz: float = 0.0
    hot_pixel_fraction: float = 0.0
    hot_pixel_rate_hz: float = 200.0
    log_eps: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        for name in ("contrast_threshold_on", "contrast_threshold_off", "log_eps"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("threshold_sigma", "refractory_us", "noise_rate_hz", "hot_pixel_rate_hz"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hot_pixel_fraction <= 1.0:
            raise InputError(f"hot_pixel_fraction must be in [0, 1], got {self.hot_pixel_fraction}")


def _crossings(pix, L0, L1, ref, C, t0, t1, sign):
    """Events of candidate pixels ``pix`` whose level moves past ``ref + sign*k*C`` in (t0, t1].

    Returns (pixel of each event, event times, number of crossings per candidate).
    """
    n = np.floor(sign * (L1[pix] - ref[pix]) / C[pix]).astype(np.int64)
    rep = np.repeat(pix, n)
    if rep.size == 0:
        return rep, np.zeros(0, np.int64), n
    # k = 1..n for each pixel: position inside its run of crossings
    k = np.arange(rep.size) - np.repeat(np.cumsum(n) - n, n) + 1
    level = ref[rep] + sign * k * C[rep]
    frac = (level - L0[rep]) / (L1[rep] - L0[rep])
    t = t0 + np.clip(frac, 0.0, 1.0) * (t1 - t0)
    return rep, np.round(t).astype(np.int64), n


def simulate_events(frames: np.ndarray, timestamps_us: np.ndarray,
                    config: SimulatorConfig | None = None) -> np.ndarray:
    """Convert ``frames [N, H, W]`` (linear intensity >= 0) at ``timestamps_us [N]`` into events."""
    cfg = config or SimulatorConfig()
    frames = np.asarray(frames, dtype=np.float64)
    ts = np.asarray(timestamps_us, dtype=np.int64)
    if frames.ndim != 3:
        raise InputError(f"frames must be [N, H, W] intensities, got shape {frames.shape}")
    if ts.shape != (frames.shape[0],):
        raise InputError(f"timestamps_us must have one entry per frame ({frames.shape[0]}), got shape {ts.shape}")
    if np.any(np.diff(ts) <= 0):
        raise InputError("timestamps_us must be strictly increasing")
    if np.any(frames < 0) or not np.all(np.isfinite(frames)):
        raise InputError("frames must hold finite, non-negative intensities")
    N, H, W = frames.shape
    rng = np.random.default_rng(cfg.seed)
    P = H * W
    logs = np.log(frames.reshape(N, P) + cfg.log_eps)
    c_on = cfg.contrast_threshold_on * (1 + cfg.threshold_sigma * rng.standard_normal(P))
    c_off = cfg.contrast_threshold_off * (1 + cfg.threshold_sigma * rng.standard_normal(P))
    c_on, c_off = np.maximum(c_on, 0.01), np.maximum(c_off, 0.01)
    ref = logs[0].copy()
    last_t = np.full(P, np.iinfo(np.int64).min // 2)
    out_pix, out_t, out_p = [], [], []
    for i in range(N - 1):
        L0, L1, t0, t1 = logs[i], logs[i + 1], ts[i], ts[i + 1]
        change = L1 - ref
        for sign, C, pol in ((1.0, c_on, 1), (-1.0, c_off, 0)):
            candidates = np.flatnonzero(sign * change >= C)
            if candidates.size == 0:
                continue
            pix, t, n = _crossings(candidates, L0, L1, ref, C, t0, t1, sign)
            ref[candidates] += sign * n * C[candidates]
            if cfg.refractory_us > 0:
                keep = np.zeros(pix.size, bool)
                # crossings of one pixel are consecutive and time-ordered; walk them in rank order
                start = np.r_[0, np.flatnonzero(np.diff(pix)) + 1]
                rank = np.arange(pix.size) - np.repeat(start, np.diff(np.r_[start, pix.size]))
                for r in range(int(rank.max()) + 1):
                    sel = np.flatnonzero(rank == r)
                    ok = t[sel] - last_t[pix[sel]] >= cfg.refractory_us
                    keep[sel[ok]] = True
                    last_t[pix[sel[ok]]] = t[sel[ok]]
                pix, t = pix[keep], t[keep]
            out_pix.append(pix)
            out_t.append(t)
            out_p.append(np.full(pix.size, pol, np.int8))
    duration_s = (ts[-1] - ts[0]) * 1e-6
    if cfg.noise_rate_hz > 0:
        k = rng.poisson(cfg.noise_rate_hz * P * duration_s)
        out_pix.append(rng.integers(0, P, k))
        out_t.append(rng.integers(ts[0], ts[-1] + 1, k))
        out_p.append(rng.integers(0, 2, k).astype(np.int8))
    if cfg.hot_pixel_fraction > 0:
        hot = rng.choice(P, size=int(round(cfg.hot_pixel_fraction * P)), replace=False)
        counts = rng.poisson(cfg.hot_pixel_rate_hz * duration_s, hot.size)
        out_pix.append(np.repeat(hot, counts))
        out_t.append(rng.integers(ts[0], ts[-1] + 1, int(counts.sum())))
        out_p.append(rng.integers(0, 2, int(counts.sum())).astype(np.int8))
    if not out_pix:
        return make_events([], [], [], [])
    pix, t, p = np.concatenate(out_pix), np.concatenate(out_t), np.concatenate(out_p)
    order = np.argsort(t, kind="stable")
    pix, t, p = pix[order], t[order], p[order]
    return make_events(t, pix % W, pix // W, p, sort=False)
