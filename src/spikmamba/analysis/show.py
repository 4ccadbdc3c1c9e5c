"""``spikmamba show``: an event recording as an animation people can look at.

Events are accumulated into frames of ``frame_ms`` (ON in red, OFF in blue, both in white, on a
dark background), with the time and a progress bar drawn on each frame, and, when a model is
given, the label of the window each frame falls in. Frames are palette images built straight from
pixel indices (no per-frame colour quantisation), so a 10-second DVS128 recording becomes a GIF in
seconds; the recording is read as a stream. ``.gif`` is written with Pillow, ``.mp4`` with PyAV.
:func:`contact_sheet` draws the representation a model sees (its T frames and channels) as a PNG.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from ..errors import InputError, MissingDependency
from ..events.io import stream_events
from ..events.types import MEMORY_BUDGET, T_END, check_allocation, duration_us, sort_by_time

BACKGROUND, ON, OFF, BOTH, TEXT, BAR = range(6)
PALETTE = [24, 24, 28, 255, 80, 60, 70, 150, 255, 255, 255, 255, 235, 235, 235, 120, 200, 120]
BAR_HEIGHT = 6


class Frames:
    """The frames of a recording, in order: ``(frame_start_us, [H, W] uint8 palette indices)``.

    ``late`` counts the events left out because they arrived after their frame was drawn
    (timestamps going back across chunks of the stream); ``render`` reports it."""

    def __init__(self, path, first, chunks, sensor, step: int, start: int, end: int | None):
        self.path, self.first, self.chunks = path, first, chunks
        self.sensor, self.step, self.start, self.end = sensor, step, start, end
        self.late = 0
        self.drawn = 0  # events drawn into frames
        self.limit = None  # the most frames an animation may hold (set by render)
        self.last = None  # the latest timestamp read

    def _room(self, t: int, frame_start: int) -> None:
        """Refuse a gap whose empty frames alone would pass ``limit`` frames, before drawing them."""
        if self.limit is not None and (t - frame_start) // self.step > self.limit:
            raise InputError(f"{self.path}: the timestamps jump from {frame_start - self.step:,} to {t:,} µs: "
                             f"{(t - frame_start) // self.step:,} frames of {self.step / 1e3:g} ms, more than the "
                             f"{self.limit:,} frames an animation may hold; show a part with --start-ms/--end-ms or "
                             f"a longer --frame-ms")

    def __iter__(self):
        W, H = self.sensor
        step, start, end = self.step, self.start, self.end
        frame_start, on, off = start, np.zeros((H, W), bool), np.zeros((H, W), bool)

        def image():
            img = np.full((H, W), BACKGROUND, np.uint8)
            img[on] = ON
            img[off] = OFF
            img[on & off] = BOTH
            return img

        for chunk in itertools.chain([self.first], self.chunks):
            if not len(chunk):
                continue
            if int(chunk["x"].max()) >= W or int(chunk["y"].max()) >= H:
                raise InputError(f"{self.path}: events reach x={int(chunk['x'].max())}, y={int(chunk['y'].max())}, "
                                 f"outside the {W}x{H} sensor; give the right --sensor-size W H")
            chunk = sort_by_time(chunk)
            t = np.ascontiguousarray(chunk["t"])  # searchsorted on a strided field is several times slower
            self.last = int(t[-1]) if self.last is None else max(self.last, int(t[-1]))
            a = int(np.searchsorted(t, min(max(start, frame_start), T_END), "left"))
            self.late += a - int(np.searchsorted(t, start, "left"))
            b = len(t) if end is None else int(np.searchsorted(t, min(end, T_END), "left"))
            while a < b:
                cut = min(int(np.searchsorted(t, min(frame_start + step, T_END), "left")), b)
                self.drawn += cut - a
                sel = chunk[a:cut]
                on[sel["y"][sel["p"] > 0], sel["x"][sel["p"] > 0]] = True
                off[sel["y"][sel["p"] == 0], sel["x"][sel["p"] == 0]] = True
                a = cut
                if a < b:  # an event at or after the frame's end: the frame is complete
                    yield frame_start, image()
                    on[:], off[:] = False, False
                    frame_start += step
                    self._room(int(t[a]), frame_start)
                    while t[a] >= frame_start + step:  # empty frames of a gap
                        yield frame_start, image()
                        frame_start += step
            if end is not None and int(t[-1]) >= end:
                break  # the rest of the file lies after the part to show
        yield frame_start, image()


def frames_of(path, frame_ms: float = 33.0, start_ms: float | None = None, end_ms: float | None = None,
              sensor_size=None, event_format: str | None = None):
    """``((W, H), first_event_us, Frames)`` of a recording read as a stream; ``start_ms`` and
    ``end_ms`` count from the first event."""
    stream = stream_events(path, format=event_format, sensor_size=sensor_size)
    chunks = iter(stream)
    first = next(chunks, None)
    while first is not None and not len(first):
        first = next(chunks, None)
    if first is None:
        raise InputError(f"{path}: the recording holds no events")
    if stream.sensor_size is None:
        raise InputError(f"{path}: the file does not state its sensor size; pass --sensor-size W H")
    W, H = stream.sensor_size[:2]
    check_allocation(3 * W * H, f"a frame of the {W}x{H} sensor", "check --sensor-size or the size the file states")
    step = duration_us(frame_ms, "--frame-ms")
    t_first = int(first["t"].min())
    start = t_first + (0 if not start_ms else _offset_us(start_ms, "--start-ms"))
    end = None if end_ms is None else t_first + _offset_us(end_ms, "--end-ms")
    if end is not None and end <= start:
        raise InputError(f"--end-ms ({end_ms}) must be after --start-ms ({start_ms or 0})")
    return (W, H), t_first, Frames(path, first, chunks, (W, H), step, start, end)


def _offset_us(ms, option: str) -> int:
    """A time from the first event (``--start-ms``, ``--end-ms``), as whole µs: finite, >= 0."""
    if isinstance(ms, (int, float)) and ms == 0:
        return 0
    return duration_us(ms, option)


def render(path, out, frame_ms: float = 33.0, fps: float | None = None, start_ms=None, end_ms=None,
           scale: int | None = None, timeline=None, sensor_size=None, max_frames: int = 20_000,
           event_format: str | None = None) -> dict:
    """Write the animation (see the module docstring); returns ``{"path", "frames", "seconds"}``."""
    from PIL import Image, ImageDraw

    out = Path(out)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise InputError(f"{out}: write a .gif or an .mp4")
    if scale is not None and (not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= 64):
        raise InputError(f"--scale must be a whole number of pixels per sensor pixel from 1 to 64, got {scale}")
    if fps is not None and not (isinstance(fps, (int, float)) and 0.01 <= fps <= 1000):
        raise InputError(f"--fps must be from 0.01 to 1000 frames per second, got {fps}")
    (W, H), t0, frames = frames_of(path, frame_ms, start_ms, end_ms, sensor_size, event_format)
    scale = scale or max(1, math.ceil(256 / max(W, H)))
    frame_bytes = (H * scale + BAR_HEIGHT + 2) * W * scale
    check_allocation(frame_bytes, f"one {W * scale}x{H * scale} frame (sensor {W}x{H} at --scale {scale})",
                     "give a smaller --scale")
    max_frames = max(1, min(max_frames, MEMORY_BUDGET // frame_bytes))  # the frames are kept until written
    frames.limit = max_frames
    fps = fps or min(1000.0, max(0.01, 1000.0 / frame_ms))  # real time, within what GIF and MP4 can hold
    windows = _label_lookup(timeline)
    images, count = [], 0
    for frame_start, idx in frames:
        count += 1
        if count > max_frames:
            raise InputError(f"more than {max_frames:,} frames of {W * scale}x{H * scale} pixels (the most that fit "
                             f"in 2 GiB, at most 20,000); show a part with --start-ms/--end-ms, a longer --frame-ms "
                             f"or a smaller --scale")
        big = idx.repeat(scale, 0).repeat(scale, 1) if scale > 1 else idx
        canvas = np.full((big.shape[0] + BAR_HEIGHT + 2, big.shape[1]), BACKGROUND, np.uint8)
        canvas[:big.shape[0]] = big
        img = Image.fromarray(canvas, "P")
        img.putpalette(PALETTE)
        draw = ImageDraw.Draw(img)
        seconds = (frame_start - t0) / 1e6
        draw.text((3, 2), f"{seconds:.3f} s", fill=TEXT)
        label = windows(frame_start + frame_ms * 500) if windows else None
        if label:
            draw.text((3, big.shape[0] - 12), label, fill=TEXT)
        images.append(img)
    if not frames.drawn:
        last_ms = (frames.last - t0) / 1e3
        raise InputError(f"{path}: nothing to show: the recording's events end at {last_ms:g} ms from its first event"
                         + (f", before --start-ms {start_ms:g}" if start_ms else "")
                         + ("; give an earlier --start-ms" if start_ms else ""))
    total = max(len(images), 1)
    width = images[0].width
    for i, img in enumerate(images):  # the progress bar, now that the frame count is known
        filled = int(width * (i + 1) / total)
        if filled:
            ImageDraw.Draw(img).rectangle([0, img.height - BAR_HEIGHT, filled - 1, img.height - 1], fill=BAR)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        images[0].save(out, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0,
                       optimize=False, disposal=1)
    else:
        _write_mp4(out, images, fps)
    return {"path": str(out), "frames": len(images), "seconds": len(images) * frame_ms / 1e3, "scale": scale,
            "late_events": frames.late}


def _label_lookup(timeline):
    """The label of the latest window that contains a time (µs), or None without a timeline."""
    if timeline is None or not timeline.rows:
        return None
    starts = np.array([r["start_us"] for r in timeline.rows])
    ends = np.array([r["end_us"] for r in timeline.rows])

    def lookup(t):
        i = int(np.searchsorted(starts, t, "right")) - 1
        if i < 0 or t >= ends[i]:
            return None
        r = timeline.rows[i]
        top = f" {r['top'][0]['probability']:.2f}" if r["top"] else ""
        return f"{r['label']}{top}"
    return lookup


def _write_mp4(out: Path, images, fps: float) -> None:
    try:
        import av
    except ImportError:
        raise MissingDependency("writing .mp4 needs PyAV: pip install av (or write a .gif)") from None
    from fractions import Fraction

    w, h = images[0].size
    with av.open(str(out), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = w + w % 2, h + h % 2
        stream.pix_fmt = "yuv420p"
        for img in images:
            rgb = np.asarray(img.convert("RGB"))
            if rgb.shape[:2] != (stream.height, stream.width):
                rgb = np.pad(rgb, ((0, stream.height - h), (0, stream.width - w), (0, 0)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def contact_sheet(x: np.ndarray, out, title: str = "", channel_names=None) -> Path:
    """The model input ``[T, C, H, W]`` as a grid of images (rows: time steps, columns: channels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T, C = x.shape[:2]
    names = channel_names or (["OFF", "ON"] if C == 2 else [f"channel {c}" for c in range(C)])
    cols = min(T, 8)
    rows = math.ceil(T / cols) * C
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for t in range(T):
        for c in range(C):
            r, k = (t // cols) * C + c, t % cols
            axes[r][k].imshow(x[t, c], cmap="magma", vmin=0, vmax=max(float(x[:, c].max()), 1e-6))
            axes[r][k].set_title(f"t={t} {names[c]}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
