"""The device-side representations (events/batched.py) against their per-sample NumPy twins."""
import numpy as np
import pytest
import torch

from spikmamba.data import EventRepresentation
from spikmamba.events import _numba, batched, make_events
from spikmamba.events.afe import afe_segments, to_afe_frames
from spikmamba.events.representations import to_frames
from spikmamba.events.voxel import to_count_image, to_voxel_grid

SENSOR = (20, 12)  # W != H: a swapped axis shows
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _stream(n: int, seed: int, sort: bool = True, bursty: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if bursty:  # a moving blob, faster in the second half: AFE cuts that half finer
        t = np.sort(rng.integers(0, 100_000, n))
        x = np.clip((t / 100_000 * 40 * (1 + (t > 50_000))) % SENSOR[0] + rng.normal(0, 1, n), 0, SENSOR[0] - 1)
        y = np.clip(SENSOR[1] / 2 + rng.normal(0, 2, n), 0, SENSOR[1] - 1)
        return make_events(t, x.round(), y.round(), rng.integers(0, 2, n))
    t = rng.integers(0, 50_000, n)
    t = np.sort(t) if sort else t
    return make_events(t, rng.integers(0, SENSOR[0], n), rng.integers(0, SENSOR[1], n), rng.integers(0, 2, n),
                       sort=sort)


def _streams(sort=True):
    """A batch with an empty sample, a one-event sample, repeated timestamps and a long sample."""
    same_time = make_events([7] * 5, [1, 2, 3, 1, 1], [0, 0, 11, 11, 0], [1, 0, 1, 1, 0])
    return [_stream(300, 1, sort), make_events([], [], [], []), _stream(1, 2, sort), same_time,
            _stream(2000, 3, sort)]


@pytest.fixture(params=["compiled", "numpy"])
def twin_path(request):
    """The twins run through their numba kernels when numba is installed, and through NumPy."""
    if request.param == "compiled":
        if not _numba.AVAILABLE:
            pytest.skip("numba is not installed: the NumPy path is the only twin here")
        yield
    else:
        with _numba.disabled():
            yield


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("split_by", ["time", "number"])
@pytest.mark.parametrize("n_frames", [1, 3, 8])
def test_frames_equal_the_per_sample_builder(device, split_by, n_frames, twin_path):
    for sort in (True, False):
        streams = _streams(sort)
        batch = batched.EventBatch.pack(streams).to(device)
        for binary in (False, True):
            got = batched.frames(batch, SENSOR, n_frames, split_by, binary).cpu()
            assert got.shape == (len(streams), n_frames, 2, SENSOR[1], SENSOR[0]) and got.dtype == torch.float32
            for i, ev in enumerate(streams):
                want = to_frames(ev, SENSOR, n_frames, split_by, binary)
                assert np.array_equal(got[i].numpy(), want), (i, sort, binary)


@pytest.mark.parametrize("device", DEVICES)
def test_count_image_and_voxel_grid_equal_the_per_sample_builders(device, twin_path):
    streams = _streams()
    batch = batched.EventBatch.pack(streams).to(device)
    counts = batched.count_image(batch, SENSOR).cpu()
    for n_bins in (1, 2, 5):
        grid = batched.voxel_grid(batch, SENSOR, n_bins).cpu()
        assert grid.shape == (len(streams), n_bins, 1, SENSOR[1], SENSOR[0])
        for i, ev in enumerate(streams):
            want = to_voxel_grid(ev, SENSOR, n_bins)
            assert np.allclose(grid[i, :, 0].numpy(), want, rtol=1e-6, atol=1e-6), (i, n_bins)
    for i, ev in enumerate(streams):
        assert np.array_equal(counts[i, 0].numpy(), to_count_image(ev, SENSOR))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("threshold, min_events", [(50.0, 100_000), (5.0, 16), (1.0, 4), (400.0, 2)])
def test_afe_segments_and_frames_equal_the_per_sample_builder(device, threshold, min_events, twin_path):
    streams = [_stream(3000, 5, bursty=True), make_events([], [], [], []), _stream(700, 6, bursty=True),
               _stream(1, 7), _stream(40, 8)]
    batch = batched.EventBatch.pack(streams).to(device)
    segments = batched.afe_segments(batch, SENSOR, threshold, min_events)
    for i, ev in enumerate(streams):
        assert segments[i] == afe_segments(ev, SENSOR, threshold, min_events), i
    if (threshold, min_events) == (1.0, 4):  # the recursion went several levels deep
        assert len(segments[0]) > 8
    got = batched.afe_frames(batch, SENSOR, 6, threshold, min_events).cpu()
    for i, ev in enumerate(streams):
        assert np.array_equal(got[i].numpy(), to_afe_frames(ev, SENSOR, 6, threshold, min_events)), i


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["frames", "voxel", "count", "afe", "adaptive"])
@pytest.mark.parametrize("resolution", [None, (10, 6), (16, 16)])
def test_a_representation_builds_a_batch_as_it_builds_each_sample(device, kind, resolution):
    rep = EventRepresentation(SENSOR, kind=kind, frames=4, resolution=resolution, fine_steps=2, afe_min_events=16)
    streams = _streams()
    got = rep.batched(batched.EventBatch.pack(streams).to(device))
    assert got.device.type == device and got.dtype == torch.float32
    want = np.stack([rep(ev) for ev in streams])
    assert got.shape == want.shape
    assert np.allclose(got.cpu().numpy(), want, rtol=1e-6, atol=1e-6)


def test_a_batch_knows_its_samples():
    streams = [_stream(3, 0), make_events([], [], [], []), _stream(2, 1)]
    batch = batched.EventBatch.pack(streams)
    assert len(batch) == 3 and batch.lengths.tolist() == [3, 0, 2]
    assert batch.sample.tolist() == [0, 0, 0, 2, 2] and batch.rank().tolist() == [0, 1, 2, 0, 1]
    assert batch.starts.tolist() == [0, 3, 3]
    empty = batched.EventBatch.pack([make_events([], [], [], [])] * 2)
    assert batched.frames(empty, SENSOR, 2).abs().sum() == 0
    with pytest.raises(ValueError, match="n_frames must be >= 1"):
        batched.frames(batch, SENSOR, 0)
