"""Readers and writers: round trips, hand-made byte-exact files, corrupt and truncated input."""
import struct

import numpy as np
import pytest
from conftest import random_events

from spikmamba.events.io import EventFormatError, detect_format, read_events, write_events

ROUND_TRIPS = [  # (extension, format, sensor, t_max)
    (".bs2", "nbin", (34, 34), 1 << 23),
    (".aedat", "aedat2", (128, 128), 1 << 30),
    (".aedat", "aedat2", (346, 260), 1 << 30),
    (".aedat", "aedat3", (128, 128), 1 << 33),  # beyond 2**31 µs: exercises the overflow field
    (".dat", "dat", (304, 240), 1 << 31),
    (".raw", "evt2", (640, 480), 1 << 33),
    (".npy", "npy", (640, 480), 1 << 40),
    (".npz", "npz", (640, 480), 1 << 40),
    (".h5", "h5", (640, 480), 1 << 40),
    (".raw", "evt3", (1280, 720), 1 << 27),  # several wraps of the 24-bit EVT 3.0 clock
]


@pytest.mark.parametrize("ext,fmt,sensor,t_max", ROUND_TRIPS, ids=[f"{r[1]}-{r[2][0]}" for r in ROUND_TRIPS])
def test_round_trip_is_identical_field_by_field(tmp_path, ext, fmt, sensor, t_max):
    if fmt == "h5":
        pytest.importorskip("h5py")
    ev = random_events(5000, sensor, t_max, seed=len(fmt))
    path = tmp_path / f"rec{ext}"
    write_events(path, ev, sensor_size=sensor, format=fmt)
    rec = read_events(path)
    assert rec.format == fmt
    for k in "txyp":
        np.testing.assert_array_equal(rec.events[k].astype(np.int64), ev[k].astype(np.int64), err_msg=k)
    if fmt in ("aedat2", "dat", "evt2", "evt3", "npz", "h5", "aedat3"):
        assert rec.sensor_size == sensor


def test_nbin_hand_made_bytes(tmp_path):
    # x=5, y=7, ON, t=0x123456 ; x=33, y=0, OFF, t=0x7FFFFF (largest 23-bit timestamp)
    raw = bytes([5, 7, 0x80 | 0x12, 0x34, 0x56, 33, 0, 0x7F, 0xFF, 0xFF])
    (tmp_path / "a.bin").write_bytes(raw)
    ev = read_events(tmp_path / "a.bin").events
    assert ev.tolist() == [(0x123456, 5, 7, 1), (0x7FFFFF, 33, 0, 0)]


def test_aedat2_dvs128_hand_made_bytes(tmp_path):
    # jAER DVS128: x mirrored (127 - field), polarity bit 0 = 1 means OFF
    addr = (120 << 1) | (9 << 8) | 1  # field x=120 -> x=7, y=9, OFF
    data = (
        b"#!AER-DAT2.0\r\n# DVS128\r\n"
        + struct.pack(">Ii", addr, 1000)
        + struct.pack(">Ii", (0 << 1) | (127 << 8), 2000)
    )
    (tmp_path / "a.aedat").write_bytes(data)
    rec = read_events(tmp_path / "a.aedat")
    assert rec.format == "aedat2" and rec.sensor_size == (128, 128)
    assert rec.events.tolist() == [(1000, 7, 9, 0), (2000, 127, 127, 1)]


def test_aedat2_davis_skips_and_counts_aps_samples(tmp_path):
    dvs = (200 << 22) | (300 << 12) | (0 << 11)  # ON event at field x=300 -> x=45, y=200
    aps = (1 << 31) | (5 << 22) | (5 << 12)
    data = b"#!AER-DAT2.0\r\n# DAVIS346\r\n" + struct.pack(">Ii", dvs, 10) + struct.pack(">Ii", aps, 11)
    (tmp_path / "d.aedat").write_bytes(data)
    rec = read_events(tmp_path / "d.aedat")
    assert rec.events.tolist() == [(10, 45, 200, 1)] and rec.skipped == 1 and rec.sensor_size == (346, 260)


def test_aedat2_without_camera_names_the_fix(tmp_path):
    (tmp_path / "u.aedat").write_bytes(b"#!AER-DAT2.0\r\n" + struct.pack(">Ii", 0, 0))
    with pytest.raises(EventFormatError, match="camera="):
        read_events(tmp_path / "u.aedat")
    assert len(read_events(tmp_path / "u.aedat", camera="dvs128").events) == 1


def _aedat3_packet(kind, events, overflow=0, size=8):
    hdr = struct.pack("<hhiiiiii", kind, 1, size, 4, overflow, len(events), len(events), len(events))
    return hdr + b"".join(events)


def test_aedat3_hand_made_packets(tmp_path):
    ev1 = struct.pack("<Ii", (17 << 17) | (3 << 2) | (1 << 1) | 1, 500)  # x=17, y=3, ON, valid
    ev2 = struct.pack("<Ii", (1 << 17) | (2 << 2) | 0, 600)  # invalid flag -> skipped
    ev3 = struct.pack("<Ii", (127 << 17) | (127 << 2) | 1, 5)  # x=127, y=127, OFF, next overflow epoch
    imu = _aedat3_packet(2, [b"\0" * 40], size=40)
    data = (b"#!AER-DAT3.1\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n" + _aedat3_packet(1, [ev1, ev2]) + imu
            + _aedat3_packet(1, [ev3], overflow=1))
    (tmp_path / "g.aedat").write_bytes(data)
    rec = read_events(tmp_path / "g.aedat")
    assert rec.format == "aedat3" and rec.sensor_size == (128, 128)
    assert rec.events.tolist() == [(500, 17, 3, 1), ((1 << 31) | 5, 127, 127, 0)]
    assert rec.skipped == 2  # the invalid event and the IMU packet's one sample


def test_evt2_hand_made_words(tmp_path):
    words = [
        (0x8 << 28) | 5,
        (0x1 << 28) | (7 << 22) | (100 << 11) | 50,
        (0xA << 28),
        (0x0 << 28) | (63 << 22) | (3 << 11) | 4,
    ]
    (tmp_path / "e.raw").write_bytes(b"% evt 2.0\n% end\n" + struct.pack("<4I", *words))
    rec = read_events(tmp_path / "e.raw")
    assert rec.events.tolist() == [((5 << 6) | 7, 100, 50, 1), ((5 << 6) | 63, 3, 4, 0)]
    assert rec.skipped == 1


def test_dat_hand_made_records(tmp_path):
    rec = struct.pack("<II", 123, 10 | (20 << 14) | (1 << 28))
    (tmp_path / "c.dat").write_bytes(
        b"% Data file containing Event2d events.\n% Width 64\n% Height 32\n" + bytes([0, 8]) + rec
    )
    r = read_events(tmp_path / "c.dat")
    assert r.events.tolist() == [(123, 10, 20, 1)] and r.sensor_size == (64, 32)


@pytest.mark.parametrize("ext,fmt,cut", [(".bs2", "nbin", 3), (".aedat", "aedat2", 5), (".aedat", "aedat3", 9),
                                         (".dat", "dat", 3), (".raw", "evt2", 2)])
def test_truncated_file_names_file_and_offset(tmp_path, ext, fmt, cut):
    sensor = {"nbin": (34, 34), "aedat2": (128, 128), "aedat3": (128, 128), "dat": (304, 240), "evt2": (640, 480)}[fmt]
    path = tmp_path / f"t{ext}"
    write_events(path, random_events(300, sensor, 1 << 20), sensor_size=sensor, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(EventFormatError) as err:
        read_events(path)
    assert str(path) in str(err.value) and err.value.offset is not None and 0 <= err.value.offset < len(data)


def test_corrupt_coordinates_outside_declared_sensor(tmp_path):
    path = tmp_path / "x.raw"
    write_events(path, random_events(100, (640, 480)), sensor_size=(640, 480))
    with pytest.raises(EventFormatError, match="outside the 320x240 sensor"):
        read_events(path, sensor_size=(320, 240))


def test_unknown_and_empty_files_are_clear_errors(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello")
    with pytest.raises(EventFormatError, match="unknown event file format"):
        read_events(tmp_path / "a.txt")
    (tmp_path / "b.aedat4").write_bytes(b"")
    with pytest.raises(EventFormatError, match="does not start with"):
        read_events(tmp_path / "b.aedat4")
    (tmp_path / "c.bs2").write_bytes(b"")
    with pytest.raises(EventFormatError, match="empty file \\(0 bytes\\)"):  # never a silent empty sample
        read_events(tmp_path / "c.bs2")
    with pytest.raises(FileNotFoundError, match="no event file"):
        read_events(tmp_path / "missing.bin")


def test_unsorted_timestamps_are_sorted_with_a_warning_or_refused(tmp_path):
    ev = random_events(50, (34, 34), 1 << 20)
    ev = ev[::-1].copy()
    (tmp_path / "u.bs2").write_bytes(__import__("spikmamba.events.io.nbin", fromlist=["x"]).encode_nbin(ev))
    with pytest.warns(UserWarning, match="go backwards"):
        rec = read_events(tmp_path / "u.bs2")
    assert np.all(np.diff(rec.events["t"]) >= 0)
    with pytest.raises(EventFormatError, match="backwards"):
        read_events(tmp_path / "u.bs2", on_unsorted="error")


def test_npz_rejects_float_seconds_and_nan(tmp_path):
    np.savez(tmp_path / "f.npz", t=np.array([0.1, 0.2]), x=np.array([1, 2]), y=np.array([1, 2]), p=np.array([0, 1]))
    with pytest.raises(EventFormatError, match="integer microseconds"):
        read_events(tmp_path / "f.npz")
    np.savez(tmp_path / "g.npz", t=np.array([1.0, np.nan]), x=np.array([1, 2]), y=np.array([1, 2]), p=np.array([0, 1]))
    with pytest.raises(EventFormatError, match="NaN"):
        read_events(tmp_path / "g.npz")
    np.savez(
        tmp_path / "h.npz", ts=np.array([1, 2]), x=np.array([1, 2]), y=np.array([1, 2]), polarity=np.array([-1, 1])
    )
    assert read_events(tmp_path / "h.npz").events.tolist() == [(1, 1, 1, 0), (2, 2, 2, 1)]


def test_reading_stays_within_a_few_times_the_file_size(tmp_path):
    import tracemalloc

    path = tmp_path / "big.bs2"
    n = 2_000_000  # a 10 MB file
    write_events(path, random_events(n, (34, 34), 1 << 23), format="nbin")
    size = path.stat().st_size
    tracemalloc.start()
    rec = read_events(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(rec.events) == n
    assert peak < 4 * size, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


def test_detect_format_by_magic_not_extension(tmp_path):
    path = tmp_path / "misnamed.dat"
    write_events(path, random_events(10), sensor_size=(128, 128), format="aedat3")
    assert detect_format(path) == "aedat3"


def test_evt3_hand_made_vector_words(tmp_path):
    words = [0x8000 | 1, 0x6000 | 5, 0x0000 | 10,  # time high 1, time low 5, y 10
             0x3000 | (1 << 11) | 100,  # vector base x=100, ON
             0x4000 | 0b100000000101,  # VECT_12: x = 100, 102, 111; base -> 112
             0x5000 | 0b10000001,  # VECT_8: x = 112, 119
             0xA000,  # trigger: skipped
             0x2000 | 7]  # single OFF event at x=7
    (tmp_path / "v.raw").write_bytes(b"% evt 3.0\n% end\n" + struct.pack("<8H", *words))
    rec = read_events(tmp_path / "v.raw")
    t = (1 << 12) | 5
    assert rec.events.tolist() == [
        (t, 100, 10, 1),
        (t, 102, 10, 1),
        (t, 111, 10, 1),
        (t, 112, 10, 1),
        (t, 119, 10, 1),
        (t, 7, 10, 0),
    ]
    assert rec.skipped == 1


@pytest.mark.parametrize("fmt", ["evt2", "evt3", "nbin", "aedat2", "dat"])
def test_chunk_boundaries_do_not_change_the_result(tmp_path, monkeypatch, fmt):
    import importlib

    sensor = (34, 34) if fmt == "nbin" else (128, 128)
    ev = random_events(3000, sensor, 1 << 22, seed=3)
    path = tmp_path / "c.bin"
    write_events(path, ev, sensor_size=sensor, format=fmt)
    whole = read_events(path, format=fmt).events
    module = {"evt2": "prophesee", "evt3": "prophesee", "nbin": "nbin", "aedat2": "aedat2", "dat": "prophesee"}[fmt]
    monkeypatch.setattr(importlib.import_module(f"spikmamba.events.io.{module}"), "CHUNK_BYTES", 8 * 13)
    chunked = read_events(path, format=fmt).events
    assert np.array_equal(whole, chunked) and len(whole) == 3000


def test_prophesee_bbox_labels_both_releases(tmp_path):
    from spikmamba.events.io import read_prophesee_bboxes

    gen1 = np.dtype([("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "u1"),
                     ("confidence", "<f4"), ("track_id", "<u4")])
    boxes = np.array([(50_000, 10.5, 20, 30, 40, 0, 0.9, 7), (99_999, 200, 100, 50, 60, 1, 1.0, 8)], gen1)
    np.save(tmp_path / "a_bbox.npy", boxes)
    got = read_prophesee_bboxes(tmp_path / "a_bbox.npy", sensor_size=(304, 240))
    assert got["t"].tolist() == [50_000, 99_999] and got["x"][0] == 10.5 and got["class_id"].tolist() == [0, 1]
    assert got["track_id"].tolist() == [7, 8]
    old = np.dtype([("t", "<u8"), ("x", "<f8"), ("y", "<f8"), ("w", "<f8"), ("h", "<f8"), ("class_id", "u1")])
    np.save(tmp_path / "b_bbox.npy", np.array([(9, 1, 2, 3, 4, 1), (5, 1, 2, 3, 4, 0)], old))
    with pytest.warns(UserWarning, match="go backwards"):
        got = read_prophesee_bboxes(tmp_path / "b_bbox.npy")
    assert (
        got["t"].tolist() == [5, 9]
        and got["confidence"].tolist() == [1.0, 1.0]
        and got["track_id"].tolist() == [-1, -1]
    )
    np.save(tmp_path / "c_bbox.npy", np.array([(1, 1, 2, -3, 4, 1)], old))
    with pytest.raises(EventFormatError, match="box 0 has a negative width"):
        read_prophesee_bboxes(tmp_path / "c_bbox.npy")
    with pytest.raises(EventFormatError, match="box 1 lies outside the 304x90 sensor"):
        read_prophesee_bboxes(tmp_path / "a_bbox.npy", sensor_size=(304, 90))
    np.save(tmp_path / "d_bbox.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EventFormatError, match="d_bbox.npy: not a Prophesee bbox"):
        read_prophesee_bboxes(tmp_path / "d_bbox.npy")
    np.save(tmp_path / "e_bbox.npy", np.zeros(3))
    with pytest.raises(EventFormatError, match="missing"):
        read_prophesee_bboxes(tmp_path / "e_bbox.npy")
