"""EAS-SNN's adaptive sampler: against a pixel-by-pixel reference, SAT and RPD exactly as
specified, and trained end to end in front of SpikMamba through the config."""
import json

import numpy as np
import pytest
import torch

from spikmamba.cli import main
from spikmamba.engine import TrainConfig, train
from spikmamba.events import make_events
from spikmamba.events.io import write_events
from spikmamba.nn import AdaptiveSampler
from spikmamba.nn.adaptive_sampler import adaptive_windows_reference

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane


def _fine_frames(seed, shape=(2, 8, 2, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    return torch.log1p(torch.poisson(torch.rand(*shape, generator=g, dtype=torch.float64) * 1.5, generator=g))


@pytest.mark.parametrize("rpd", [True, False])
def test_sampler_equals_the_pixel_by_pixel_reference(rpd):
    torch.manual_seed(0)
    s = AdaptiveSampler(2, 3, fine_steps=4, rpd=rpd).double()
    x = _fine_frames(1)
    out = s(x)
    ref, residual = adaptive_windows_reference(s, x)
    assert out.shape == (2, 2, 3, 5, 6)
    assert 0.05 < s.firing_rate < 0.9 and residual.abs().sum() > 0  # windows close, and some stay open
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s.residual, residual, rtol=1e-12, atol=1e-12)


def test_sat_keeps_the_forward_bit_identical_and_changes_the_gradient():
    torch.manual_seed(0)
    with_sat = AdaptiveSampler(2, 2, fine_steps=4, sat=True).double()
    without = AdaptiveSampler(2, 2, fine_steps=4, sat=False).double()
    without.load_state_dict(with_sat.state_dict())
    x = _fine_frames(2)
    a, b = with_sat(x), without(x)
    assert torch.equal(a, b)
    weights = torch.randn_like(a)
    (a * weights).sum().backward()
    (b * weights).sum().backward()
    ga, gb = with_sat.conv_x.weight.grad, without.conv_x.weight.grad
    assert ga.abs().sum() > 0 and gb.abs().sum() > 0 and not torch.allclose(ga, gb)


def test_rpd_zeroes_exactly_the_residue():
    torch.manual_seed(0)
    keep = AdaptiveSampler(2, 2, fine_steps=4, rpd=False).double()
    drop = AdaptiveSampler(2, 2, fine_steps=4, rpd=True).double()
    drop.load_state_dict(keep.state_dict())
    x = _fine_frames(3)
    diff = keep(x) - drop(x)
    assert torch.equal(keep.residual, drop.residual) and drop.residual.abs().sum() > 0
    assert torch.equal(diff[:, :-1], torch.zeros_like(diff[:, :-1]))  # earlier steps untouched
    torch.testing.assert_close(diff[:, -1], drop.residual, rtol=0, atol=1e-12)


def test_sampler_input_errors():
    s = AdaptiveSampler(2, 2, fine_steps=4)
    with pytest.raises(ValueError, match="do not split into output steps"):
        s(torch.rand(1, 6, 2, 4, 4))
    with pytest.raises(ValueError, match=r"\[B, S, 2, H, W\]"):
        s(torch.rand(1, 8, 3, 4, 4))
    with pytest.raises(ValueError, match="odd kernel_size"):
        AdaptiveSampler(kernel_size=2)


def test_adaptive_representation_trains_end_to_end_with_spikmamba(tmp_path, capsys):
    cfg = TrainConfig().replace({"data.synth.sensor_size": 16, "data.frames": 4, "data.synth.num_train": 96,
                                 "data.synth.num_test": 32, "data.batch_size": 16, "schedule.epochs": 4,
                                 "optim.lr": 5e-3, "data.representation": "adaptive", "data.adaptive.fine_steps": 2,
                                 "run.progress": False, "run.tensorboard": False, "run.out_dir": str(tmp_path / "run"),
                                 "model.name": "spikmamba_tiny", "model.patch_size": 4})
    summary = train(cfg)
    losses = [r["train_loss"] for r in summary["history"]]
    assert losses[-1] < losses[0], losses
    assert summary["geometry"] == {"in_chans": 2, "img_size": 16, "num_frames": 8}  # 4 steps x 2 fine bins
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert any(k.startswith("sampler.conv_s") for k in ckpt["model"])
    # the stored representation makes the fine frames again for predict
    ev = make_events(np.arange(500) * 100, np.arange(500) % 16, (np.arange(500) // 16) % 16, np.arange(500) % 2)
    write_events(tmp_path / "clip.npz", ev, sensor_size=(16, 16))
    capsys.readouterr()
    assert (
        main(["predict", "--checkpoint", str(tmp_path / "run" / "last.pt"), str(tmp_path / "clip.npz"), "--json"]) == 0
    )
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 1
    assert main(["energy", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--samples", "4",
                 "--out", str(tmp_path / "energy")]) == 0
    layers = json.loads((tmp_path / "energy" / "energy.json").read_text())["snn"]["layers"]
    by_name = {layer["layer"]: layer for layer in layers}
    assert by_name["sampler.conv_s"]["input"] == "spikes" and by_name["sampler.conv_in"]["input"] == "dense"
