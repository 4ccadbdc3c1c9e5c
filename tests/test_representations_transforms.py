"""Voxel grid, count image, AFE and the event transforms, each against a plain loop or a hand count."""
import numpy as np
import pytest
from conftest import random_events

from spikmamba.data import EventRepresentation
from spikmamba.data.event_representation import KINDS, LOOKUP_COUNTS, _log1p_counts
from spikmamba.events import (
    CenterCrop,
    Compose,
    Denoise,
    Downsample,
    DropEvent,
    RandomCrop,
    RandomFlip,
    RefractoryPeriod,
    TimeJitter,
    TimeShift,
    TimeSlice,
    make_events,
    to_afe_frames,
    to_count_image,
    to_voxel_grid,
)
from spikmamba.events.afe import afe_segments


@pytest.mark.parametrize("n,B", [(1, 3), (200, 5), (1000, 1)])
def test_voxel_grid_equals_loop(n, B):
    ev = random_events(n, (7, 5), 10_000, seed=n)
    ref = np.zeros((B, 5, 7))
    t0, t1 = int(ev["t"][0]), int(ev["t"][-1])
    for e in ev:
        tn = (B - 1) * (int(e["t"]) - t0) / (t1 - t0) if t1 > t0 else 0.0
        pol = 1.0 if e["p"] > 0 else -1.0
        for b in range(B):
            ref[b, e["y"], e["x"]] += pol * max(0.0, 1.0 - abs(tn - b))
    np.testing.assert_allclose(to_voxel_grid(ev, (7, 5), B), ref, atol=1e-5)


def test_count_image_is_per_polarity_histogram():
    ev = make_events([0, 1, 2, 3], [0, 0, 2, 2], [1, 1, 0, 0], [1, 1, 0, 1])
    img = to_count_image(ev, (3, 2))
    assert img[1, 1, 0] == 2 and img[0, 0, 2] == 1 and img[1, 0, 2] == 1 and img.sum() == 4


def test_afe_segments_cover_the_stream_in_order_and_adapt_to_motion():
    # a static blob then a fast-moving dot: the moving part must get more (shorter) segments
    rng = np.random.default_rng(0)
    n = 40_000
    static = make_events(np.arange(n), rng.integers(10, 14, n), rng.integers(10, 14, n), rng.integers(0, 2, n))
    # a 4x4 blob sweeping across the sensor (thinner lines would vanish in AFE's 2x2 opening)
    moving = make_events(
        np.arange(n, 2 * n),
        np.arange(n) * 56 // n + rng.integers(0, 4, n),
        30 + rng.integers(0, 4, n),
        rng.integers(0, 2, n),
    )
    ev = np.concatenate([static, moving])
    segs = afe_segments(ev, (64, 64), threshold=50, min_events=1000)
    assert segs[0][0] == 0 and segs[-1][1] == len(ev)
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))
    in_static = sum(1 for a, b in segs if b <= n)
    assert len(segs) - in_static > in_static


def test_afe_frames_channels_follow_the_published_colouring():
    ev = make_events([0, 1, 2, 3], [0, 1, 1, 2], [0, 0, 0, 0], [1, 0, 1, 1])
    f = to_afe_frames(ev, (4, 1), n_frames=2, threshold=1e9, min_events=10)
    assert f.shape == (2, 3, 1, 4)
    # pixel 0: ON only; pixel 1: ON and OFF; pixel 3: no event (white)
    np.testing.assert_array_equal(f[0, :, 0, 0], [1, 0, 0])
    np.testing.assert_array_equal(f[0, :, 0, 1], [0, 0, 0])
    np.testing.assert_array_equal(f[0, :, 0, 3], [1, 1, 1])
    assert to_afe_frames(make_events([], [], [], []), (4, 1), 3).min() == 1.0  # empty: all white


def test_representation_kinds_shapes_and_resize():
    ev = random_events(3000, (64, 48))
    for kind, C, T in [("frames", 2, 6), ("voxel", 1, 6), ("count", 2, 1), ("afe", 3, 6)]:
        r = EventRepresentation((64, 48), kind=kind, frames=6, resolution=(32, 24), afe_min_events=100)
        x = r(ev)
        assert x.shape == (T, C, 24, 32) and x.dtype == np.float32 and r.channels == C and r.time_steps == T
    with pytest.raises(ValueError, match="kind"):
        EventRepresentation((4, 4), kind="spikes")


def _valid(ev, sensor):
    return len(ev) == 0 or (ev["x"].max() < sensor[0] and ev["y"].max() < sensor[1] and np.all(np.diff(ev["t"]) >= 0))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.uint8])
def test_log1p_by_table_equals_log1p_bit_for_bit(dtype):
    """Counts are log-scaled by looking them up in a table: the values must be exactly those of
    np.log1p on float32, at any array length (vector loops and their tails), and counts past the
    table (or negative, which a corrupt cache could hold) take the plain path."""
    rng = np.random.default_rng(1)
    top = min(np.iinfo(dtype).max, LOOKUP_COUNTS + 10)
    for n in (1, 7, 17, 1023, 8 * 2 * 128 * 128 + 3):
        raw = rng.integers(0, top, n).astype(dtype)
        got = _log1p_counts(raw.reshape(-1, 1))
        assert got.dtype == np.float32 and got.shape == (n, 1)
        np.testing.assert_array_equal(got[:, 0], np.log1p(raw.astype(np.float32)))
    every = np.arange(LOOKUP_COUNTS + 1)
    np.testing.assert_array_equal(_log1p_counts(every), np.log1p(every.astype(np.float32)))
    np.testing.assert_array_equal(_log1p_counts(np.array([-1, 3])), np.log1p(np.array([-1, 3], np.float32)))
    assert _log1p_counts(np.zeros((0, 2), np.int64)).shape == (0, 2)


def test_transforms_keep_events_valid_and_do_what_they_say():
    ev = random_events(5000, (64, 48), seed=1)
    rng = np.random.default_rng(0)
    d = Downsample(4)(ev)
    assert (
        d.dtype == ev.dtype and _valid(d, Downsample(4).output_size((64, 48))) and np.array_equal(d["x"], ev["x"] // 4)
    )
    c = CenterCrop((64, 48), (32, 16))(ev)
    assert _valid(c, (32, 16)) and len(c) == int(
        ((ev["x"] >= 16) & (ev["x"] < 48) & (ev["y"] >= 16) & (ev["y"] < 32)).sum()
    )
    assert _valid(RandomCrop((64, 48), (20, 20), rng)(ev), (20, 20))
    f = RandomFlip((64, 48), p=1.0, rng=rng)(ev)
    assert np.array_equal(f["x"], 63 - ev["x"]) and _valid(f, (64, 48))
    dr = DropEvent(0.3, rng)(ev)
    assert 0.6 * len(ev) < len(dr) < 0.8 * len(ev) and _valid(dr, (64, 48))
    j = TimeJitter(500, rng)(ev)
    assert _valid(j, (64, 48)) and len(j) == len(ev) and j["t"].min() >= 0
    s = TimeShift()(ev)
    assert s["t"][0] == 0 and np.array_equal(np.diff(s["t"]), np.diff(ev["t"]))
    sl = TimeSlice(100_000, 200_000)(ev)
    rel = sl["t"] - ev["t"][0]
    assert len(sl) and rel.min() >= 100_000 and rel.max() < 200_000
    pipe = Compose([Downsample(2), CenterCrop((32, 24), (16, 16))])
    assert _valid(pipe(ev), (16, 16)) and "Downsample" in repr(pipe)
    empty = make_events([], [], [], [])
    for t in [
        Downsample(2),
        CenterCrop((64, 48), (8, 8)),
        DropEvent(0.5),
        TimeJitter(3.0),
        TimeShift(),
        TimeSlice(0, 5),
        Denoise((64, 48)),
        RefractoryPeriod((64, 48)),
    ]:
        assert len(t(empty)) == 0


def test_denoise_equals_loop():
    ev = random_events(700, (12, 10), 100_000, seed=5)
    out = Denoise((12, 10), filter_time=5000)(ev)
    keep = []
    for e in ev:
        keep.append(any(int(f["t"]) <= int(e["t"]) and int(e["t"]) - int(f["t"]) < 5000
                        and abs(int(f["x"]) - int(e["x"])) + abs(int(f["y"]) - int(e["y"])) == 1 for f in ev))
    assert np.array_equal(out, ev[np.array(keep)]) and 0 < len(out) < len(ev)


def test_refractory_equals_loop():
    ev = random_events(3000, (6, 5), 100_000, seed=7)
    out = RefractoryPeriod((6, 5), period=2000)(ev)
    last, keep = {}, []
    for e in ev:
        k = (int(e["x"]), int(e["y"]))
        ok = k not in last or int(e["t"]) - last[k] >= 2000
        if ok:
            last[k] = int(e["t"])
        keep.append(ok)
    assert np.array_equal(out, ev[np.array(keep)]) and 0 < len(out) < len(ev)


@pytest.mark.parametrize("kind", KINDS)
def test_edge_cases_behave_the_same_in_every_representation(kind):
    r = EventRepresentation((4, 3), kind=kind, frames=2, afe_min_events=1, normalize="none")
    # empty sample: a defined all-background tensor (zeros; AFE's published colouring is white = 1)
    empty = r(make_events([], [], [], []))
    assert empty.shape == (r.time_steps, r.channels, 3, 4)
    np.testing.assert_array_equal(empty, np.ones_like(empty) if kind == "afe" else np.zeros_like(empty))
    # one event: it lands at its pixel and nowhere else
    one = r(make_events([5], [1], [2], [1]))
    changed = np.argwhere((one != empty).any(axis=(0, 1)))
    assert changed.tolist() == [[2, 1]]
    # outside the sensor, bad polarity: the same clear error everywhere
    with pytest.raises(ValueError, match="outside the 4x3 sensor"):
        r(make_events([0], [4], [0], [1]))
    bad_p = make_events([0], [0], [0], [1])
    bad_p["p"] = 2
    with pytest.raises(ValueError, match="polarity must be 0"):
        r(bad_p)


def test_make_events_refuses_values_it_would_otherwise_wrap_or_truncate():
    with pytest.raises(ValueError, match="non-finite value \\(nan\\) at index 1"):
        make_events([0.0, np.nan], [0, 0], [0, 0], [1, 1])
    with pytest.raises(ValueError, match="fractional"):
        make_events([0], [1.5], [0], [1])
    with pytest.raises(ValueError, match="column x has -1 at index 0"):
        make_events([0], [-1], [0], [1])
    with pytest.raises(ValueError, match="outside \\[-1, 1\\]"):
        make_events([0], [0], [0], [3])
    np.testing.assert_array_equal(make_events([0, 1], [0, 0], [0, 0], [-1, 1])["p"], [0, 1])
    np.testing.assert_array_equal(make_events([2.0, 1.0], [3.0, 4.0], [0, 0], [1, 0])["x"], [4, 3])  # sorted by t


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("compiled", [True, False])
def test_events_beyond_the_sensor_are_named_by_every_representation(kind, compiled):
    """prepare_events leaves the bounds to the representation (one pass over the events, not
    three) and only words the error: every kind, compiled or not, must refuse such events."""
    import contextlib

    from spikmamba.engine.inputs import prepare_events
    from spikmamba.errors import InputError
    from spikmamba.events import _numba

    ev = make_events(np.arange(200) * 10, np.r_[np.zeros(199), 130], np.zeros(200), np.ones(200))
    rep = EventRepresentation((128, 128), kind=kind, frames=4, resolution=(32, 32), afe_min_events=10)
    with contextlib.nullcontext() if compiled else _numba.disabled():
        with pytest.raises(InputError, match="reach x=130, y=0, beyond the 128x128 sensor"):
            prepare_events(ev, rep, (128, 128))
        assert prepare_events(ev[:-1], rep, (128, 128)).shape[-2:] == (32, 32)
