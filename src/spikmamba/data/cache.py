"""The on-disk representation cache: one small file per sample, compact, safe to share.

Why: building a representation (reading a recording, binning its events) costs milliseconds to
seconds per sample, every epoch; a float32 tensor per sample costs 3.1 MB at the published
SpikMamba input, 330 GB for HARDVS. So an entry stores the representation *before* its
float stages (log scaling, resizing), which are cheap to redo on load:

* integer counts (frames, count images, the adaptive sampler's fine frames) and 0/1 AFE frames
  are stored as the smallest unsigned type that holds them (uint8, else uint16, else uint32);
* voxel grids (fractional) as float32;
* each dense, sparse (flat indices of the nonzero elements + their values) or, for 0/1 data,
  one bit per element, whichever is smallest. Event frames are mostly zeros: an N-MNIST sample
  at T=16 takes about 10 kB (its float32 input at 128x128 is 2 MB), a DVS128 Gesture clip about
  225 kB (2 MB), an AFE clip one bit per pixel.

Entries are ``.npz`` archives (read with ``allow_pickle=False``) written to a temporary file and
renamed into place, so several workers and processes can fill one cache at once (the last
rename wins; all wrote the same bytes). An entry that cannot be read back (truncated by a crash,
damaged) is recomputed and replaced. A folder that cannot be written (read-only, disk full) is
reported once, with its path and the reason, and samples are then computed without caching:
training is never stopped or fed a broken entry by its cache.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

#: bump when the entry layout changes: folders of another format are never read
CACHE_FORMAT = 2


def _value_dtype(raw: np.ndarray):
    if raw.dtype.kind == "f":
        return np.float32
    if raw.size == 0:
        return np.uint8
    lo, hi = int(raw.min()), int(raw.max())
    if lo < 0:
        return np.int16 if -2**15 <= lo and hi < 2**15 else np.int32
    return np.uint8 if hi < 2**8 else np.uint16 if hi < 2**16 else np.uint32


def encode(raw: np.ndarray) -> "dict[str, np.ndarray]":
    """The arrays of one entry: ``shape`` plus ``dense``, or ``index`` + ``value`` (sparse)."""
    raw = np.asarray(raw)
    if raw.dtype == bool:
        raw = raw.view(np.uint8)
    vtype = np.dtype(_value_dtype(raw))
    flat = raw.reshape(-1)
    itype = np.dtype(np.uint32 if flat.size < 2**32 else np.uint64)
    nz = np.flatnonzero(flat)
    out = {"shape": np.asarray(raw.shape, dtype=np.int64)}
    sizes = {"dense": flat.size * vtype.itemsize, "sparse": nz.size * (itype.itemsize + vtype.itemsize)}
    if vtype == np.uint8 and (flat.size == 0 or flat.max() <= 1):  # 0/1 data (AFE, binary frames): a bit each
        sizes["bits"] = (flat.size + 7) // 8
    best = min(sizes, key=sizes.get)
    if best == "bits":
        out["bits"] = np.packbits(flat.astype(np.uint8))
    elif best == "sparse":
        out["index"] = nz.astype(itype)
        out["value"] = flat[nz].astype(vtype)
    else:
        out["dense"] = flat.astype(vtype)
    return out


def decode(arrays) -> np.ndarray:
    """The representation an entry holds (integer entries as their stored type, voxels as float32)."""
    shape = tuple(int(v) for v in arrays["shape"])
    if "bits" in arrays:
        n = int(np.prod(shape))
        return np.unpackbits(np.asarray(arrays["bits"]), count=n).reshape(shape)
    if "dense" in arrays:
        return np.asarray(arrays["dense"]).reshape(shape)
    value = np.asarray(arrays["value"])
    out = np.zeros(int(np.prod(shape)), dtype=value.dtype)
    out[np.asarray(arrays["index"])] = value
    return out.reshape(shape)


def entry_bytes(raw: np.ndarray) -> int:
    """Bytes of payload one entry of ``raw`` takes (without the archive's few hundred bytes of framing)."""
    return sum(a.nbytes for a in encode(raw).values())


class RepresentationCache:
    """``get(key, shape)`` / ``put(key, raw)`` over one folder (see the module docstring)."""

    def __init__(self, folder: "str | os.PathLike"):
        self.folder = Path(folder)
        self.writable = True
        self.rebuilt = 0  # unreadable entries recomputed

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str, shape: "tuple | None" = None) -> "np.ndarray | None":
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                raw = decode(z)
            if shape is not None and tuple(raw.shape) != tuple(shape):
                raise ValueError(f"holds shape {tuple(raw.shape)}, expected {tuple(shape)}")
            return raw
        except Exception as err:  # truncated or damaged entry: recompute it (put() replaces the file)
            self.rebuilt += 1
            if self.rebuilt == 1:
                warnings.warn(f"representation cache {self.folder}: unreadable entry {path.name} "
                              f"({type(err).__name__}: {err}); it is recomputed and replaced", stacklevel=2)
            return None

    def put(self, key: str, raw: np.ndarray) -> None:
        if not self.writable:
            return
        path = self.path(key)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **encode(raw))
            os.replace(tmp, path)
            tmp = None
        except OSError as err:
            self.writable = False
            why = "no space left on the device" if err.errno == 28 else f"{type(err).__name__}: {err.strerror or err}"
            warnings.warn(f"representation cache {self.folder} cannot be written ({why}); samples are computed "
                          f"without caching from now on (set cache_dir to a writable folder with space, or leave "
                          f"it empty)", stacklevel=2)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
