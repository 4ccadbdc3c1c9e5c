import itertools

import pytest
import torch

from spikmamba.nn import LIFNode, ParametricLIFNode, record_firing_rates, reset_net
from spikmamba.nn.surrogate import ATan, Rectangular, Sigmoid

CASES = list(itertools.product([LIFNode, ParametricLIFNode], [0.0, -0.5, None], [True, False], [True, False]))


def _run(cls, backend, x, v_reset, detach_reset, decay_input, surrogate=None):
    torch.manual_seed(0)
    n = cls(v_reset=v_reset, detach_reset=detach_reset, decay_input=decay_input, step_mode="m",
            backend=backend, surrogate_function=surrogate).to(x.dtype)
    s = n(x)
    weights = torch.linspace(-1, 1, s.numel(), dtype=x.dtype).reshape(s.shape)
    loss = (s * weights).sum() + (n.v ** 2).sum()  # gradient reaches spikes and the final membrane
    grads = torch.autograd.grad(loss, [x] + list(n.parameters()))
    return s, grads


@pytest.mark.parametrize("cls, v_reset, detach_reset, decay_input", CASES)
def test_fused_kernel_equals_per_step_loop(cls, v_reset, detach_reset, decay_input):
    x = (torch.randn(7, 2, 3, 4) * 1.5).requires_grad_()
    s_f, g_f = _run(cls, "fused", x, v_reset, detach_reset, decay_input)
    s_l, g_l = _run(cls, "loop", x, v_reset, detach_reset, decay_input)
    assert torch.equal(s_f, s_l)
    assert set(s_f.unique().tolist()) <= {0.0, 1.0}
    for a, b in zip(g_f, g_l):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("surrogate", [Sigmoid(), ATan(), Rectangular(1.0)])
def test_fused_kernel_each_surrogate_float64(surrogate):
    x = (torch.randn(5, 3, 6, dtype=torch.float64) * 2).requires_grad_()
    s_f, g_f = _run(LIFNode, "fused", x, 0.0, False, True, surrogate)
    s_l, g_l = _run(LIFNode, "loop", x, 0.0, False, True, surrogate)
    assert torch.equal(s_f, s_l)
    torch.testing.assert_close(g_f[0], g_l[0], atol=1e-12, rtol=1e-12)


def test_lif_matches_hand_computation():
    # tau=2, hard reset to 0: h = v + (x - v)/2; spike when h >= 1
    n = LIFNode(tau=2.0, step_mode="m")
    x = torch.tensor([[1.0], [1.0], [1.0], [3.0], [0.0]])
    s = n(x)
    # h: 0.5, 0.75, 0.875, 1.9375 -> spike, reset 0, then 0.0
    assert s.flatten().tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert n.v.item() == 0.0


def test_soft_reset_subtracts_threshold():
    n = LIFNode(tau=2.0, v_reset=None, decay_input=False, step_mode="s")
    assert n(torch.tensor([1.5])).item() == 1.0  # h = 0 * 0.5 + 1.5
    assert n.v.item() == pytest.approx(0.5)


def test_multistep_state_carries_across_calls_like_one_long_call():
    x = torch.randn(8, 2, 5) * 2
    a = LIFNode(step_mode="m")
    whole = a(x)
    b = LIFNode(step_mode="m")
    parts = torch.cat([b(x[:3]), b(x[3:])])
    assert torch.equal(whole, parts)
    assert torch.equal(a.v, b.v)


def test_single_step_equals_multi_step():
    x = torch.randn(6, 3, 4) * 2
    m = LIFNode(step_mode="m")(x)
    s_node = LIFNode(step_mode="s")
    assert torch.equal(m, torch.stack([s_node(x[t]) for t in range(6)]))


def test_reset_net_and_shape_mismatch_error():
    n = LIFNode(step_mode="m")
    n(torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match="reset_net"):
        n(torch.randn(4, 5, 3))
    reset_net(n)
    assert n(torch.randn(4, 5, 3)).shape == (4, 5, 3)


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="T >= 1"):
        LIFNode(step_mode="m")(torch.zeros(0, 2, 3))
    with pytest.raises(ValueError, match="tau"):
        LIFNode(tau=0.5)
    with pytest.raises(ValueError, match="step_mode"):
        LIFNode(step_mode="x")
    with pytest.raises(ValueError, match="v_reset"):
        LIFNode(v_threshold=1.0, v_reset=2.0)


def test_plif_tau_is_learned():
    n = ParametricLIFNode(init_tau=2.0, step_mode="m")
    assert n.tau == pytest.approx(2.0)
    x = torch.rand(10, 4, 8) * 3
    n(x).sum().backward()
    assert n.w.grad is not None and n.w.grad.abs().item() > 0


def test_firing_rate_monitor():
    n = LIFNode(step_mode="m", v_threshold=0.5)
    x = torch.zeros(4, 1, 10)
    x[:, :, :5] = 5.0  # half the neurons fire every step
    with record_firing_rates(n) as rates:
        n(x)
    assert rates[""] == pytest.approx(0.5)
    assert n.monitor is False


def test_batch_size_one_and_gradient_flows():
    x = torch.rand(3, 1, 2, 5, 7, requires_grad=True)
    s = LIFNode(step_mode="m")(x * 4)
    s.sum().backward()
    assert x.grad.shape == x.shape and x.grad.abs().sum() > 0


@pytest.mark.parametrize("v_reset, decay_input", [(0.0, True), (-0.5, True), (None, True), (0.0, False)])
def test_the_plain_op_twin_for_exporters_gives_the_same_spikes(v_reset, decay_input):
    from spikmamba.nn.lif_kernel import multistep_lif_plain

    x = torch.randn(9, 3, 5, 4) * 2
    n = LIFNode(tau=2.0, v_reset=v_reset, decay_input=decay_input, step_mode="m")
    s_fused = n(x)
    s_plain, v_plain = multistep_lif_plain(x, n._v_init, n.decay(), n.v_threshold, v_reset, decay_input)
    assert torch.equal(s_fused, s_plain)
    torch.testing.assert_close(v_plain, n.v, atol=1e-6, rtol=1e-6)
