"""Seeing events and spikes (issue 21): `spikmamba show` animations and contact sheets,
`spikmamba inspect` firing rates and rasters."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from spikmamba.analysis.show import BACKGROUND, BOTH, OFF, ON, frames_of
from spikmamba.cli import main
from spikmamba.events import make_events
from spikmamba.events.io import read_events, write_events
from spikmamba.nn.functional import record_firing_rates, reset_net


def gesture_length_recording(path, seconds=10, rate=85_000, size=128, seed=0):
    """A DVS128 Gesture-sized recording: 10 s at the event rate of the real clips (~85k events/s)."""
    rng = np.random.default_rng(seed)
    n = seconds * rate
    ev = make_events(t=np.sort(rng.integers(0, seconds * 1_000_000, n)), x=rng.integers(0, size, n),
                     y=rng.integers(0, size, n), p=rng.integers(0, 2, n))
    write_events(path, ev, sensor_size=(size, size))
    return ev


def test_a_ten_second_gesture_length_recording_becomes_a_gif_with_one_frame_per_33ms(tmp_path, capsys):
    ev = gesture_length_recording(tmp_path / "g.npz")
    assert main(["show", str(tmp_path / "g.npz"), "--out", str(tmp_path / "g.gif")]) == 0
    assert "304 frames of 33 ms" in capsys.readouterr().out
    with Image.open(tmp_path / "g.gif") as gif:
        expected = (int(ev["t"][-1]) - int(ev["t"][0])) // 33_000 + 1
        assert gif.n_frames == expected == 304
        assert gif.width == 256  # 128 pixels drawn 2x


def test_frames_show_each_pixels_polarity_and_empty_frames_of_a_gap(tmp_path):
    ev = make_events(t=[0, 10, 20, 100_000], x=[1, 2, 2, 0], y=[1, 1, 1, 0], p=[1, 0, 1, 1])
    write_events(tmp_path / "e.npz", ev, sensor_size=(4, 3))
    (w, h), t0, frames = frames_of(tmp_path / "e.npz", frame_ms=10)
    frames = list(frames)
    assert (w, h, t0) == (4, 3, 0)
    assert len(frames) == 11  # 0..100 ms in 10 ms frames, the 9 between are empty, not skipped
    first = frames[0][1]
    assert first[1, 1] == ON and first[1, 2] == BOTH and first[0, 0] == BACKGROUND
    assert all((img == BACKGROUND).all() for _, img in frames[1:10])
    assert frames[10][1][0, 0] == ON and OFF not in frames[10][1]


def test_the_real_aedat4_recording_shows_with_the_expected_frame_count_and_a_model_label(shared_data, tmp_path, capsys):
    pytest.importorskip("aedat")
    path = shared_data / "aedat4" / "data_sample.aedat4"
    t = read_events(path).events["t"]
    assert main(["show", str(path), "--out", str(tmp_path / "a.gif"), "--frame-ms", "50"]) == 0
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == (int(t.max()) - int(t.min())) // 50_000 + 1
        assert gif.size == (320, 240 + 8)


def test_show_with_a_model_draws_labels_and_the_contact_sheet(tmp_path, capsys):
    ev = make_events(t=np.arange(0, 400_000, 40), x=np.arange(10_000) % 32, y=(np.arange(10_000) // 7) % 32,
                     p=np.arange(10_000) % 2)
    write_events(tmp_path / "c.npz", ev, sensor_size=(32, 32))
    assert main(["show", str(tmp_path / "c.npz"), "--out", str(tmp_path / "plain.gif")]) == 0
    assert main(["show", str(tmp_path / "c.npz"), "--out", str(tmp_path / "label.gif"), "--model",
                 "spikmamba_tiny_sps.synth", "--window", "200", "--sheet", str(tmp_path / "sheet.png")]) == 0
    assert "8 time steps x 2 channels" in capsys.readouterr().out
    with Image.open(tmp_path / "plain.gif") as a, Image.open(tmp_path / "label.gif") as b:
        assert a.n_frames == b.n_frames
        a.seek(3), b.seek(3)
        pa, pb = np.asarray(a.convert("L")), np.asarray(b.convert("L"))
    body = 256  # 32 pixels drawn 8x: the label is written near the bottom of the picture
    assert (pa[:body - 14] == pb[:body - 14]).all() and (pa[body - 14:body] != pb[body - 14:body]).any()
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width > 300 and sheet.height > 300


def test_show_mp4_and_bad_input(tmp_path, capsys):
    ev = make_events(t=[0, 50_000, 99_000], x=[0, 1, 2], y=[0, 1, 2], p=[1, 0, 1])
    write_events(tmp_path / "s.npz", ev, sensor_size=(8, 8))
    try:
        import av
    except ImportError:  # PyAV is the video extra; the GIF path and the errors are tested regardless
        av = None
    if av is not None:
        assert main(["show", str(tmp_path / "s.npz"), "--out", str(tmp_path / "s.mp4"), "--frame-ms", "10"]) == 0
        with av.open(str(tmp_path / "s.mp4")) as c:
            assert sum(1 for _ in c.decode(video=0)) == 10
    for args, why in [(["--frame-ms", "0"], "--frame-ms must be > 0"), (["--out", "x.png"], "write a .gif or an .mp4"),
                      (["--model", "spikmamba_tiny_sps.synth", "--sheet", "x.png", "--window", "0"], "--window must"),
                      (["--model", "spikmamba_tiny_sps.synth", "--stride", "0"], "--stride must be > 0 ms")]:
        assert main(["show", str(tmp_path / "s.npz"), *args]) == 2, args
        assert why in capsys.readouterr().err
    write_events(tmp_path / "none.npz", make_events(t=[], x=[], y=[], p=[]), sensor_size=(8, 8))
    assert main(["show", str(tmp_path / "none.npz"), "--out", str(tmp_path / "n.gif")]) == 2
    assert "holds no events" in capsys.readouterr().err


def test_inspect_rates_match_the_energy_monitor_and_the_raster_is_that_layer(tmp_path, capsys):
    from spikmamba.engine.inputs import load_input_file
    from spikmamba.engine.predict import load_predictor

    assert main(["synth", "--out", str(tmp_path / "clips"), "--count", "1", "--sensor-size", "32"]) == 0
    clip = next((tmp_path / "clips").glob("*.npz"))
    assert main(["inspect", "--model", "spikmamba_tiny_sps.synth", str(clip), "--out", str(tmp_path / "i"),
                 "--layer", "patch_embed.rpe.lif"]) == 0
    out = capsys.readouterr().out
    assert "predicts" in out and "patch_embed.rpe.lif" in out
    summary = json.loads((tmp_path / "i" / "inspect.json").read_text())
    p = load_predictor(model="spikmamba_tiny_sps.synth")
    x = load_input_file(clip, p.representation, p.transforms).unsqueeze(0)
    reset_net(p.module)
    with torch.no_grad(), record_firing_rates(p.module) as rates:
        logits = p.module(x)
    assert summary["prediction"] == p.classes[int(logits.argmax())]
    assert set(summary["rates"]) == set(rates) and len(rates) == 6
    for name, per_step in summary["rates"].items():
        assert len(per_step) == 8  # the model's 8 time steps
        assert np.mean(per_step) == pytest.approx(rates[name], rel=1e-6)
    rows = list(csv.DictReader(open(tmp_path / "i" / "rates.csv")))
    assert len(rows) == 6 * 8 and {r["layer"] for r in rows} == set(rates)
    assert (tmp_path / "i" / "raster.png").stat().st_size > 5000 and (tmp_path / "i" / "rates.png").exists()
    assert main(["inspect", "--model", "spikmamba_tiny_sps.synth", str(clip), "--layer", "rpe",
                 "--out", str(tmp_path / "j")]) == 2
    assert "did you mean patch_embed.rpe.lif" in capsys.readouterr().err


def test_late_events_are_counted_and_events_outside_the_sensor_are_an_error(tmp_path, monkeypatch, capsys):
    from spikmamba.events.io import arrays

    # two chunks of 4 events; the second starts with an event 50 ms back in time, after its frame was drawn
    ev = make_events(t=[0, 10_000, 20_000, 100_000, 50_000, 110_000, 120_000, 130_000], x=[0] * 8, y=[0] * 8,
                     p=[1] * 8, sort=False)
    np.save(tmp_path / "late.npy", ev)
    monkeypatch.setattr(arrays, "STREAM_EVENTS", 4)
    (_, _, frames) = frames_of(tmp_path / "late.npy", frame_ms=10, sensor_size=(4, 4))
    assert len(list(frames)) == 14 and frames.late == 1
    assert main(["show", str(tmp_path / "late.npy"), "--sensor-size", "4", "4", "--frame-ms", "10",
                 "--out", str(tmp_path / "late.gif")]) == 0
    assert "1 events arrived after their frame was drawn" in capsys.readouterr().out
    np.save(tmp_path / "wide.npy", make_events(t=[0, 5], x=[0, 40], y=[0, 1], p=[1, 0]))
    assert (
        main(["show", str(tmp_path / "wide.npy"), "--sensor-size", "32", "32", "--out", str(tmp_path / "w.gif")]) == 2
    )
    assert "x=40" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "wide.npy"), "--sensor-size", "64", "64", "--start-ms", "5", "--end-ms", "2",
                 "--out", str(tmp_path / "w.gif")]) == 2
    assert "--end-ms (2.0) must be after --start-ms" in capsys.readouterr().err
