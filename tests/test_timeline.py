"""Long recordings (issue 21): a window slid along a stream recovers known segments; empty stretches,
short files and bad arguments give clear output; the real AEDAT 4 file runs through."""
import json

import numpy as np
import pytest

from spikmamba.cli import main
from spikmamba.data.synthetic import CLASSES, SynthActions
from spikmamba.events import make_events
from spikmamba.events.io import write_events

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane

SEGMENTS = ["move_right", "move_up", "approach", "wave_start_left"]


def long_recording(path, segments, clips_per_segment=3, gap_us=0):
    """SynthActions test clips (seed 0, 32x32) of known classes, one after another in time."""
    ds = SynthActions("test", num_samples=200, sensor_size=(32, 32), seed=0, cache=False)
    by_class = {c: [i for i in range(200) if ds.label(i) == CLASSES.index(c)] for c in segments}
    parts, t0, bounds = [], 0, []
    for c in segments:
        start = t0
        for i in by_class[c][:clips_per_segment]:
            ev = ds.events(i).copy()
            ev["t"] = ev["t"] - ev["t"][0] + t0
            parts.append(ev)
            t0 += 500_000
        bounds.append((c, start, t0))
        t0 += gap_us
    write_events(path, np.concatenate(parts), sensor_size=(32, 32))
    return bounds


def test_windows_recover_the_known_segments_by_majority(tmp_path, capsys):
    bounds = long_recording(tmp_path / "long.npz", SEGMENTS)
    assert main(["predict", "--model", "spikmamba_tiny_sps.synth", str(tmp_path / "long.npz"), "--window", "500",
                 "--stride", "250", "--timeline", str(tmp_path / "tl")]) == 0
    out = capsys.readouterr().out
    assert "x real time" in out
    data = json.loads((tmp_path / "tl.json").read_text())
    rows = data["windows"]
    first = data["first_event_us"]
    for cls, start, end in bounds:
        inside = [r["label"] for r in rows if r["start_us"] - first >= start and r["end_us"] - first <= end]
        assert len(inside) >= 4 and max(set(inside), key=inside.count) == cls, (cls, inside)
    assert (tmp_path / "tl.csv").read_text().startswith("start_ms,end_ms,start_us,events,label,top1,p1")


def test_gaps_short_files_and_bad_arguments(tmp_path, capsys):
    long_recording(tmp_path / "gap.npz", ["move_right", "move_up"], clips_per_segment=1, gap_us=120_000_000)  # 2 min
    assert main(["predict", "--model", "spikmamba_tiny_sps.synth", str(tmp_path / "gap.npz"), "--window", "500",
                 "--stride", "500", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    labels = [r["label"] for r in data["windows"]]
    assert labels.count("(no events)") >= 238 and data["empty_windows"] == labels.count("(no events)")
    assert labels[0] != "(no events)" and labels[-1] != "(no events)"  # the two clips, never guessed in between
    write_events(tmp_path / "one.npz", make_events(t=[5], x=[3], y=[4], p=[1]), sensor_size=(32, 32))
    assert main(["predict", "--model", "spikmamba_tiny_sps.synth", str(tmp_path / "one.npz"), "--window", "10000",
                 "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert len(one["windows"]) == 1 and one["windows"][0]["events"] == 1
    assert any("longer than the recording" in n for n in one["notes"])
    for bad, why in [
        (["--window", "100", "--stride", "0"], "--stride must be > 0 ms"),
        (["--window", "-5"], "--window must be > 0"),
    ]:
        assert main(["predict", "--model", "spikmamba_tiny_sps.synth", str(tmp_path / "one.npz"), *bad]) == 2
        assert why in capsys.readouterr().err


def test_the_real_aedat4_recording_runs_through(shared_data, capsys):
    pytest.importorskip("aedat")
    assert main(["predict", "--model", "spikmamba_tiny_sps.synth", str(shared_data / "aedat4" / "data_sample.aedat4"),
                 "--window", "200", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["events"] == 323963 and data["windows"] and data["realtime_factor"] > 0


def test_npy_is_read_in_chunks_and_a_cut_file_says_so(tmp_path, monkeypatch):
    from spikmamba.events.io import arrays, stream_events

    ev = make_events(t=np.arange(1000) * 10, x=np.arange(1000) % 32, y=np.arange(1000) % 31, p=np.arange(1000) % 2)
    np.save(tmp_path / "e.npy", ev)
    monkeypatch.setattr(arrays, "STREAM_EVENTS", 300)
    chunks = list(stream_events(tmp_path / "e.npy"))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    assert (np.concatenate(chunks) == ev).all()
    data = (tmp_path / "e.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:len(data) - 13 * 150])
    with pytest.raises(ValueError, match="cut.npy.*holds 850 of the 1000 events"):
        list(stream_events(tmp_path / "cut.npy"))


def test_windows_of_a_stream_count_every_event_once_and_report_late_ones():
    from spikmamba.engine.timeline import Windows

    class Rep:  # stands in for the representation: the window's event count as its input
        pass

    def chunks():
        yield make_events(t=np.arange(0, 1_000_000, 1000), x=np.zeros(1000), y=np.zeros(1000), p=np.ones(1000))
        yield make_events(t=[100, 1_000_500, 1_000_200], x=[0, 0, 0], y=[0, 0, 0], p=[1, 1, 1], sort=False)

    w = Windows(chunks(), 100_000, 50_000, None, Rep(), (4, 4))
    w._window = lambda buf, t, start: (start, start + 100_000, int(((t >= start) & (t < start + 100_000)).sum()), None)
    rows = list(w)
    assert [r[0] for r in rows] == list(range(0, 1_000_001, 50_000))
    # every one of the 1002 in-order events lies in two windows (stride half the window), except the 50 of the
    # first half-window; the windows go on until one starts after the last event
    assert sum(r[2] for r in rows) == 2 * 1002 - 50
    assert w.late == 1  # t=100 came after its windows had closed


def test_events_joined_as_bytes_equal_numpy_concatenate():
    from spikmamba.events import EVENT_DTYPE
    from spikmamba.events.types import concat_events

    rng = np.random.default_rng(0)
    ev = make_events(t=rng.integers(0, 10**12, 1001), x=rng.integers(0, 640, 1001), y=rng.integers(0, 480, 1001),
                     p=rng.integers(0, 2, 1001), sort=False)
    parts = [ev[:300], ev[300:300], ev[300:700:2], ev[700:]]  # an empty part and a strided one
    joined = concat_events(parts)
    assert joined.dtype == EVENT_DTYPE and joined.flags.c_contiguous
    np.testing.assert_array_equal(joined, np.concatenate(parts))
    assert len(concat_events([])) == 0 and concat_events([]).dtype == EVENT_DTYPE


def test_the_onnx_backend_gives_the_same_timeline(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    long_recording(tmp_path / "l.npz", ["move_right", "approach"], clips_per_segment=1)
    runs = []
    for backend in ("torch", "onnxruntime"):
        assert main(["predict", "--model", "spikmamba_tiny_sps.synth", str(tmp_path / "l.npz"), "--window", "300",
                     "--backend", backend, "--json"]) == 0
        runs.append(json.loads(capsys.readouterr().out)["windows"])
    assert [r["label"] for r in runs[0]] == [r["label"] for r in runs[1]] and len(runs[0]) >= 6
    for a, b in zip(*runs):
        assert a["top"][0]["probability"] == pytest.approx(b["top"][0]["probability"], abs=1e-4)


def test_a_file_without_its_sensor_size_is_named_and_sensor_size_fixes_it(tmp_path, capsys):
    from spikmamba.events.io import write_events as write

    ev = make_events(t=np.arange(0, 600_000, 60), x=np.arange(10_000) % 128, y=np.arange(10_000) % 100,
                     p=np.arange(10_000) % 2)
    write(tmp_path / "big.bs2", ev)  # N-MNIST format: no sensor size in the file
    assert main(["predict", "--model", "spikmamba_tiny_sps.synth", str(tmp_path / "big.bs2"), "--window", "300"]) == 2
    err = capsys.readouterr().err
    assert "big.bs2" in err and "--sensor-size W H" in err
    for extra in (["--window", "300"], []):
        assert main(["predict", "--model", "spikmamba_tiny_sps.synth", str(tmp_path / "big.bs2"),
                     "--sensor-size", "128", "128", *extra]) == 0


def test_smoothing_averages_each_window_with_its_nearest_non_empty_neighbours():
    import torch

    from spikmamba.engine.timeline import _smooth

    p = [torch.tensor([1.0, 0.0]), None, torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]), None]
    assert _smooth(p, 1) is p
    s = _smooth(p, 3)
    assert s[1] is None and s[4] is None  # empty windows stay empty
    assert torch.allclose(s[0], torch.tensor([1 / 3, 2 / 3]))  # at the edge: itself and the next two
    assert torch.allclose(s[2], torch.tensor([1 / 3, 2 / 3])) and torch.allclose(s[3], torch.tensor([1 / 3, 2 / 3]))
    s2 = _smooth(p, 2)
    assert torch.allclose(s2[0], torch.tensor([0.5, 0.5])) and torch.allclose(s2[3], torch.tensor([0.0, 1.0]))
