"""AEDAT 4.0 (iniVation DV), decoded by the maintained ``aedat`` package (Rust, LZ4/Zstd aware).

We walk the packet framing ourselves first (``#!AER-DAT4.0``, int32 header size, FlatBuffers
IOHeader, then packets of int32 stream id + int32 byte size up to the data table) so that a
truncated or corrupt file is reported with the byte offset of the bad packet; ``aedat`` alone
only says that decoding failed. Only event streams are returned; IMU, trigger and frame packets
are counted as skipped.
"""
from __future__ import annotations

import struct

from ...errors import MissingDependency
from ._common import EventStream, file_size
from .errors import EventFormatError
from .recording import Recording

MAGIC = b"#!AER-DAT4.0\r\n"
LZ4_MAGIC, ZSTD_MAGIC = 0x184D2204, 0xFD2FB528
#: the most a compressed block may claim to expand to, per compressed byte (LZ4 and Zstd stay far below)
MAX_EXPANSION = 255


def _frame_content_size(data: bytes) -> int | None:
    """The decompressed size an LZ4 or Zstd frame header declares (None: not stated / not a frame)."""
    if len(data) < 6:
        return None
    magic = struct.unpack_from("<I", data, 0)[0]
    if magic == LZ4_MAGIC:
        flg = data[4]
        if flg & 0x08 and len(data) >= 14:  # content-size flag: 8 bytes after FLG and BD
            return struct.unpack_from("<Q", data, 6)[0]
        return None
    if magic == ZSTD_MAGIC:
        fhd = data[4]
        fcs_flag, single = fhd >> 6, (fhd >> 5) & 1
        size = {0: 1 if single else 0, 1: 2, 2: 4, 3: 8}[fcs_flag]
        did = {0: 0, 1: 1, 2: 2, 3: 4}[fhd & 3]
        at = 5 + (0 if single else 1) + did
        if size == 0 or len(data) < at + size:
            return None
        value = int.from_bytes(data[at:at + size], "little")
        return value + 256 if size == 2 else value
    return None


def _check_expansion(path, offset: int, head: bytes, compressed: int, what: str) -> None:
    """Refuse a compressed block (``head``: its first bytes) that claims to expand beyond any real
    compression ratio: the decoder would first try to allocate that much (a crafted size
    aborted the process)."""
    claimed = _frame_content_size(head)
    if claimed is not None and claimed > MAX_EXPANSION * compressed + (1 << 20):
        raise EventFormatError(path, offset, f"{what} claims to decompress to {claimed:,} bytes from {compressed:,}; "
                                             f"corrupt")


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
        raise EventFormatError(
            path, len(MAGIC) + 4, "corrupt AEDAT 4 IOHeader (FlatBuffers table out of range)"
        ) from None


def _check_description(path, header: bytes) -> None:
    """The IOHeader's compression (field 0) and stream description (field 2, an XML string),
    checked before the Rust decoder sees them: text that is not UTF-8 made it abort the process
    ("panic in a destructor during cleanup"), and malformed XML made it panic."""
    import xml.etree.ElementTree as ET

    where = len(MAGIC) + 4
    try:
        root = struct.unpack_from("<I", header, 0)[0]
        vtable = root - struct.unpack_from("<i", header, root)[0]
        vt_size = struct.unpack_from("<H", header, vtable)[0]
        fields = [struct.unpack_from("<H", header, vtable + 4 + 2 * i)[0] for i in range(max(0, (vt_size - 4) // 2))]
        if fields and fields[0]:
            compression = struct.unpack_from("<i", header, root + fields[0])[0]
            if not 0 <= compression <= 4:
                raise EventFormatError(path, where, f"unknown compression type {compression} in the header")
        if len(fields) < 3 or not fields[2]:
            return
        at = root + fields[2]
        start = at + struct.unpack_from("<I", header, at)[0]
        n = struct.unpack_from("<I", header, start)[0]
        if start + 4 + n > len(header):
            raise EventFormatError(path, where + start, f"the stream description ({n} bytes) runs past the header")
        text = header[start + 4:start + 4 + n]
    except struct.error:
        raise EventFormatError(path, where, "corrupt AEDAT 4 IOHeader (FlatBuffers table out of range)") from None
    try:
        ET.fromstring(text.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise EventFormatError(
            path, where + start + 4 + err.start, "the stream description is not UTF-8 text"
        ) from None
    except ET.ParseError as err:
        raise EventFormatError(
            path, where + start + 4, f"the stream description is not well-formed XML ({err})"
        ) from None


def packet_offsets(path) -> list[int]:
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
        header = f.read(hsize)
        _check_description(path, header)
        end = _data_table_position(path, header)
        end = size if end <= 0 else end
        if end > size:
            raise EventFormatError(path, start, f"the header places the data table at byte {end}, beyond the end "
                                                f"of the {size}-byte file (truncated?)")
        if end < start + hsize:
            raise EventFormatError(path, start, f"the header places the data table at byte {end}, inside the header "
                                                f"(packets start at byte {start + hsize}); corrupt")
        if end < size:
            f.seek(end)
            _check_expansion(path, end, f.read(64), size - end, "the data table")
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
            _check_expansion(path, offset, f.read(min(psize, 64)), psize, "the packet")
            offsets.append(offset)
            offset += 8 + psize
    return offsets


#: what must never be turned into a format error
_ESCAPES = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)


def stream_aedat4(path) -> EventStream:
    """Packets decoded one at a time by the ``aedat`` decoder, after our own checks of the framing."""
    try:
        import aedat
    except ImportError:
        raise MissingDependency("reading AEDAT 4 needs the 'aedat' package: pip install aedat "
                          "(or pip install 'spikmamba[io]')") from None
    offsets = packet_offsets(path)
    try:
        decoder = aedat.Decoder(str(path))
        streams = decoder.id_to_stream()
    except _ESCAPES:
        raise
    except BaseException as err:  # RuntimeError/OSError with no position, or a Rust panic (a BaseException)
        raise EventFormatError(path, len(MAGIC) + 4, f"AEDAT 4 header could not be decoded "
                                                     f"({type(err).__name__}: {err})") from None
    ev_streams = {k: v for k, v in streams.items() if v.get("type") == "events"}
    sizes = {(int(v["width"]), int(v["height"])) for v in ev_streams.values() if "width" in v}
    sensor = sizes.pop() if len(sizes) == 1 else None

    def chunks(stream):
        it = iter(decoder)
        k = 0
        while True:
            try:
                packet = next(it)
            except StopIteration:
                return
            except _ESCAPES:
                raise
            except BaseException as err:  # a Rust panic is a BaseException: it escaped every `except Exception`
                where = offsets[k] if k < len(offsets) else None
                raise EventFormatError(path, where, f"packet {k} could not be decoded ({type(err).__name__}: "
                                                    f"{err})") from None
            k += 1
            if "events" in packet:
                e = packet["events"]
                yield e["t"], e["x"], e["y"], e["on"]
            else:
                stream.skipped += 1

    return EventStream(path, "aedat4", sensor, 0, chunks)


def read_aedat4(path) -> Recording:
    stream = stream_aedat4(path)
    try:
        return stream.collect()
    except EventFormatError as err:
        if "lies outside" in str(err):
            raise EventFormatError(path, None, f"{err.detail.rsplit(';', 1)[0]}; the file's stream declares a "
                                               f"smaller sensor") from None
        raise
