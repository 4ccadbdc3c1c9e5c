"""Every reader that has a real recording in ../shared/data is tested on it: count, bounds,
monotonic time, and a checksum of the decoded array recorded once (sha256 prefix)."""
import hashlib

import numpy as np
import pytest

from spikmamba.events.io import EventFormatError, read_events

REAL = {  # path: (format, events, sensor size to check, checksum of events.tobytes())
    "aedat4/data_sample.aedat4": ("aedat4", 323963, (320, 240), "12d2676bd3ba23e5"),
    "dvsgesture-clips/1.bs2": ("nbin", 63471, (128, 128), "347f0f949c982bbd"),
    "nmnist-bin/sample_nmnist.bin": ("nbin", 4325, (34, 34), "35feb1bcb32c1ccf"),
    "nmnist-small/train/1.bs2": ("nbin", 4681, (34, 34), "fffc672a3a6f0e95"),
    "prophesee/evt2_sample.raw": ("evt2", 539481, (640, 480), "287b2e8dc0ad960d"),
    "prophesee/evt2_spinning.raw": ("evt2", 521252, (640, 480), "58773c06cd3098d1"),
    "prophesee/sample_ncars.dat": ("dat", 2009, (120, 100), "ad3600a8858f0dd6"),
}


@pytest.mark.parametrize("rel", sorted(REAL))
def test_real_recording_decodes_exactly(shared_data, rel):
    fmt, count, (W, H), digest = REAL[rel]
    if fmt == "aedat4":
        pytest.importorskip("aedat")
    rec = read_events(shared_data / rel)
    ev = rec.events
    assert rec.format == fmt and len(ev) == count
    assert ev["x"].max() < W and ev["y"].max() < H
    assert np.all(np.diff(ev["t"]) >= 0)
    assert set(np.unique(ev["p"]).tolist()) == {0, 1}
    assert hashlib.sha256(ev.tobytes()).hexdigest()[:16] == digest


def test_every_real_nmnist_and_gesture_file_decodes(shared_data):
    files = sorted((shared_data / "nmnist-small" / "train").glob("*.bs2")) + sorted(
        (shared_data / "dvsgesture-clips").glob("*.bs2")
    )
    assert len(files) >= 1000
    for f in files:
        ev = read_events(f, on_unsorted="error").events
        limit = 34 if "nmnist" in str(f) else 128
        assert len(ev) > 0 and ev["x"].max() < limit and ev["y"].max() < limit, f


@pytest.mark.parametrize("rel,enc", [("prophesee/evt2_sample.raw", "evt2"), ("prophesee/sample_ncars.dat", "dat")])
def test_prophesee_decoders_agree_with_expelliarmus(shared_data, rel, enc):
    wizard = pytest.importorskip("expelliarmus").Wizard
    ref = wizard(encoding=enc).read(str(shared_data / rel))
    ours = read_events(shared_data / rel).events
    for k in "txyp":
        np.testing.assert_array_equal(ours[k].astype(np.int64), ref[k].astype(np.int64))


def test_truncated_real_aedat4_names_the_packet_offset(shared_data, tmp_path):
    pytest.importorskip("aedat")
    src = (shared_data / "aedat4" / "data_sample.aedat4").read_bytes()
    cut = tmp_path / "cut.aedat4"
    cut.write_bytes(src[:1_000_000])
    with pytest.raises(EventFormatError) as err:
        read_events(cut)
    assert err.value.offset is not None and 0 < err.value.offset < 1_000_000 and "cut.aedat4" in str(err.value)


def test_bit_flipped_real_aedat4_is_an_error_not_a_crash(shared_data, tmp_path):
    pytest.importorskip("aedat")
    data = bytearray((shared_data / "aedat4" / "data_sample.aedat4").read_bytes())
    data[500_000:500_100] = b"\xff" * 100
    bad = tmp_path / "flip.aedat4"
    bad.write_bytes(bytes(data))
    with pytest.raises(EventFormatError) as err:
        read_events(bad)
    assert "flip.aedat4" in str(err.value)
