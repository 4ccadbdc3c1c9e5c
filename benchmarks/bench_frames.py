"""Events -> frames (T=16, 128x128, 2 polarities): ours vs a torch.bincount version and tonic (when installed)."""
import numpy as np
import torch

from spikmamba.benchmark import optional
from spikmamba.events import make_events, to_frames


def _events(n):
    rng = np.random.default_rng(0)
    return make_events(np.sort(rng.integers(0, 1_000_000, n)), rng.integers(0, 128, n), rng.integers(0, 128, n),
                       rng.integers(0, 2, n))


def _torch_bincount(ev, T=16):
    t = torch.from_numpy(ev["t"].astype(np.int64))
    x, y, p = (torch.from_numpy(ev[k].astype(np.int64)) for k in ("x", "y", "p"))
    span = int(t[-1] - t[0]) + 1
    f = torch.clamp((t - t[0]) * T // span, max=T - 1)
    idx = ((f * 2 + p) * 128 + y) * 128 + x
    return torch.bincount(idx, minlength=T * 2 * 128 * 128).view(T, 2, 128, 128)


def make(n):
    def setup(quick: bool):
        count = 10_000 if quick else n
        ev = _events(count)
        impls = {"spikmamba to_frames": lambda: to_frames(ev, (128, 128), 16),
                 "torch.bincount": lambda: _torch_bincount(ev)}
        missing = optional("tonic")
        if missing is None:
            import tonic

            tonic_ev = np.zeros(count, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
            for k in ("x", "y", "t", "p"):
                tonic_ev[k] = ev[k]
            tf = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_time_bins=16)
            impls["tonic ToFrame"] = lambda: tf(tonic_ev)
        else:
            impls["tonic ToFrame"] = missing
        return {"what": f"{count:,} events -> 16 frames of 2x128x128", "impls": impls}
    return setup


BENCHMARKS = {"frames-1e6": make(1_000_000), "frames-1e7": make(10_000_000)}
