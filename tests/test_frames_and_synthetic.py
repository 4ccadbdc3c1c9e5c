
import numpy as np
import pytest
import torch

from spikmamba.data import SYNTH_CLASSES, SynthActions
from spikmamba.events import ToFrame, make_events, to_frames
from spikmamba.models import create_model


def _random_events(n, W, H, seed=0):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, 10_000, n)), rng.integers(0, W, n), rng.integers(0, H, n),
                       rng.integers(0, 2, n))


def _frames_loop(ev, W, H, T, split_by):
    out = np.zeros((T, 2, H, W))
    n = len(ev)
    t0, t1 = (int(ev["t"].min()), int(ev["t"].max())) if n else (0, 1)
    for i, e in enumerate(ev):
        if split_by == "time":
            f = min((int(e["t"]) - t0) * T // max(t1 - t0, 1), T - 1)
        else:
            f = i * T // n
        out[f, 1 if e["p"] > 0 else 0, e["y"], e["x"]] += 1
    return out


@pytest.mark.parametrize("split_by", ["time", "number"])
@pytest.mark.parametrize("n, T", [(1, 3), (37, 4), (500, 7)])
def test_to_frames_equals_python_loop(split_by, n, T):
    ev = _random_events(n, 9, 5, seed=n)
    np.testing.assert_array_equal(to_frames(ev, (9, 5), T, split_by), _frames_loop(ev, 9, 5, T, split_by))
    binary = to_frames(ev, (9, 5), T, split_by, binary=True)
    np.testing.assert_array_equal(binary, _frames_loop(ev, 9, 5, T, split_by) > 0)


def test_to_frames_edge_cases():
    empty = make_events([], [], [], [])
    assert to_frames(empty, (4, 3), 2).shape == (2, 2, 3, 4) and to_frames(empty, (4, 3), 2).sum() == 0
    with pytest.raises(ValueError, match="outside the 4x3 sensor"):
        to_frames(make_events([0], [4], [0], [1]), (4, 3), 2)
    with pytest.raises(ValueError, match="split_by"):
        to_frames(empty, (4, 3), 2, split_by="count")


def test_dataset_is_deterministic_valid_and_balanced():
    a, b = SynthActions(num_samples=20, seed=5), SynthActions(num_samples=20, seed=5)
    for i in (0, 7, 19):
        ev, label = a[i]
        assert np.array_equal(ev, b[i][0]) and label == b[i][1] == i % 10
        assert len(ev) > 50 and np.all(np.diff(ev["t"]) >= 0)
        assert ev["x"].max() < 64 and ev["y"].max() < 64
    assert not np.array_equal(SynthActions("test", 20, seed=5)[0][0], a[0][0])
    assert len(SYNTH_CLASSES) >= 10
    assert np.bincount(a.targets).tolist() == [2] * 10


def test_reversed_class_has_swapped_polarity_statistics():
    ds = SynthActions(num_samples=10, seed=1, noise_rate_hz=0.0)
    right, left = ds.events(0), ds.events(1)
    # moving right: the leading edge is on the right; after reversal it leads on the left
    def mean_x_late_minus_early(ev):
        half = ev["t"] > np.median(ev["t"])
        return ev["x"][half].mean() - ev["x"][~half].mean()
    assert mean_x_late_minus_early(right) > 0 > mean_x_late_minus_early(left)


def _nearest_centroid_accuracy(train_x, train_y, test_x, test_y):
    centroids = np.stack([train_x[train_y == c].mean(0) for c in np.unique(train_y)])
    pred = np.argmin(((test_x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    return float((np.unique(train_y)[pred] == test_y).mean())


def test_time_reversed_pairs_defeat_a_static_classifier():
    """Summed over time and polarity, a pair is indistinguishable; with time kept, it is not.

    The time-aware control uses the same linear classifier on 4 frames; it separates translation
    and approach pairs. Rotation direction with a random start angle is not linearly separable
    from raw frames (it needs a model), so the control skips that pair.
    """
    pairs = [(0, 1), (4, 5), (6, 7)]
    static_acc, temporal_acc = [], {}
    for a, b in pairs:
        def features(split, n, T, a=a, b=b):
            ds = SynthActions(split, num_samples=10 * n, seed=2, sensor_size=(32, 32), n_render_frames=24)
            xs, ys = [], []
            for i in range(10 * n):
                if ds.label(i) in (a, b):
                    ev = ds.events(i)
                    xs.append(to_frames(ev, (32, 32), T).reshape(T, 2, -1))
                    ys.append(ds.label(i))
            return np.stack(xs), np.array(ys)

        tr, ytr = features("train", 30, 4)
        te, yte = features("test", 20, 4)
        norm = lambda f: f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-9)  # noqa: E731
        static_acc.append(_nearest_centroid_accuracy(norm(tr.sum((1, 2))), ytr, norm(te.sum((1, 2))), yte))
        temporal_acc[(a, b)] = _nearest_centroid_accuracy(norm(tr.reshape(len(tr), -1)), ytr,
                                                          norm(te.reshape(len(te), -1)), yte)
    assert max(static_acc) < 0.7, static_acc  # chance is 0.5 (20 test samples per class)
    assert temporal_acc[(0, 1)] > 0.8 and temporal_acc[(6, 7)] > 0.7, temporal_acc


@pytest.mark.slow  # 25 training steps on 40 clips
def test_tiny_spikmamba_learns_on_synthetic_actions():
    """End to end on the built-in data: events -> frames -> SpikMamba tiny; the loss falls."""
    torch.manual_seed(0)
    ds = SynthActions(num_samples=40, sensor_size=(32, 32), n_render_frames=24, seed=0,
                      transform=ToFrame((32, 32), n_frames=4))
    x = torch.from_numpy(np.stack([ds[i][0] for i in range(len(ds))])).clamp(max=4) / 4
    y = torch.tensor(ds.targets)
    model = create_model("spikmamba_tiny", img_size=32, num_frames=4, num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses


@pytest.mark.parametrize("split_by", ["time", "number"])
def test_to_frames_contiguous_runs_match_the_loop_on_ties_and_unsorted_streams(split_by):
    """Frames are cut as contiguous runs of a sorted stream (binary search on t): equal
    timestamps on a frame boundary, a stream shorter than T, and an unsorted stream (which takes
    the per-event path) all give what the loop gives."""
    rng = np.random.default_rng(3)
    t = np.repeat([0, 10, 10, 20, 35, 35, 35, 40], 3)
    ev = make_events(t, rng.integers(0, 9, len(t)), rng.integers(0, 5, len(t)), rng.integers(0, 2, len(t)))
    for T in (1, 3, 4, 7, 30):
        np.testing.assert_array_equal(to_frames(ev, (9, 5), T, split_by), _frames_loop(ev, 9, 5, T, split_by))
    shuffled = ev[rng.permutation(len(ev))]
    np.testing.assert_array_equal(to_frames(shuffled, (9, 5), 4, split_by), _frames_loop(shuffled, 9, 5, 4, split_by))
