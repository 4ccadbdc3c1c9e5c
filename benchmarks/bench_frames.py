"""Events -> representations at 1e6 / 1e7 random events, 128x128, T=16: ours (compiled loop when
numba is installed; the NumPy path beside it) vs a plain numba loop, torch.bincount and tonic."""
import numpy as np
import torch

from spikmamba.benchmark import Skip, optional
from spikmamba.events import _numba, make_events, to_frames
from spikmamba.events.afe import to_afe_frames
from spikmamba.events.voxel import to_voxel_grid


def _events(n):
    rng = np.random.default_rng(0)
    return make_events(np.sort(rng.integers(0, 1_000_000, n)), rng.integers(0, 128, n), rng.integers(0, 128, n),
                       rng.integers(0, 2, n))


def _numpy(fn):
    """Our NumPy fallback, timed in the same process as the compiled path."""
    def run():
        with _numba.disabled():
            return fn()
    return run


def _torch_bincount(ev, T=16):
    t = torch.from_numpy(ev["t"].astype(np.int64))
    x, y, p = (torch.from_numpy(ev[k].astype(np.int64)) for k in ("x", "y", "p"))
    span = int(t[-1] - t[0]) + 1
    f = torch.clamp((t - t[0]) * T // span, max=T - 1)
    idx = ((f * 2 + p) * 128 + y) * 128 + x
    return torch.bincount(idx, minlength=T * 2 * 128 * 128).view(T, 2, 128, 128)


_plain = None


def _plain_numba_loop():
    """The baseline of the performance anchors: one pass, integer frame index, no checks (written
    here for the benchmark only)."""
    global _plain
    if _plain is None:
        import numba

        @numba.njit(cache=False)
        def loop(t, x, y, p, T, out):
            t0, span = t[0], max(t[-1] - t[0], 1)
            for i in range(t.shape[0]):
                out[min((t[i] - t0) * T // span, T - 1), p[i], y[i], x[i]] += 1
            return out

        _plain = loop
    return _plain


def _tonic_events(ev):
    out = np.zeros(len(ev), dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    for k in ("x", "y", "t", "p"):
        out[k] = ev[k]
    return out


def _tonic(transform: str, ev):
    """tonic's ``transform`` (16 bins, 128x128x2) on the same events, or a Skip without tonic."""
    missing = optional("tonic")
    if missing is not None:
        return missing
    import tonic

    tonic_ev = _tonic_events(ev)
    t = getattr(tonic.transforms, transform)(sensor_size=(128, 128, 2), n_time_bins=16)
    return lambda: t(tonic_ev)


def _ours(name, fn, impls):
    if _numba.AVAILABLE:
        fn()  # compile (and warm the cache) before anything is timed
        impls[f"{name} (compiled)"] = fn
    else:
        impls[f"{name} (compiled)"] = Skip("numba is not installed (pip install spikmamba[fast])")
    impls[f"{name} (NumPy path)"] = _numpy(fn)


def make_frames(n):
    def setup(quick: bool):
        count = 10_000 if quick else n
        ev = _events(count)
        impls = {}
        _ours("spikmamba to_frames", lambda: to_frames(ev, (128, 128), 16), impls)
        if _numba.AVAILABLE:
            loop = _plain_numba_loop()
            fields = [np.ascontiguousarray(ev[k]) for k in ("t", "x", "y", "p")]
            loop(*fields, 16, np.zeros((16, 2, 128, 128), np.int64))
            impls["plain numba loop"] = lambda: loop(*fields, 16, np.zeros((16, 2, 128, 128), np.int64))
        impls["torch.bincount"] = lambda: _torch_bincount(ev)
        impls["tonic ToFrame"] = _tonic("ToFrame", ev)
        return {"what": f"{count:,} events -> 16 frames of 2x128x128", "impls": impls}
    return setup


def make_voxel(n):
    def setup(quick: bool):
        count = 10_000 if quick else n
        ev = _events(count)
        impls = {}
        _ours("spikmamba to_voxel_grid", lambda: to_voxel_grid(ev, (128, 128), 16), impls)
        impls["tonic ToVoxelGrid"] = _tonic("ToVoxelGrid", ev)
        return {"what": f"{count:,} events -> voxel grid of 16 bins, 128x128", "impls": impls}
    return setup


def make_afe(n):
    def setup(quick: bool):
        count = 10_000 if quick else n
        ev = _events(count)
        impls = {}
        _ours("spikmamba to_afe_frames", lambda: to_afe_frames(ev, (128, 128), 16, min_events=count // 64), impls)
        return {"what": f"{count:,} events -> 16 AFE frames of 3x128x128 (min_events n/64)", "impls": impls}
    return setup


BENCHMARKS = {"frames-1e6": make_frames(1_000_000), "frames-1e7": make_frames(10_000_000),
              "voxel-1e6": make_voxel(1_000_000), "afe-1e6": make_afe(1_000_000)}
