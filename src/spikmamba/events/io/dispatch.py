"""``read_events`` / ``write_events``: one entry point that picks the format from the header
(magic bytes first, then the extension) and says clearly when it cannot."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ...errors import InputError
from . import aedat2, aedat3, aedat4, arrays, nbin, prophesee
from ._common import check_bounds, file_size
from .errors import EventFormatError
from .live import is_live_source, open_live
from .recording import Recording

READERS = {
    "nbin": nbin.read_nbin, "aedat2": aedat2.read_aedat2, "aedat3": aedat3.read_aedat3, "aedat4": aedat4.read_aedat4,
    "dat": prophesee.read_dat, "evt2": prophesee.read_evt2, "evt3": prophesee.read_evt3,
    "npy": arrays.read_npy, "npz": arrays.read_npz, "h5": arrays.read_h5,
}
STREAMS = {
    "nbin": nbin.stream_nbin, "aedat2": aedat2.stream_aedat2, "aedat3": aedat3.stream_aedat3,
    "aedat4": aedat4.stream_aedat4, "dat": prophesee.stream_dat, "evt2": prophesee.stream_evt2,
    "evt3": prophesee.stream_evt3, "npy": arrays.stream_npy, "npz": arrays.stream_npz, "h5": arrays.stream_h5,
}
WRITERS = {
    "nbin": nbin.write_nbin, "aedat2": aedat2.write_aedat2, "aedat3": aedat3.write_aedat3, "dat": prophesee.write_dat,
    "evt2": prophesee.write_evt2, "evt3": prophesee.write_evt3, "npy": arrays.write_npy, "npz": arrays.write_npz,
    "h5": arrays.write_h5,
}
EXTENSIONS = {
    ".bin": "nbin", ".bs2": "nbin", ".aedat4": "aedat4", ".dat": "dat", ".npy": "npy", ".npz": "npz",
    ".h5": "h5", ".hdf5": "h5", ".raw": "evt2", ".aedat": "aedat3",
}
#: File extensions ``read_events`` recognises (used by folder datasets to find recordings).
EVENT_FILE_EXTENSIONS = tuple(sorted(EXTENSIONS))


def detect_format(path) -> str:
    """Name of the reader for ``path`` (see ``READERS``), from its first bytes and extension."""
    size = file_size(path)
    with open(path, "rb") as f:
        head = f.read(4096)
    ext = Path(path).suffix.lower()
    if head.startswith(b"#!AER-DAT"):
        version = head[9:12]
        fmt = {b"2.0": "aedat2", b"3.1": "aedat3", b"4.0": "aedat4"}.get(version)
        if fmt is None:
            raise EventFormatError(path, 9, f"AEDAT version {version.decode('latin-1')!r} is not supported "
                                            "(supported: 2.0, 3.1, 4.0)")
        return fmt
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or (head.startswith(b"PK\x05\x06") and ext == ".npz"):
        return "npz"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "h5"
    if head.startswith(b"%"):
        text = head.lower()
        if b"evt 3" in text or b"evt3" in text:
            return "evt3"
        if b"evt 2" in text or b"evt2" in text:
            return "evt2"
        if ext == ".dat" or b"data file containing" in text:
            return "dat"
        if ext == ".raw":
            raise EventFormatError(path, 0, "Prophesee .raw header does not state the encoding ('% evt 2.0' or "
                                            "'% evt 3.0'); pass format='evt2' or format='evt3' (--format on the "
                                            "command line)")
    if ext in (".bin", ".bs2"):
        return "nbin"
    if ext in (".aedat", ".aedat4", ".raw", ".dat", ".npy", ".npz", ".h5", ".hdf5"):
        raise EventFormatError(path, 0, f"the extension says {ext} but the file does not start with that format's "
                                        f"header (first bytes {head[:16]!r}); truncated, or another format?")
    if size == 0:
        raise EventFormatError(path, 0, "empty file with no extension to say which format it is")
    raise EventFormatError(
        path,
        0,
        f"unknown event file format (extension {ext or 'none'!r}, first bytes {head[:16]!r}); "
        f"supported extensions: {', '.join(EVENT_FILE_EXTENSIONS)}, or name the format: format= "
        f"(--format on the command line)",
    )


def read_events(path: str | os.PathLike, format: str | None = None, sensor_size=None,
                on_unsorted: str = "sort", **options) -> Recording:
    """Read any supported event file into a :class:`Recording` ``(events, sensor_size, format, skipped)``.

    ``format`` overrides detection (one of ``READERS``); ``sensor_size`` ``(W, H)`` overrides
    (or supplies) the sensor; extra ``options`` go to the reader (e.g. ``camera='davis346'``
    for AEDAT 2.0). Timestamps that go backwards are stable-sorted with a warning
    (``on_unsorted='sort'``), raise (``'error'``) or are kept in file order with a warning
    (``'keep'``).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no event file at {os.fspath(path)!r}")
    fmt = format or detect_format(path)
    if fmt not in READERS:
        raise InputError(f"unknown format {fmt!r}; choose one of {sorted(READERS)}")
    reader = READERS[fmt]
    if fmt != "aedat2":
        options.pop("camera", None)  # an AEDAT 2.0 address-layout hint; other formats state their sensor
    if sensor_size is not None and fmt not in ("aedat2", "aedat4", "nbin"):
        options["sensor_size"] = sensor_size
    rec = reader(path, **options)
    if sensor_size is not None and rec.sensor_size != tuple(sensor_size):
        check_bounds(path, rec.events, tuple(sensor_size), "pass the right sensor_size=")
        rec = rec._replace(sensor_size=tuple(sensor_size))
    return rec._replace(events=_ordered(path, rec.events, on_unsorted))


def stream_events(path: str | os.PathLike, format: str | None = None, sensor_size=None, **options):
    """Open any supported event file as an :class:`~._common.EventStream`: chunks of events in
    file order, so a long recording is processed piece by piece and never sits whole in memory
    (``.npz`` archives, compressed, come as one chunk). Options as for :func:`read_events`.
    A live source (``tcp://HOST:PORT``, ``-`` or a named pipe carrying DV's AEDAT 4 stream) is
    opened by :func:`~.live.open_live` (``timeout``: seconds the header may take)."""
    if is_live_source(path):
        return open_live(path, **{k: v for k, v in options.items() if k == "timeout"})
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no event file at {os.fspath(path)!r}")
    fmt = format or detect_format(path)
    if fmt not in STREAMS:
        raise InputError(f"unknown format {fmt!r}; choose one of {sorted(STREAMS)}")
    if fmt != "aedat2":
        options.pop("camera", None)
    if sensor_size is not None and fmt not in ("aedat2", "aedat4", "nbin"):
        options["sensor_size"] = sensor_size
    stream = STREAMS[fmt](path, **options)
    if sensor_size is not None:
        stream.sensor_size = tuple(sensor_size)
    return stream


def _ordered(path, events: np.ndarray, on_unsorted: str) -> np.ndarray:
    if on_unsorted not in ("sort", "error", "keep"):
        raise InputError(f"on_unsorted must be 'sort', 'error' or 'keep', got {on_unsorted!r}")
    if len(events) < 2:
        return events
    back = events["t"][1:] < events["t"][:-1]  # a bool temp, not an int64 diff
    if not back.any():
        return events
    first = int(np.argmax(back)) + 1
    msg = (f"{os.fspath(path)}: timestamps go backwards {int(back.sum())} time(s), first at event {first} "
           f"({int(events['t'][first - 1])} -> {int(events['t'][first])} µs)")
    if on_unsorted == "error":
        raise EventFormatError(path, None, msg.split(": ", 1)[1] + "; pass on_unsorted='sort' to sort them")
    if on_unsorted == "keep":
        warnings.warn(msg + "; kept in file order", stacklevel=3)
        return events
    warnings.warn(msg + "; sorted by time (stable)", stacklevel=3)
    return events[np.argsort(events["t"], kind="stable")]


def write_events(path: str | os.PathLike, events: np.ndarray, sensor_size=None, format: str | None = None) -> None:
    """Write events in the format named by ``format`` or by the file extension."""
    fmt = format or EXTENSIONS.get(Path(path).suffix.lower())
    if fmt not in WRITERS:
        raise InputError(f"cannot tell the output format of {os.fspath(path)!r}; pass format= one of {sorted(WRITERS)}")
    kwargs = {} if sensor_size is None else {"sensor_size": tuple(sensor_size)}
    WRITERS[fmt](path, events, **kwargs)
