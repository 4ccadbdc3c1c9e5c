"""Plain array files: ``.npy`` (structured), ``.npz`` and ``.h5`` with x, y, t, p columns.

Column names accepted: ``t``/``ts``/``timestamp``, ``x``, ``y``, ``p``/``pol``/``polarity``;
in HDF5 either at the top level or under an ``events`` group (the DSEC layout). A
``sensor_size`` array (npz) or ``width``/``height`` attributes (h5) give the sensor size.
Timestamps must be integer microseconds; integral-valued floats are accepted, anything else
is an error (we will not guess a time unit).
"""
from __future__ import annotations

import contextlib

import numpy as np

from ...errors import MissingDependency
from ..types import EVENT_DTYPE, check_integer_column
from ._common import EventStream
from .errors import EventFormatError
from .recording import Recording

ALIASES = {
    "t": ("t", "ts", "timestamp", "timestamps"),
    "x": ("x",),
    "y": ("y",),
    "p": ("p", "pol", "polarity", "polarities"),
}


def _pick(path, names, where: str):
    found = {}
    for field, options in ALIASES.items():
        name = next((o for o in options if o in names), None)
        if name is None:
            raise EventFormatError(path, None, f"no {field!r} column in {where} (has {sorted(names)}); "
                                               f"expected one of {list(options)}")
        found[field] = name
    return found


@contextlib.contextmanager
def _unreadable_as_format_error(path, what: str):
    """Corrupt containers fail deep inside numpy/zipfile/h5py with whatever those raise
    (ValueError, tokenize.TokenError, BadZipFile, KeyError, RuntimeError, ...): report them all as
    one EventFormatError that names the file."""
    try:
        yield
    except EventFormatError:
        raise
    except Exception as err:
        raise EventFormatError(path, None, f"not a readable {what} ({type(err).__name__}: {err})") from None


def columns_to_events(path, cols: dict) -> np.ndarray:
    n = {k: len(v) for k, v in cols.items()}
    if len(set(n.values())) > 1:
        raise EventFormatError(path, None, f"event columns differ in length: {n}")
    out = np.empty(n["t"], dtype=EVENT_DTYPE)
    wide = (-2**63, 2**63 - 1)
    for k, (lo, hi) in {"t": wide, "x": (0, 2**16 - 1), "y": (0, 2**16 - 1), "p": wide}.items():
        c = np.asarray(cols[k])
        try:
            check_integer_column(k, c, lo, hi)
        except ValueError as err:
            raise EventFormatError(path, None, str(err)) from None
        if k == "p" and len(c):
            c = (c > 0).astype(np.int8)  # accepts 0/1, -1/+1 and booleans
        out[k] = c
    return out


#: events converted and checked at a time when streaming a large array
STREAM_EVENTS = 1 << 20


def _check_npy_length(path) -> None:
    """A cut ``.npy`` says how many of its events are there (numpy's memory map says only
    "mmap length is greater than file size")."""
    import os

    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(
                version
            )
            if read is None:
                return
            shape, _, dtype = read(f)
            offset = f.tell()
    except Exception:  # not an .npy header numpy can read: np.load reports it
        return
    count = int(np.prod(shape)) if shape else 1
    have = os.path.getsize(path) - offset
    if dtype.itemsize and have < count * dtype.itemsize:
        raise EventFormatError(
            path,
            offset + have,
            f"the file holds {have // dtype.itemsize} of the {count} events its header announces: it was cut short",
        )


def stream_npy(path, sensor_size=None) -> EventStream:
    """An ``.npy`` read a chunk at a time (plain reads after the header, so a recording larger
    than memory never counts against it; a memory map would keep every page it touched), each
    chunk checked and converted."""
    _check_npy_length(path)
    with _unreadable_as_format_error(path, ".npy file"):
        arr = np.load(path, mmap_mode="r", allow_pickle=False)  # checks the header, the dtype and the size
        offset = getattr(arr, "offset", None)
        if arr.dtype.names is None:
            if arr.ndim == 2 and arr.shape[1] == 4:
                raise EventFormatError(
                    path,
                    None,
                    "a plain [N, 4] array does not say which column is which; save a "
                    "structured array with fields t, x, y, p (see spikmamba.events.make_events)",
                )
            raise EventFormatError(path, None, "expected a structured array with fields t, x, y, p")
        names = _pick(path, arr.dtype.names, "the array")

    def chunks(stream):
        if offset is None or arr.ndim != 1 or not arr.flags.c_contiguous:
            for a in range(0, len(arr), STREAM_EVENTS):
                part = arr[a:a + STREAM_EVENTS]
                yield columns_to_events(path, {k: np.array(part[v]) for k, v in names.items()})
            return
        with open(path, "rb") as f:
            f.seek(offset)
            for a in range(0, len(arr), STREAM_EVENTS):
                part = np.fromfile(f, dtype=arr.dtype, count=min(STREAM_EVENTS, len(arr) - a))
                if len(part) < min(STREAM_EVENTS, len(arr) - a):
                    raise EventFormatError(path, None, f"the file ended after {a + len(part)} of the {len(arr)} "
                                                       f"events its header announces")
                yield columns_to_events(path, {k: part[v] for k, v in names.items()})

    return EventStream(path, "npy", tuple(sensor_size) if sensor_size else None, len(arr), chunks)


def read_npy(path, sensor_size=None) -> Recording:
    return stream_npy(path, sensor_size).collect()


def stream_npz(path, sensor_size=None) -> EventStream:
    """An ``.npz`` archive (compressed members cannot be read in parts: one chunk)."""
    with _unreadable_as_format_error(path, ".npz archive"):
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if "events" in keys and z["events"].dtype.names:
                arr = z["events"]
                names = _pick(path, arr.dtype.names, "the 'events' array")
                cols = {k: arr[v] for k, v in names.items()}
            else:
                names = _pick(path, keys, "the archive")
                cols = {k: z[v] for k, v in names.items()}
            if sensor_size is None and "sensor_size" in keys:
                sensor_size = tuple(int(v) for v in z["sensor_size"][:2])
    events = columns_to_events(path, cols)
    return EventStream(path, "npz", tuple(sensor_size) if sensor_size else None, len(events),
                       lambda stream: iter([events]))


def read_npz(path, sensor_size=None) -> Recording:
    return stream_npz(path, sensor_size).collect()


#: no real event column compresses by more than this: a column that declares more is mostly
#: never-written (fill-value) space, as in a crafted file declaring 10**12 events
H5_MAX_RATIO = 1000


def _check_h5_stored(path, dset) -> None:
    """Refuse an HDF5 column that declares far more data than the file stores."""
    declared = int(dset.size) * dset.dtype.itemsize
    stored = int(dset.id.get_storage_size())
    if declared > (1 << 20) and declared > H5_MAX_RATIO * max(stored, 1):
        raise EventFormatError(path, None, f"column {dset.name!r} declares {int(dset.size):,} values "
                                           f"({declared:,} bytes) but the file stores {stored:,} bytes of it: "
                                           f"unwritten space, not recorded events")


def stream_h5(path, sensor_size=None) -> EventStream:
    """HDF5 columns read in slices (datasets are read where they are, not loaded whole)."""
    try:
        import h5py
    except ImportError:
        raise MissingDependency(
            "reading .h5 event files needs h5py: pip install h5py (or pip install 'spikmamba[io]')"
        ) from None
    with _unreadable_as_format_error(path, "HDF5 file"):
        with h5py.File(path, "r") as f:
            group = f["events"] if "events" in f and isinstance(f["events"], h5py.Group) else f
            names = _pick(path, set(group.keys()), f"the HDF5 group {group.name!r}")
            gname = group.name
            n = {k: int(group[v].shape[0]) if group[v].shape else 0 for k, v in names.items()}
            if len(set(n.values())) > 1:
                raise EventFormatError(path, None, f"event columns differ in length: {n}")
            for v in names.values():
                _check_h5_stored(path, group[v])
            if sensor_size is None:
                attrs = {**dict(f.attrs), **dict(group.attrs)}
                if "width" in attrs and "height" in attrs:
                    sensor_size = (int(attrs["width"]), int(attrs["height"]))
    total = next(iter(n.values()))

    def chunks(stream):
        with _unreadable_as_format_error(path, "HDF5 file"), h5py.File(path, "r") as f:
            group = f[gname]
            for a in range(0, total, STREAM_EVENTS):
                yield columns_to_events(path, {k: group[v][a:a + STREAM_EVENTS] for k, v in names.items()})

    return EventStream(path, "h5", tuple(sensor_size) if sensor_size else None, total, chunks)


def read_h5(path, sensor_size=None) -> Recording:
    return stream_h5(path, sensor_size).collect()


def write_npy(path, events: np.ndarray, sensor_size=None) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(events, dtype=EVENT_DTYPE))


def write_npz(path, events: np.ndarray, sensor_size=None) -> None:
    extra = {} if sensor_size is None else {"sensor_size": np.asarray(sensor_size, dtype=np.int64)}
    with open(path, "wb") as f:
        np.savez_compressed(f, t=events["t"], x=events["x"], y=events["y"], p=events["p"], **extra)


def write_h5(path, events: np.ndarray, sensor_size=None) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        for k in "txyp":
            g.create_dataset(k, data=events[k], compression="gzip" if len(events) > 4096 else None)
        if sensor_size is not None:
            f.attrs["width"], f.attrs["height"] = int(sensor_size[0]), int(sensor_size[1])
