import pytest
import torch

from spikmamba.nn.ssm import Mamba, MambaBlock


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("B, L", [(1, 1), (2, 7), (3, 16)])
def test_shapes_and_gradients(bidirectional, B, L):
    m = Mamba(16, d_state=4, expand=2, bidirectional=bidirectional)
    x = torch.randn(B, L, 16, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())


def test_unidirectional_is_causal_bidirectional_is_not():
    torch.manual_seed(0)
    x = torch.randn(1, 12, 8)
    x2 = x.clone()
    x2[:, 8:] += 1.0  # change only the future
    uni, bi = Mamba(8, d_state=4), Mamba(8, d_state=4, bidirectional=True)
    torch.testing.assert_close(uni(x)[:, :8], uni(x2)[:, :8])
    assert not torch.allclose(bi(x)[:, :8], bi(x2)[:, :8])


def test_mamba_gradcheck_float64():
    torch.manual_seed(0)
    m = Mamba(4, d_state=2, expand=1, bidirectional=True).double()
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))


def test_block_residual_and_errors():
    blk = MambaBlock(8, d_state=4)
    x = torch.randn(2, 5, 8)
    assert blk(x).shape == x.shape
    with pytest.raises(ValueError, match="d_model=8"):
        blk.mixer(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="d_state"):
        Mamba(8, d_state=0)
