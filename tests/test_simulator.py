import numpy as np
import pytest

from spikmamba.events import SimulatorConfig, simulate_events

QUIET = dict(threshold_sigma=0.0, noise_rate_hz=0.0, hot_pixel_fraction=0.0)


def _ramp(k_steps, C, sign=1.0, n_frames=2, eps=1e-3):
    """One pixel whose log intensity moves linearly by sign*k*C (plus a hair) over 1 ms."""
    L0 = np.log(0.5 + eps)
    L_end = L0 + sign * (k_steps * C + 1e-9)
    logs = np.linspace(L0, L_end, n_frames)
    frames = (np.exp(logs) - eps).reshape(n_frames, 1, 1)
    ts = np.linspace(0, 1000, n_frames).astype(np.int64)
    return frames, ts


@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("sign, polarity", [(1.0, 1), (-1.0, 0)])
def test_ramp_of_k_thresholds_gives_k_events_at_the_right_times(k, sign, polarity):
    C = 0.2
    frames, ts = _ramp(k, C, sign)
    ev = simulate_events(frames, ts, SimulatorConfig(contrast_threshold_on=C, contrast_threshold_off=C, **QUIET))
    assert len(ev) == k
    assert np.all(ev["p"] == polarity)
    expected_t = np.round(np.arange(1, k + 1) / (k + 1e-9 / C) * 1000).astype(np.int64)
    np.testing.assert_array_equal(ev["t"], expected_t)


def test_ramp_over_several_frames_same_events():
    C = 0.25
    one = simulate_events(*_ramp(5, C, n_frames=2), SimulatorConfig(contrast_threshold_on=C, **QUIET))
    many = simulate_events(*_ramp(5, C, n_frames=11), SimulatorConfig(contrast_threshold_on=C, **QUIET))
    assert len(one) == len(many) == 5
    assert np.abs(one["t"] - many["t"]).max() <= 1


def test_static_scene_gives_only_noise():
    frames = np.full((21, 16, 16), 0.4)
    ts = np.arange(21) * 50_000  # 1 s
    assert len(simulate_events(frames, ts, SimulatorConfig(**QUIET))) == 0
    ev = simulate_events(frames, ts, SimulatorConfig(noise_rate_hz=20.0, threshold_sigma=0.0))
    expected = 20.0 * 256 * 1.0
    assert abs(len(ev) - expected) < 5 * np.sqrt(expected)
    assert np.all(np.diff(ev["t"]) >= 0)
    assert set(np.unique(ev["p"])) == {0, 1}


def test_hot_pixels_fire_from_few_pixels():
    frames = np.full((11, 32, 32), 0.4)
    ts = np.arange(11) * 100_000
    ev = simulate_events(frames, ts, SimulatorConfig(hot_pixel_rate_hz=100, **{**QUIET, "hot_pixel_fraction": 0.01}))
    pixels = np.unique(ev["y"].astype(int) * 32 + ev["x"])
    assert len(pixels) <= 10 and len(ev) > 500


def test_refractory_period_spaces_events():
    C = 0.1
    frames, ts = _ramp(20, C)  # 20 crossings in 1 ms, 50 us apart
    ev = simulate_events(frames, ts, SimulatorConfig(contrast_threshold_on=C, refractory_us=120, **QUIET))
    assert 5 <= len(ev) < 20
    assert np.all(np.diff(ev["t"]) >= 120)


def test_seeded_and_mismatch_changes_thresholds():
    rng = np.random.default_rng(0)
    frames = np.clip(rng.random((5, 8, 8)), 0.05, 1)
    ts = np.arange(5) * 1000
    a = simulate_events(frames, ts, SimulatorConfig(threshold_sigma=0.1, noise_rate_hz=5, seed=3))
    b = simulate_events(frames, ts, SimulatorConfig(threshold_sigma=0.1, noise_rate_hz=5, seed=3))
    c = simulate_events(frames, ts, SimulatorConfig(threshold_sigma=0.1, noise_rate_hz=5, seed=4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="N, H, W"):
        simulate_events(np.zeros((4, 4)), np.arange(4))
    with pytest.raises(ValueError, match="strictly increasing"):
        simulate_events(np.zeros((3, 2, 2)), np.array([0, 5, 5]))
    with pytest.raises(ValueError, match="non-negative"):
        simulate_events(-np.ones((2, 2, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="contrast_threshold_on"):
        SimulatorConfig(contrast_threshold_on=0)
