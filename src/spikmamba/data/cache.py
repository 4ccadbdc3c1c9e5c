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
rename wins; all wrote the same bytes). Each entry also records what it was computed for (a
digest of the source file's content, the window, the representation's parameters, the format)
and a SHA-256 of its payload. An entry that cannot be read back (truncated by a crash,
damaged), records anything else, fails its digest, declares members larger than its shape can
need (checked before decompressing) or holds impossible values (non-finite, negative counts,
indices out of bounds) is recomputed and replaced, with one warning. A folder that cannot be
written (read-only, disk full) is reported once, with its path and the reason, and samples are
then computed without caching: training is never stopped or fed a broken entry by its cache.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

#: bump when the entry layout changes: folders of another format are never read
CACHE_FORMAT = 3


def _value_dtype(raw: np.ndarray):
    if raw.dtype.kind == "f":
        return np.float32
    if raw.size == 0:
        return np.uint8
    lo, hi = int(raw.min()), int(raw.max())
    if lo < 0:
        return np.int16 if -2**15 <= lo and hi < 2**15 else np.int32
    return np.uint8 if hi < 2**8 else np.uint16 if hi < 2**16 else np.uint32


def encode(raw: np.ndarray) -> dict[str, np.ndarray]:
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


class CacheEntryMismatch(ValueError):
    """An entry that is readable but not what it must be (another source, other parameters,
    altered values): it is recomputed, never used."""


#: what an entry may hold: the payload (one of dense / index+value / bits) and its record
_PAYLOADS = ({"dense"}, {"index", "value"}, {"bits"})
_VALUE_TYPES = {np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.int16, np.int32, np.float32)}
_INDEX_TYPES = {np.dtype(np.uint32), np.dtype(np.uint64)}
_META_LIMIT = 64 * 1024


def payload_digest(meta: bytes, arrays: dict[str, np.ndarray]) -> bytes:
    """SHA-256 over the entry's record and every payload array (name, dtype, shape, bytes)."""
    h = hashlib.sha256(meta)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.digest()


def _read_entry(path: Path, n_elements: int) -> tuple[bytes, bytes, dict[str, np.ndarray]]:
    """The record, digest and payload arrays of one entry, each member's declared size bounded
    by what ``n_elements`` can need *before* anything is decompressed."""
    limit = n_elements * 8 + 4096  # the largest member: uint64 indices of every element, plus the .npy header
    arrays = {}
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        names = [i.filename[:-4] if i.filename.endswith(".npy") else i.filename for i in infos]
        payload = set(names) - {"shape", "meta", "digest"}
        if len(names) != len(set(names)) or payload not in _PAYLOADS or not {"shape", "meta", "digest"} <= set(names):
            raise CacheEntryMismatch(f"holds members {sorted(names)}")
        for info, name in zip(infos, names):
            cap = _META_LIMIT if name in ("meta", "digest", "shape") else limit
            if info.file_size > cap:
                raise CacheEntryMismatch(f"member {name!r} declares {info.file_size:,} bytes, more than the "
                                         f"{cap:,} an entry of {n_elements:,} elements can need")
            with zf.open(info) as f:
                arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
    meta, digest = arrays.pop("meta"), arrays.pop("digest")
    if meta.dtype != np.uint8 or digest.dtype != np.uint8:
        raise CacheEntryMismatch("its record is not bytes")
    return meta.tobytes(), digest.tobytes(), arrays


def _check_payload(arrays: dict[str, np.ndarray], shape: tuple) -> None:
    """Types, index bounds and values of a payload whose shape is ``shape``."""
    n = int(np.prod(shape))
    if arrays["shape"].dtype != np.int64 or tuple(int(v) for v in arrays["shape"]) != tuple(shape):
        raise CacheEntryMismatch(f"holds shape {tuple(arrays['shape'].tolist())}, expected {tuple(shape)}")
    if "bits" in arrays:
        if arrays["bits"].dtype != np.uint8 or arrays["bits"].shape != ((n + 7) // 8,):
            raise CacheEntryMismatch("its bit array does not fit the shape")
        return
    values = arrays.get("dense", arrays.get("value"))
    if values.dtype not in _VALUE_TYPES or values.ndim != 1:
        raise CacheEntryMismatch(f"holds values of type {values.dtype}")
    if "dense" in arrays and values.size != n:
        raise CacheEntryMismatch(f"holds {values.size} values for {n} elements")
    if "index" in arrays:
        index = arrays["index"]
        if index.dtype not in _INDEX_TYPES or index.shape != values.shape:
            raise CacheEntryMismatch("its sparse index does not match its values")
        if index.size and (int(index[-1]) >= n or (index.size > 1 and not np.all(index[1:] > index[:-1]))):
            raise CacheEntryMismatch("its sparse index is out of bounds or not increasing")
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise CacheEntryMismatch("holds non-finite values")
    if values.dtype.kind == "i" and values.size and int(values.min()) < 0:
        raise CacheEntryMismatch("holds negative counts")


class RepresentationCache:
    """``get(key, shape, meta)`` / ``put(key, raw, meta)`` over one folder (see the module docstring).

    ``meta`` is what the entry was computed for (the source's content digest, its window, the
    representation's parameters, the format): it is stored in the entry with a digest of the
    payload, and an entry whose record, digest, types or values do not check out is recomputed
    (one warning), so a damaged, swapped or altered entry is never used. This guards against
    accidents and careless edits, not against someone who rewrites both an entry and its digest."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.writable = True
        self.rebuilt = 0  # entries recomputed because they were unreadable or did not match

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str, shape: tuple, meta: str = "") -> np.ndarray | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            stored_meta, digest, arrays = _read_entry(path, int(np.prod(shape)))
            if stored_meta != meta.encode():
                raise CacheEntryMismatch("it was computed for another source, window or representation")
            if digest != payload_digest(stored_meta, arrays):
                raise CacheEntryMismatch("its payload does not match its digest")
            _check_payload(arrays, shape)
            return decode(arrays)
        except Exception as err:  # unreadable or mismatched entry: recompute it (put() replaces the file)
            self.rebuilt += 1
            if self.rebuilt == 1:
                warnings.warn(f"representation cache {self.folder}: entry {path.name} is unreadable or does not match "
                              f"({type(err).__name__}: {err}); it is recomputed and replaced (further such entries "
                              f"are recomputed without a word; the count is in the cache's `rebuilt`)", stacklevel=2)
            return None

    def put(self, key: str, raw: np.ndarray, meta: str = "") -> None:
        if not self.writable:
            return
        path = self.path(key)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}", suffix=".tmp")
            arrays = encode(raw)
            record = np.frombuffer(meta.encode(), dtype=np.uint8)
            digest = np.frombuffer(payload_digest(record.tobytes(), arrays), dtype=np.uint8)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, meta=record, digest=digest, **arrays)
            os.replace(tmp, path)
            tmp = None
        except OSError as err:
            self.writable = False
            why = "no space left on the device" if err.errno == 28 else f"{type(err).__name__}: {err.strerror or err}"
            warnings.warn(f"representation cache {self.folder} cannot be written ({why}); samples are computed "
                          f"without caching from now on (set data.cache_dir to a writable folder with space, or leave "
                          f"it empty)", stacklevel=2)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
