import pytest
import torch

from spikmamba.nn import LIFNode, RoPE2d, SLABlock, SpikingPatchSplitting, SpikingWindowLinearAttention, TubeletEmbed


def test_rope_depends_only_on_relative_position():
    rope = RoPE2d(8)
    q, k = torch.randn(8), torch.randn(8)
    grid = torch.zeros(6, 6, 2, 8)
    grid[..., 0, :], grid[..., 1, :] = q, k
    r = rope(grid.permute(2, 0, 1, 3))  # [2, 6, 6, 8]
    d1 = (r[0, 1, 2] * r[1, 3, 4]).sum()  # offset (2, 2)
    d2 = (r[0, 2, 0] * r[1, 4, 2]).sum()  # same offset elsewhere
    torch.testing.assert_close(d1, d2)


@pytest.mark.parametrize("T, B, H, W, window", [(2, 1, 4, 4, None), (1, 2, 6, 4, 2), (3, 1, 5, 7, None)])
def test_attention_shapes(T, B, H, W, window):
    attn = SpikingWindowLinearAttention(16, num_heads=2, window_size=window)
    x = torch.randn(T, B, H, W, 16, requires_grad=True)
    y = attn(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.abs().sum() > 0


def test_queries_and_keys_are_spikes():
    attn = SpikingWindowLinearAttention(8, num_heads=2)
    assert isinstance(attn.qk_lif, LIFNode)
    seen = []
    attn.qk_lif.register_forward_hook(lambda m, i, o: seen.append(o))
    attn(torch.randn(2, 1, 4, 4, 8) * 3)
    assert set(seen[0].unique().tolist()) <= {0.0, 1.0}


def test_windows_are_independent():
    torch.manual_seed(0)
    attn = SpikingWindowLinearAttention(8, num_heads=2, window_size=2, spiking=False).eval()
    torch.nn.init.zeros_(attn.lepe.weight)  # LePE is a conv over the whole map; switch it off
    torch.nn.init.zeros_(attn.lepe.bias)
    x = torch.randn(1, 1, 4, 4, 8)
    x2 = x.clone()
    x2[:, :, :2, :2] += 1.0  # perturb the top-left window only
    y, y2 = attn(x), attn(x2)
    torch.testing.assert_close(y[:, :, 2:], y2[:, :, 2:])
    torch.testing.assert_close(y[:, :, :2, 2:], y2[:, :, :2, 2:])
    assert not torch.allclose(y[:, :, :2, :2], y2[:, :, :2, :2])


def test_covering_window_equals_global():
    torch.manual_seed(0)
    a = SpikingWindowLinearAttention(8, num_heads=2, window_size=None).eval()
    b = SpikingWindowLinearAttention(8, num_heads=2, window_size=16).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 4, 4, 8)
    torch.testing.assert_close(a(x), b(x))


def test_attention_bad_arguments():
    attn = SpikingWindowLinearAttention(8, num_heads=2, window_size=3)
    with pytest.raises(ValueError, match="window_size"):
        attn(torch.randn(1, 1, 4, 4, 8))
    with pytest.raises(ValueError, match=r"\[T, B, H, W, C\]"):
        attn(torch.randn(1, 4, 4, 8))
    with pytest.raises(ValueError, match="8 channels"):
        attn(torch.randn(1, 1, 4, 4, 6))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        SpikingWindowLinearAttention(10, num_heads=4)


@pytest.mark.slow  # 480 double-precision forwards of the block: 20-50 s
@pytest.mark.parametrize("bidirectional", [False, True])
def test_sla_block_gradcheck_nonspiking(bidirectional):
    torch.manual_seed(0)
    blk = SLABlock(8, num_heads=2, mlp_ratio=1.0, bidirectional=bidirectional, spiking=False).double().eval()
    x = torch.randn(2, 1, 3, 5, 8, dtype=torch.float64, requires_grad=True)  # odd map 3x5
    assert torch.autograd.gradcheck(blk, (x,))


def test_sla_block_spiking_batch_one_and_bidirectional_batch_independent():
    torch.manual_seed(0)
    blk = SLABlock(8, num_heads=2, bidirectional=True).eval()
    x = torch.randn(3, 2, 4, 4, 8)
    from spikmamba.nn import reset_net
    full = blk(x)
    reset_net(blk)
    single = blk(x[:, 1:2])
    torch.testing.assert_close(full[:, 1:2], single)


@pytest.mark.parametrize("stem_cls, patch, H, W", [(TubeletEmbed, 3, 9, 15), (TubeletEmbed, 1, 5, 7),
                                                   (SpikingPatchSplitting, 4, 8, 12),
                                                   (SpikingPatchSplitting, 1, 5, 7)])
def test_stems_any_size(stem_cls, patch, H, W):
    stem = stem_cls(in_chans=3, embed_dim=16, patch_size=patch)
    x = torch.rand(2, 1, 3, H, W, requires_grad=True)
    y = stem(x)
    assert y.shape == (2, 1, 16, H // patch, W // patch)
    if stem_cls is TubeletEmbed:
        assert set(y.unique().tolist()) <= {0.0, 1.0}
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None


def test_stem_bad_arguments():
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        TubeletEmbed(2, 16, 4)(torch.rand(1, 1, 2, 10, 8))
    with pytest.raises(ValueError, match="2 channels"):
        TubeletEmbed(2, 16, 4)(torch.rand(1, 1, 3, 8, 8))
    with pytest.raises(ValueError, match="power of two"):
        SpikingPatchSplitting(2, 16, 3)
