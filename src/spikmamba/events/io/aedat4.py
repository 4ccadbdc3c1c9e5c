"""AEDAT 4.0 (iniVation DV), decoded by the maintained ``aedat`` package (Rust, LZ4/Zstd aware).

We walk the packet framing ourselves first (``#!AER-DAT4.0``, int32 header size, FlatBuffers
IOHeader, then packets of int32 stream id + int32 byte size up to the data table) so that a
truncated or corrupt file is reported with the byte offset of the bad packet; ``aedat`` alone
only says that decoding failed. Only event streams are returned; IMU, trigger and frame packets
are counted as skipped.
"""
from __future__ import annotations

import struct

import numpy as np

from ._common import check_bounds, file_size
from .errors import EventFormatError
from .recording import Recording
from ..types import EVENT_DTYPE

MAGIC = b"#!AER-DAT4.0\r\n"


def _data_table_position(path, header: bytes) -> int:
    """``IOHeader.dataTablePosition`` (int64 field 1 of the root table), -1 when absent."""
    try:
        root = struct.unpack_from("<I", header, 0)[0]
        vtable = root - struct.unpack_from("<i", header, root)[0]
        vt_size = struct.unpack_from("<H", header, vtable)[0]
        if vt_size < 8:
            return -1
        field = struct.unpack_from("<H", header, vtable + 6)[0]
        return -1 if field == 0 else struct.unpack_from("<q", header, root + field)[0]
    except struct.error:
        raise EventFormatError(path, len(MAGIC) + 4, "corrupt AEDAT 4 IOHeader (FlatBuffers table out of range)") from None


def packet_offsets(path) -> "list[int]":
    """Byte offsets of every packet; raises on a framing error."""
    size = file_size(path)
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise EventFormatError(path, 0, f"expected the AEDAT 4.0 magic {MAGIC!r}")
        raw = f.read(4)
        if len(raw) < 4:
            raise EventFormatError(path, len(MAGIC), "truncated file: the header size is missing")
        hsize = struct.unpack("<i", raw)[0]
        start = len(MAGIC) + 4
        if hsize <= 0 or start + hsize > size:
            raise EventFormatError(path, len(MAGIC), f"header size {hsize} does not fit in the {size}-byte file")
        end = _data_table_position(path, f.read(hsize))
        end = size if end <= 0 else end
        if end > size:
            raise EventFormatError(path, start, f"the header places the data table at byte {end}, beyond the end "
                                                f"of the {size}-byte file (truncated?)")
        offsets, offset = [], start + hsize
        while offset < end:
            f.seek(offset)
            raw = f.read(8)
            if len(raw) < 8:
                raise EventFormatError(path, offset, "truncated packet header (8 bytes expected)")
            _, psize = struct.unpack("<ii", raw)
            if psize < 0 or offset + 8 + psize > end:
                raise EventFormatError(path, offset, f"packet of {psize} bytes runs past the end of the packet area "
                                                     f"(byte {end}): truncated or corrupt file")
            offsets.append(offset)
            offset += 8 + psize
    return offsets


def read_aedat4(path) -> Recording:
    try:
        import aedat
    except ImportError:
        raise ImportError("reading AEDAT 4 needs the 'aedat' package: pip install aedat "
                          "(or pip install 'spikmamba[io]')") from None
    offsets = packet_offsets(path)
    try:
        decoder = aedat.Decoder(str(path))
        streams = decoder.id_to_stream()
    except Exception as err:  # the Rust decoder raises RuntimeError/OSError with no position
        raise EventFormatError(path, None, f"AEDAT 4 header could not be decoded ({err})") from None
    ev_streams = {k: v for k, v in streams.items() if v.get("type") == "events"}
    sizes = {(int(v["width"]), int(v["height"])) for v in ev_streams.values() if "width" in v}
    sensor = sizes.pop() if len(sizes) == 1 else None
    chunks, skipped, k = [], 0, 0
    it = iter(decoder)
    while True:
        try:
            packet = next(it)
        except StopIteration:
            break
        except Exception as err:
            where = offsets[k] if k < len(offsets) else None
            raise EventFormatError(path, where, f"packet {k} could not be decoded ({err})") from None
        k += 1
        if "events" in packet:
            e = packet["events"]
            out = np.empty(len(e), dtype=EVENT_DTYPE)
            out["t"], out["x"], out["y"], out["p"] = e["t"], e["x"], e["y"], e["on"]
            chunks.append(out)
        else:
            skipped += 1
    events = np.concatenate(chunks) if chunks else np.empty(0, dtype=EVENT_DTYPE)
    check_bounds(path, events, sensor, "the file's stream declares a smaller sensor")
    return Recording(events, sensor, "aedat4", skipped)
