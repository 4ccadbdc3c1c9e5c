"""SVMamba and SS2D on tiny shapes: the scan against a per-direction loop, shapes, gradients,
no state leaking between samples, and the two gate forms."""
import pytest
import torch

from spikmamba.models import SVMamba, create_model
from spikmamba.nn.ssm.ss2d import SS2D, cross_merge, cross_scan, ss2d_scan_reference

TINY = dict(dims=(8, 16), depths=(1, 1), num_frames=2, num_classes=5, drop_path_rate=0.0)


@pytest.mark.parametrize("H,W,S", [(3, 5, 1), (4, 4, 3), (1, 6, 2)])
def test_ss2d_scan_equals_a_plain_loop_over_the_four_directions(H, W, S):
    torch.manual_seed(H * W + S)
    m = SS2D(6, d_state=S).double()
    x = torch.randn(2, 6, H, W, dtype=torch.float64, requires_grad=True)
    fast, ref = m.scan(x), ss2d_scan_reference(m, x)
    torch.testing.assert_close(fast, ref, rtol=1e-6, atol=1e-8)
    g = torch.randn_like(fast)
    grads_fast = torch.autograd.grad(fast, [x, *m.parameters()], g, allow_unused=True)
    grads_ref = torch.autograd.grad(ref, [x, *m.parameters()], g, allow_unused=True)
    for name, a, b in zip(["x"] + [n for n, _ in m.named_parameters()], grads_fast, grads_ref):
        if b is None:  # out_norm / out_proj are not part of the scan
            assert a is None, name
            continue
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8, msg=name)


def test_cross_scan_orders_and_merge_inverts_them():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)  # [[0 1 2], [3 4 5]]
    xs = cross_scan(x)
    assert xs[0, :, 0].tolist() == [[0, 1, 2, 3, 4, 5], [0, 3, 1, 4, 2, 5], [5, 4, 3, 2, 1, 0], [5, 2, 4, 1, 3, 0]]
    torch.testing.assert_close(cross_merge(xs, 2, 3), 4 * x.flatten(2))


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 3, 17, 13), (2, 2, 3, 16, 12)])
def test_svmamba_shapes_for_images_and_frames(shape):
    m = create_model("svmamba_tiny", **TINY)
    assert m(torch.randn(*shape)).shape == (2, 5)


def test_svmamba_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = create_model("svmamba_tiny", **TINY)
    m(torch.randn(4, 3, 16, 16) * 3).logsumexp(1).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_no_membrane_state_leaks_between_samples_of_a_batch():
    torch.manual_seed(1)
    m = create_model("svmamba_tiny", **TINY).eval()
    a, b = torch.randn(1, 3, 16, 16) * 2, torch.randn(1, 3, 16, 16) * 2
    both = m(torch.cat([a, b]))
    torch.testing.assert_close(both, torch.cat([m(a), m(b)]), rtol=1e-5, atol=1e-5)
    # and the spikes really do carry state over time: changing T changes the output
    assert not torch.allclose(m(a), SVMamba(**{**TINY, "num_frames": 1}).eval()(a))


def test_uint8_images_are_normalised_inside_the_model():
    m = create_model("svmamba_tiny", **TINY).eval()
    img = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    normed = (img.float() / 255 - m.normalise.mean.view(1, 3, 1, 1)) / m.normalise.std.view(1, 3, 1, 1)
    torch.testing.assert_close(m(img), m(normed))


def test_gate_forms():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 16, 16)
    fig = create_model("svmamba_tiny", **TINY, gate_form="figure")
    code = create_model("svmamba_tiny", **TINY, gate_form="code")
    assert fig(x).shape == code(x).shape == (2, 5)
    assert {n for n, _ in fig.named_parameters()} != {n for n, _ in code.named_parameters()}  # code: no out_proj
    with pytest.raises(ValueError, match="ssm_ratio=1"):
        create_model("svmamba_tiny", **TINY, gate_form="code", ssm_ratio=2.0)
    with pytest.raises(ValueError, match="gate_form"):
        create_model("svmamba_tiny", **TINY, gate_form="paper")


def test_bad_input_shapes_name_the_expected_layout():
    m = create_model("svmamba_tiny", **TINY)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        m(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match="images"):
        m(torch.randn(16, 16))
