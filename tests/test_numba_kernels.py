"""The compiled representation loops (numba, optional) equal their NumPy twins bit for bit."""
import contextlib

import numpy as np
import pytest

pytest.importorskip("numba")

from conftest import random_events  # noqa: E402

from spikmamba.events import _numba, make_events, to_frames  # noqa: E402
from spikmamba.events.afe import to_afe_frames  # noqa: E402
from spikmamba.events.voxel import to_voxel_grid  # noqa: E402

numpy_path = _numba.disabled


def both(fn):
    assert _numba.AVAILABLE
    compiled = fn()
    with numpy_path():
        reference = fn()
    return compiled, reference


def streams():
    sensor = (37, 23)
    ev = random_events(5000, sensor, 100_000, seed=3)
    shuffled = ev[np.random.default_rng(1).permutation(len(ev))]
    ties = make_events([5, 5, 5, 9, 9, 9, 9], [0, 1, 2, 3, 4, 5, 6], [1] * 7, [0, 1, 0, 1, 1, 0, 1])
    # unsorted, yet the first and last events are the earliest and latest (the frame walk must step back)
    inside = np.concatenate([ev[:1], ev[1:-1][np.random.default_rng(2).permutation(len(ev) - 2)], ev[-1:]])
    # every time from 0 to 100 once: events exactly on the frame starts (100 * k / T, rounded up)
    every = make_events(np.arange(101), np.arange(101) % 37, np.arange(101) % 23, np.arange(101) % 2)
    return {"sorted": (ev, sensor), "unsorted": (shuffled, sensor), "ties": (ties, (8, 2)),
            "one": (ev[:1], sensor), "empty": (ev[:0], sensor), "unsorted inside": (inside, sensor),
            "every time": (every, sensor)}


@pytest.mark.parametrize("name", list(streams()))
@pytest.mark.parametrize("split_by, binary, T", [("time", False, 7), ("number", False, 5), ("time", True, 16),
                                                  ("number", True, 1)])
def test_frames_compiled_equal_numpy(name, split_by, binary, T):
    ev, sensor = streams()[name]
    for dtype in (np.float32, np.int64):
        a, b = both(lambda dtype=dtype: to_frames(ev, sensor, T, split_by, binary, dtype=dtype))
        assert a.dtype == b.dtype == dtype and np.array_equal(a, b), (name, dtype)


@pytest.mark.parametrize("name", list(streams()))
def test_voxel_and_afe_compiled_equal_numpy(name):
    ev, sensor = streams()[name]
    a, b = both(lambda: to_voxel_grid(ev, sensor, 6))
    assert a.dtype == b.dtype and np.array_equal(a, b), name
    if not name.startswith("unsorted"):
        a, b = both(lambda: to_afe_frames(ev, sensor, 4, min_events=200))
        assert np.array_equal(a, b), name


def test_invalid_events_are_refused_with_the_same_message():
    ev = random_events(100, (40, 40), seed=0)
    for bad_sensor in [(39, 40), (40, 10)]:
        messages = []
        for path in (contextlib.nullcontext, numpy_path):
            with path(), pytest.raises(ValueError) as err:
                to_frames(ev, bad_sensor, 4)
            messages.append(str(err.value))
            with path(), pytest.raises(ValueError) as err:
                to_voxel_grid(ev, bad_sensor, 4)
            messages.append(str(err.value))
        assert len(set(messages)) == 1 and "outside the" in messages[0]
