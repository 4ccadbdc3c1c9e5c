"""tonic interoperability (issue 21): tonic's event arrays and (W, H, P) sensor sizes in our functions,
our transforms in tonic's Compose, tonic's transforms on our arrays, and the frames both make.

tonic is an optional test dependency (its full closure pulls librosa); install it with
`pip install --no-deps tonic importRosbag && pip install scipy requests` (as .ci/run does)."""
import numpy as np
import pytest
from conftest import random_events

from spikmamba.events import DropEvent, RandomFlip, to_count_image, to_frames, to_voxel_grid

tonic = pytest.importorskip("tonic")

TONIC_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])


def as_tonic(ev):
    out = np.zeros(len(ev), dtype=TONIC_DTYPE)
    for k in "xytp":
        out[k] = ev[k]
    return out


def test_our_functions_take_tonic_arrays_and_sensor_sizes():
    ev = random_events(3000, (34, 34), 100_000, seed=1)
    tev = as_tonic(ev)
    ours = to_frames(ev, (34, 34), 5)
    np.testing.assert_array_equal(to_frames(tev, (34, 34, 2), 5), ours)  # tonic's (W, H, P), tonic's dtype
    np.testing.assert_array_equal(to_voxel_grid(tev, (34, 34, 2), 4), to_voxel_grid(ev, (34, 34), 4))
    np.testing.assert_array_equal(to_count_image(tev, (34, 34, 2)), to_count_image(ev, (34, 34)))
    bad = tev.copy()
    bad["p"][3] = -1
    with pytest.raises(ValueError, match="polarity must be 0"):
        to_frames(bad, (34, 34, 2), 5)


def test_transforms_cross_over_in_both_directions():
    ev = random_events(2000, (34, 34), 100_000, seed=2)
    rng = np.random.default_rng(0)
    ours_in_tonic = tonic.transforms.Compose([RandomFlip((34, 34, 2), p=1.0, rng=rng), DropEvent(0.0)])
    flipped = ours_in_tonic(as_tonic(ev))
    np.testing.assert_array_equal(flipped["x"], 33 - ev["x"])
    theirs_on_ours = tonic.transforms.Compose([tonic.transforms.DropEvent(p=0.0)])(ev)
    np.testing.assert_array_equal(theirs_on_ours, ev)


def test_to_frames_equals_tonic_toframe_on_the_events_tonic_keeps():
    """tonic's ToFrame(n_time_bins=T) cuts [t0, t0 + T * floor(span / T)) into T equal windows and
    leaves out what comes after (always the last event); to_frames spans [t0, t_last] and keeps every
    event, the last ones in the last frame. With a span divisible by T the windows coincide."""
    T = 8
    ev = random_events(20_000, (32, 32), 800_000, seed=3)
    ev["t"][0], ev["t"][-1] = 0, 800_000  # span 800,000 = 8 x 100,000
    ours = to_frames(ev, (32, 32), T)
    theirs = tonic.transforms.ToFrame(sensor_size=(32, 32, 2), n_time_bins=T)(as_tonic(ev))
    at_end = ev[ev["t"] == ev["t"][-1]]
    tail = to_frames(at_end, (32, 32), 1)[0]
    np.testing.assert_array_equal(ours[:-1], theirs[:-1])
    np.testing.assert_array_equal(ours[-1], theirs[-1] + tail)
    theirs_on_ours = tonic.transforms.ToFrame(sensor_size=(32, 32, 2), n_time_bins=T)(ev)  # our dtype in tonic
    np.testing.assert_array_equal(theirs_on_ours, theirs)
