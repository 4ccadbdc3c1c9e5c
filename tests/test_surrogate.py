import math

import pytest
import torch

from spikmamba.nn.surrogate import ATan, Rectangular, Sigmoid, get_surrogate


@pytest.mark.parametrize("sg", [Sigmoid(), Sigmoid(alpha=2.5), ATan(), ATan(alpha=3.0), Rectangular(0.8)])
def test_forward_is_exact_heaviside(sg):
    x = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 3.0])
    assert torch.equal(sg(x), torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))


@pytest.mark.parametrize(
    "sg, primitive",
    [
        (Sigmoid(4.0), lambda x: torch.sigmoid(4.0 * x)),
        (ATan(2.0), lambda x: torch.atan(math.pi / 2 * 2.0 * x) / math.pi + 0.5),
    ],
)
def test_backward_is_derivative_of_smooth_primitive(sg, primitive):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(sg(x).sum(), x)
    xs = x.detach().requires_grad_()
    (g_ref,) = torch.autograd.grad(primitive(xs).sum(), xs)
    torch.testing.assert_close(g, g_ref)


def test_rectangular_is_a_unit_box():
    sg = Rectangular(0.5)
    x = torch.tensor([-0.3, -0.2, 0.0, 0.2, 0.3], requires_grad=True)
    sg(x).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 2.0, 2.0, 2.0, 0.0]))


def test_get_surrogate_errors_name_the_choices():
    assert isinstance(get_surrogate("atan"), ATan)
    with pytest.raises(ValueError, match="sigmoid"):
        get_surrogate("tanhh")
    with pytest.raises(ValueError, match="alpha"):
        Sigmoid(alpha=0)
