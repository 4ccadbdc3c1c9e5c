"""Long recordings (issue 21): the timeline and the animation of a DVS128 Gesture-length recording.

The recording is 10 s of 128x128 events at the event rate of the real DVS128 Gesture clips
(85k events/s, uniform in space and time, seeded). ``timeline``: ``spikmamba_tiny_sps.synth``
slid along it with a 500 ms window every 250 ms (stride half the window, the issue's target
setting); the real-time factor is 10 s divided by the time shown. The baseline reads the whole
file, cuts the windows with ``searchsorted`` and runs the same model one window at a time (what
a first script does). ``show-gif``: the recording as a 33 ms-per-frame GIF; the baseline draws each
frame as RGB and lets Pillow quantise it (what ``Image.fromarray(rgb)`` then ``save`` does).
"""
import tempfile
from pathlib import Path

import numpy as np
import torch

from spikmamba.events import make_events
from spikmamba.events.io import read_events, write_events


def recording(seconds: int) -> Path:
    rng = np.random.default_rng(0)
    n = seconds * 85_000
    ev = make_events(t=np.sort(rng.integers(0, seconds * 1_000_000, n)), x=rng.integers(0, 128, n),
                     y=rng.integers(0, 128, n), p=rng.integers(0, 2, n))
    path = Path(tempfile.mkdtemp(prefix="spikmamba-bench-timeline-")) / "gesture_length.npz"
    write_events(path, ev, sensor_size=(128, 128))
    return path


def timeline(quick: bool):
    from spikmamba.engine.inputs import prepare_events
    from spikmamba.engine.predict import load_predictor
    from spikmamba.engine.timeline import predict_timeline

    seconds = 1 if quick else 10
    path = recording(seconds)
    predictor = load_predictor(model="spikmamba_tiny_sps.synth")

    def whole_file_then_windows():
        ev = read_events(path).events
        t = ev["t"]
        with torch.no_grad():
            for start in range(int(t[0]), int(t[-1]) + 1, 250_000):
                a, b = np.searchsorted(t, [start, start + 500_000])
                x = prepare_events(ev[a:b], predictor.representation, (128, 128), predictor.transforms)
                predictor.forward(torch.from_numpy(x)[None]).softmax(1)

    return {"what": f"{seconds} s recording (128x128, {seconds * 85}k events), spikmamba_tiny_sps, 500 ms window "
                    f"every 250 ms; real-time factor = {seconds} s / time",
            "impls": {"streamed, batched windows (ours)": lambda: predict_timeline(predictor, path, 500, 250),
                      "whole file, one window at a time": whole_file_then_windows}}


def show_gif(quick: bool):
    from PIL import Image

    from spikmamba.analysis.show import render

    seconds = 1 if quick else 10
    path = recording(seconds)
    out = Path(tempfile.mkdtemp(prefix="spikmamba-bench-show-"))

    def rgb_frames_quantised_by_pillow():
        ev = read_events(path).events
        images = []
        for start in range(int(ev["t"][0]), int(ev["t"][-1]) + 1, 33_000):
            a, b = np.searchsorted(ev["t"], [start, start + 33_000])
            f = ev[a:b]
            rgb = np.full((128, 128, 3), 24, np.uint8)
            rgb[f["y"][f["p"] > 0], f["x"][f["p"] > 0]] = (255, 80, 60)
            rgb[f["y"][f["p"] == 0], f["x"][f["p"] == 0]] = (70, 150, 255)
            images.append(Image.fromarray(np.kron(rgb, np.ones((2, 2, 1), np.uint8))))
        images[0].save(out / "baseline.gif", save_all=True, append_images=images[1:], duration=33, loop=0)

    return {"what": f"{seconds} s recording (128x128) to a GIF of 33 ms frames, 256 pixels wide",
            "impls": {"palette frames (ours)": lambda: render(path, out / "ours.gif"),
                      "RGB frames, Pillow quantises": rgb_frames_quantised_by_pillow}}


BENCHMARKS = {"timeline": timeline, "show-gif": show_gif}
