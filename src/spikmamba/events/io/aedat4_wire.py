"""The AEDAT 4 framing as DV sends it over a network (and as files hold it after their magic line).

A stream is an int32 header size, the IOHeader (a FlatBuffers table tagged ``IOHE``: the
compression, -1 for the data-table position, and an XML description of each output), then
packets: int32 stream id, int32 body size, and the body, a size-prefixed FlatBuffers table
(``EVTS`` for polarity events: a vector of 16-byte structs ``t: int64, x: int16, y: int16,
on: bool`` + 3 padding bytes). The layout here is the one dv-processing's ``NetworkWriter`` emits
byte for byte, and its ``NetworkReader`` reads what :func:`encode_header` and
:func:`encode_events` make (tests/test_live.py checks both ways when dv-processing is installed).

Decoding is written out (no FlatBuffers runtime): a handful of offsets, each bounds-checked, so a
hostile body is an :class:`EventFormatError` naming the byte, never an out-of-range read.
"""
from __future__ import annotations

import struct
import xml.etree.ElementTree as ET

import numpy as np

from ..types import EVENT_DTYPE
from .errors import EventFormatError

#: the packed event struct of an EVTS packet
WIRE_EVENT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("_pad", "V3")])
#: the IOHeader's compression field
COMPRESSIONS = {0: "none", 1: "lz4", 2: "lz4 (high)", 3: "zstd", 4: "zstd (high)"}
#: the most a header or a packet may claim: DV's packets are kilobytes to a few megabytes
MAX_HEADER_BYTES = 1 << 20
MAX_PACKET_BYTES = 64 << 20

_DESCRIPTION = """<dv version="2.0">
    <node name="outInfo" path="/outInfo/">
        <node name="0" path="/outInfo/0/">
            <attr key="compression" type="string">NONE</attr>
            <attr key="originalModuleName" type="string">spikmamba</attr>
            <attr key="originalOutputName" type="string">events</attr>
            <attr key="typeIdentifier" type="string">EVTS</attr>
            <node name="info" path="/outInfo/0/info/">
                <attr key="sizeX" type="int">{width}</attr>
                <attr key="sizeY" type="int">{height}</attr>
                <attr key="source" type="string">{source}</attr>
            </node>
        </node>
    </node>
</dv>
"""


def _pad(n: int, align: int) -> int:
    return -n % align


def encode_header(width: int, height: int, source: str = "spikmamba") -> bytes:
    """The int32 size and the IOHeader of one uncompressed polarity-event output (stream 0)."""
    text = _DESCRIPTION.format(width=int(width), height=int(height),
                               source=source.replace("&", "&amp;").replace("<", "&lt;")).encode()
    head = struct.pack("<I4s", 24, b"IOHE") + b"\0" * 6
    head += struct.pack("<HHHHH", 10, 20, 4, 12, 8)  # vtable: size, table size, compression, position, info
    head += struct.pack("<iIIq", 10, 0, 12, -1)  # table: vtable back-offset, NONE, -> string, no data table
    body = head + struct.pack("<I", len(text)) + text + b"\0"
    body += b"\0" * _pad(len(body), 4)
    return struct.pack("<i", len(body)) + body


def encode_events(events: np.ndarray, stream_id: int = 0) -> bytes:
    """One packet (int32 stream id, int32 size, EVTS body) holding ``events`` (fields t, x, y, p)."""
    n = len(events)
    wire = np.zeros(n, dtype=WIRE_EVENT)
    wire["t"], wire["x"], wire["y"], wire["on"] = events["t"], events["x"], events["y"], events["p"] > 0
    table = struct.pack("<I4s", 16, b"EVTS") + b"\0\0" + struct.pack("<HHH", 6, 8, 4)
    table += struct.pack("<iII", 6, 4, n)  # table: vtable back-offset, -> vector; the vector's length
    fb = table + wire.tobytes()
    body = struct.pack("<I", len(fb)) + fb
    return struct.pack("<ii", stream_id, len(body)) + body


def _table(source: str, buf: bytes, at: int, where: int, what: str) -> tuple[int, list[int]]:
    """``(table position, field offsets)`` of the FlatBuffers table whose uoffset is at ``at``."""
    try:
        table = at + struct.unpack_from("<I", buf, at)[0]
        vtable = table - struct.unpack_from("<i", buf, table)[0]
        vt_size = struct.unpack_from("<H", buf, vtable)[0]
        if vt_size < 4 or vtable + vt_size > len(buf):
            raise struct.error
        return table, [struct.unpack_from("<H", buf, vtable + 4 + 2 * i)[0] for i in range((vt_size - 4) // 2)]
    except struct.error:
        raise EventFormatError(source, where, f"corrupt {what} (FlatBuffers offsets out of range)") from None


def parse_header(source: str, header: bytes, where: int) -> tuple[int, tuple[int, int] | None, set[int]]:
    """``(compression, sensor size or None, ids of the polarity-event streams)`` from an IOHeader."""
    try:
        if header[4:8] != b"IOHE":
            raise EventFormatError(source, where, "not an AEDAT 4 stream: the header lacks the IOHE tag")
        table, fields = _table(source, header, 0, where, "IOHeader")
        compression = struct.unpack_from("<i", header, table + fields[0])[0] if fields and fields[0] else 0
        if compression not in COMPRESSIONS:
            raise EventFormatError(source, where, f"unknown compression type {compression} in the header")
        if len(fields) < 3 or not fields[2]:
            raise EventFormatError(source, where, "the header describes no outputs (no stream description)")
        at = table + fields[2]
        start = at + struct.unpack_from("<I", header, at)[0]
        n = struct.unpack_from("<I", header, start)[0]
        if start + 4 + n > len(header):
            raise EventFormatError(source, where + start, f"the stream description ({n} bytes) runs past the header")
        text = header[start + 4:start + 4 + n].decode("utf-8")
    except struct.error:
        raise EventFormatError(source, where, "corrupt AEDAT 4 IOHeader (FlatBuffers table out of range)") from None
    except UnicodeDecodeError:
        raise EventFormatError(source, where, "the stream description is not UTF-8 text") from None
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise EventFormatError(source, where, f"the stream description is not well-formed XML ({err})") from None
    ids, sizes = set(), set()
    for node in root.iter("node"):
        attrs = {a.get("key"): (a.text or "") for a in node.findall("attr")}
        if attrs.get("typeIdentifier") == "EVTS" and node.get("name", "").isdigit():
            ids.add(int(node.get("name")))
            info = {a.get("key"): (a.text or "") for a in node.findall("node/attr")}
            if info.get("sizeX", "").isdigit() and info.get("sizeY", "").isdigit():
                sizes.add((int(info["sizeX"]), int(info["sizeY"])))
    if not ids:
        raise EventFormatError(source, where, "the stream carries no polarity events (no EVTS output)")
    return compression, (sizes.pop() if len(sizes) == 1 else None), ids


def decompress(source: str, body: bytes, compression: int, where: int) -> bytes:
    """A packet body as the header's compression made it (LZ4 and Zstd need their packages)."""
    if compression == 0:
        return body
    from ...errors import MissingDependency

    try:
        if compression in (1, 2):
            try:
                import lz4.frame as codec
            except ImportError:
                raise MissingDependency("this AEDAT 4 stream is LZ4-compressed: pip install lz4") from None
        else:
            try:
                import zstandard
            except ImportError:
                raise MissingDependency("this AEDAT 4 stream is Zstd-compressed: pip install zstandard") from None
            codec = zstandard.ZstdDecompressor()
        if compression in (1, 2):
            out = codec.decompress(body)
        else:
            out = codec.decompress(body, max_output_size=MAX_PACKET_BYTES)
    except MissingDependency:
        raise
    except Exception as err:  # each codec has its own error class
        raise EventFormatError(source, where, f"a {COMPRESSIONS[compression]} packet does not decompress "
                                              f"({type(err).__name__}: {err})") from None
    if len(out) > MAX_PACKET_BYTES:
        raise EventFormatError(source, where, f"a packet decompresses to {len(out):,} bytes, more than "
                                              f"{MAX_PACKET_BYTES:,}")
    return out


def decode_events(source: str, body: bytes, where: int) -> np.ndarray:
    """The events of one EVTS packet body (size-prefixed FlatBuffers), as the reader's structured array."""
    if len(body) < 8 or struct.unpack_from("<I", body, 0)[0] != len(body) - 4:
        raise EventFormatError(source, where, f"a {len(body)}-byte packet body whose size prefix does not match it")
    fb = body[4:]
    if fb[4:8] != b"EVTS":
        raise EventFormatError(source, where, f"an event stream's packet is tagged {fb[4:8]!r}, not b'EVTS'")
    table, fields = _table(source, fb, 0, where, "event packet")
    out = np.empty(0, dtype=EVENT_DTYPE)
    if not fields or not fields[0]:
        return out
    try:
        at = table + fields[0]
        vec = at + struct.unpack_from("<I", fb, at)[0]
        n = struct.unpack_from("<I", fb, vec)[0]
    except struct.error:
        raise EventFormatError(source, where, "corrupt event packet (its vector lies outside the body)") from None
    if vec + 4 + n * WIRE_EVENT.itemsize > len(fb):
        raise EventFormatError(source, where, f"an event packet claims {n:,} events, more than its "
                                              f"{len(fb):,} bytes hold")
    wire = np.frombuffer(fb, dtype=WIRE_EVENT, count=n, offset=vec + 4)
    if n and (wire["x"].min() < 0 or wire["y"].min() < 0):
        raise EventFormatError(source, where, "an event packet holds negative coordinates")
    out = np.empty(n, dtype=EVENT_DTYPE)
    out["t"], out["x"], out["y"], out["p"] = wire["t"], wire["x"], wire["y"], wire["on"]
    return out
