import io

import pytest
import torch
from torch import nn

from spikmamba.models import SpikMamba, count_parameters, create_model, list_models
from spikmamba.nn import LIFNode

SMALL = dict(img_size=16, patch_size=4, embed_dim=16, num_heads=2, num_classes=5, in_chans=2, d_state=4,
             mlp_ratio=1.0)


@pytest.mark.parametrize("name", list_models("spikmamba"))
def test_every_variant_forward_backward_tiny(name):
    torch.manual_seed(0)
    frames = 3
    model = create_model(name, **SMALL, num_frames=frames)
    x = (torch.rand(2, frames, 2, 16, 16) > 0.7).float()
    out = model(x)
    assert out.shape == (2, 5)
    out.logsumexp(-1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert sum(g is not None and g.abs().sum() > 0 for g in grads) > 0.9 * len(grads)


def _published_live_parameter_count() -> int:
    """Hand count of the published bissm_bisla 16-frame model's modules that take part in forward
    (Typistchen/SpikMamba model_spikmamba_bissm_bisla_16frame.py, 300 classes)."""
    E, ffn, inner, N, R = 256, 1024, 512, 16, 16
    lin = lambda i, o, bias=True: i * o + (o if bias else 0)  # noqa: E731
    dw = E * 9 + E
    embed = (3 * 8 * 8 * E + E) + 2 * E  # Conv3d(3->256, (1,8,8)) + BatchNorm
    pos = (256 + 1) * E + E + 16 * E  # spatial pos (with cls slot) + cls token + temporal pos
    sla = dw + 2 * E + lin(E, E) + lin(E, E) + dw + lin(E, 2 * E) + 2 * E + dw + lin(2 * E, E) + lin(E, E) \
        + dw + 2 * E + lin(E, ffn) + lin(ffn, E)
    branch = (inner * 4 + inner) + lin(inner, R + 2 * N, False) + lin(R, inner) + inner * N + inner
    mamba = lin(E, 2 * inner, False) + 2 * branch + lin(inner, E, False) + E  # + block RMSNorm
    return embed + pos + 2 * sla + mamba + E + lin(E, 300)  # + final norm + head


def test_parameter_count_matches_published_model():
    ours = count_parameters(create_model("spikmamba_bissm_bisla_t16"))
    published = _published_live_parameter_count()
    assert abs(ours - published) / published < 0.05, (ours, published)


@pytest.mark.parametrize("name", ["spikmamba_tiny", "spikmamba_bissm_bisla_t8"])
def test_sample_alone_equals_sample_in_batch_eval(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL, num_frames=2).eval()
    x = (torch.rand(3, 2, 2, 16, 16) > 0.6).float()
    with torch.no_grad():
        batch = model(x)
        alone = model(x[1:2])
    torch.testing.assert_close(batch[1:2], alone, atol=1e-5, rtol=1e-5)


def test_state_never_leaks_between_batches():
    torch.manual_seed(0)
    model = create_model("spikmamba_tiny", **SMALL, num_frames=2).eval()
    a = (torch.rand(2, 2, 2, 16, 16) > 0.5).float()
    b = (torch.rand(2, 2, 2, 16, 16) > 0.5).float()
    with torch.no_grad():
        fresh = model(b)
        model(a)
        after = model(b)
    assert torch.equal(fresh, after)


@pytest.mark.parametrize("size, frames", [(16, 2), (24, 4), (32, 3)])
def test_other_resolutions_and_frame_counts(size, frames):
    model = create_model("spikmamba_tiny", **{**SMALL, "img_size": 16}, num_frames=2)
    out = model(torch.rand(1, frames, 2, size, size))
    assert out.shape == (1, 5)


def test_published_both_frame_counts_build():
    for t in (8, 16):
        m = create_model(f"spikmamba_bissm_bisla_t{t}")
        assert m.num_frames == t and m.temporal_pos_embed.shape[0] == t


def test_save_load_round_trip():
    torch.manual_seed(0)
    model = create_model("spikmamba_bimamba_t8", **SMALL, num_frames=2).eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    clone = create_model("spikmamba_bimamba_t8", **SMALL, num_frames=2).eval()
    clone.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.rand(2, 2, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


def test_nosnn_differs_only_by_neurons():
    torch.manual_seed(0)
    snn = create_model("spikmamba_sla_t8", **SMALL)
    ann = create_model("spikmamba_sla_nosnn_t8", **SMALL)
    snn_mods, ann_mods = dict(snn.named_modules()), dict(ann.named_modules())
    neurons = [name for name, m in snn_mods.items() if isinstance(m, LIFNode)]
    assert neurons, "the spiking model has no LIF neurons"
    # a neuron's own children (its surrogate function) vanish with it; nothing else may differ
    snn_mods = {k: v for k, v in snn_mods.items() if not any(k.startswith(n + ".") for n in neurons)}
    assert snn_mods.keys() == ann_mods.keys()
    for name, m in snn_mods.items():
        other = ann_mods[name]
        if isinstance(m, LIFNode):
            assert isinstance(other, nn.Identity), name
        else:
            assert type(m) is type(other), name
    assert count_parameters(snn) == count_parameters(ann)


def test_input_errors_name_the_problem():
    model = create_model("spikmamba_tiny", **SMALL, num_frames=2)
    with pytest.raises(ValueError, match=r"\[B, T, C, H, W\]"):
        model(torch.rand(2, 2, 16, 16))
    with pytest.raises(ValueError, match="in_chans=2"):
        model(torch.rand(1, 2, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible by the patch size"):
        model(torch.rand(1, 2, 2, 18, 16))
    with pytest.raises(ValueError, match="unknown model"):
        create_model("spikmamba_huge")
    with pytest.raises(ValueError, match="stem"):
        SpikMamba(stem="vit")


def test_sps_stem_variant():
    model = create_model("spikmamba_tiny", **SMALL, num_frames=2, stem="sps")
    assert model(torch.rand(1, 2, 2, 16, 16)).shape == (1, 5)


@pytest.mark.slow  # a few hundred training steps
def test_tiny_training_lowers_loss():
    """End to end: a few optimizer steps on a learnable toy task reduce the loss."""
    torch.manual_seed(0)
    model = create_model("spikmamba_tiny", img_size=16, num_frames=4, num_classes=2)
    # class 0: events in the left half, class 1: in the right half
    x = torch.zeros(16, 4, 2, 16, 16)
    y = torch.arange(16) % 2
    g = torch.Generator().manual_seed(1)
    for i in range(16):
        cols = slice(0, 8) if y[i] == 0 else slice(8, 16)
        x[i, :, :, :, cols] = (torch.rand(4, 2, 16, 8, generator=g) > 0.7).float()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.5 * losses[0], losses
