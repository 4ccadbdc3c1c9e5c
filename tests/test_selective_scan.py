import subprocess
import sys

import pytest
import torch

from spikmamba.nn.ssm import linear_scan, selective_scan_fast, selective_scan_fn, selective_scan_ref
from spikmamba.nn.ssm.linear_scan import scan_sequential


def _inputs(b, d, n, L, bc="selective", with_d=True, with_z=True, with_bias=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype).requires_grad_()  # noqa: E731
    shapes = {"selective": (b, n, L), "constant": (d, n), "grouped": (b, 2, n, L)}[bc]
    A = (-torch.rand(d, n, generator=g, dtype=dtype) * 2).requires_grad_()
    return dict(u=r(b, d, L), delta=r(b, d, L), A=A, B=r(*shapes), C=r(*shapes),
                D=r(d) if with_d else None, z=r(b, d, L) if with_z else None,
                delta_bias=r(d) if with_bias else None)


@pytest.mark.parametrize("L", [1, 2, 7, 16, 33, 100, 257])
@pytest.mark.parametrize("bc", ["selective", "constant", "grouped"])
def test_fast_equals_reference_forward_and_backward(L, bc):
    _assert_fast_equals_reference(_inputs(2, 4, 3, L, bc))


def _assert_fast_equals_reference(kw):
    """Outputs, last states and every gradient (of a loss using both) of fast vs reference."""
    leaves = [v for v in kw.values() if v is not None]
    outs = []
    for fn in (selective_scan_ref, selective_scan_fast):
        y, last = fn(**kw, delta_softplus=True, return_last_state=True)
        loss = (y * torch.sin(y)).sum() + (last ** 3).sum()
        outs.append((y, last, torch.autograd.grad(loss, leaves)))
    (y0, l0, g0), (y1, l1, g1) = outs
    torch.testing.assert_close(y1, y0, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(l1, l0, atol=1e-10, rtol=1e-10)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("opts", [dict(with_d=False), dict(with_z=False), dict(with_bias=False)])
def test_optional_arguments(opts):
    kw = _inputs(1, 3, 2, 9, **opts)
    torch.testing.assert_close(selective_scan_fast(**kw), selective_scan_ref(**kw))


def test_float32_fast_close_to_reference():
    kw = _inputs(2, 8, 4, 300, dtype=torch.float32)
    torch.testing.assert_close(selective_scan_fast(**kw, delta_softplus=True),
                               selective_scan_ref(**kw, delta_softplus=True), atol=1e-4, rtol=1e-4)


def test_reference_matches_hand_computed_scalar_case():
    # b=d=n=1, A=-1, B=C=1, delta=1: x_t = e^-1 x_{t-1} + u_t ; y = x
    u = torch.tensor([[[1.0, 2.0, 0.0]]], dtype=torch.float64)
    one = torch.ones(1, 1, 3, dtype=torch.float64)
    y = selective_scan_ref(u, one, -torch.ones(1, 1, dtype=torch.float64), one, one)
    e = torch.exp(torch.tensor(-1.0, dtype=torch.float64))
    expected = torch.stack([torch.tensor(1.0, dtype=torch.float64), e + 2, (e + 2) * e])
    torch.testing.assert_close(y.flatten(), expected)


@pytest.mark.parametrize("L", [1, 5, 64, 65, 200])
def test_linear_scan_gradcheck_and_sequential(L):
    a = torch.rand(L, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(L, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(linear_scan(a, b), scan_sequential(a, b))
    if L <= 65:
        assert torch.autograd.gradcheck(linear_scan, (a, b))


def test_bad_shapes_name_the_argument():
    kw = _inputs(2, 4, 3, 5)
    with pytest.raises(ValueError, match="u must be"):
        selective_scan_fast(**{**kw, "u": kw["u"][0]})
    with pytest.raises(ValueError, match="A must be"):
        selective_scan_fast(**{**kw, "A": kw["A"][:2]})
    with pytest.raises(ValueError, match="B must be"):
        selective_scan_fast(**{**kw, "B": kw["B"][:, :, :4]})
    with pytest.raises(ValueError, match="L=0"):
        selective_scan_fast(**{**kw, "u": kw["u"][:, :, :0], "delta": kw["delta"][:, :, :0]})


def test_cpu_dispatch_never_imports_mamba_ssm():
    code = (
        "import sys, torch\n"
        "from spikmamba.nn.ssm import selective_scan_fn, Mamba\n"
        "m = Mamba(8)\n"
        "m(torch.randn(2, 5, 8))\n"
        "assert 'mamba_ssm' not in sys.modules, 'mamba_ssm was imported on CPU'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dispatch_on_cpu_equals_fast_path():
    kw = _inputs(1, 2, 2, 6, dtype=torch.float32)
    assert torch.equal(selective_scan_fn(**kw), selective_scan_fast(**kw))


@pytest.mark.parametrize("block", [1, 4, 7])
@pytest.mark.parametrize("bc", ["selective", "constant", "grouped"])
def test_time_blocked_scan_with_many_blocks_equals_reference(monkeypatch, block, bc):
    """Blocks of 1, 4 and 7 steps over L=33: the recomputation and the adjoint carried across
    block boundaries (including the last state's gradient) must match the plain loop."""
    from spikmamba.nn.ssm import blocked_scan as blocked

    b, d, n = 2, 4, 3
    monkeypatch.setattr(blocked, "BLOCK_ELEMENTS", block * b * d * n)
    assert blocked.block_length(33, b * d * n) == block
    _assert_fast_equals_reference(_inputs(b, d, n, 33, bc, seed=block))


@pytest.mark.parametrize("L", [1, 2, 33])
@pytest.mark.parametrize("bc", ["selective", "constant", "grouped"])
def test_the_plain_op_twin_for_exporters_equals_the_reference(L, bc):
    from spikmamba.nn.ssm.selective_scan import selective_scan_plain

    kw = _inputs(2, 4, 3, L, bc)
    y0, l0 = selective_scan_ref(**kw, delta_softplus=True, return_last_state=True)
    y1, l1 = selective_scan_plain(**kw, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(y1, y0, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(l1, l0, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_last_state_of_half_inputs_is_the_fp32_running_state_as_in_mamba_ssm(dtype):
    """mamba_ssm returns the last state in fp32 for fp16/bf16 inputs (it is the fp32 running
    state); ours returned it in the input dtype, and mamba_ssm's own suite failed 80 cases with
    `Half did not match Float` (issue 29)."""
    from spikmamba.nn.ssm.selective_scan import selective_scan_plain

    kw = {k: (v.detach().to(dtype) if v is not None and k != "A" else v.detach() if v is not None else None)
          for k, v in _inputs(2, 4, 3, 37, dtype=torch.float32).items()}
    ref = {k: (v.float() if v is not None else None) for k, v in kw.items()}
    _, expected = selective_scan_ref(**ref, delta_softplus=True, return_last_state=True)
    impls = [selective_scan_ref, selective_scan_plain, selective_scan_fast]
    try:
        import os

        import triton  # noqa: F401

        if os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available():
            from spikmamba.nn.ssm.selective_scan import selective_scan_triton

            impls.append(selective_scan_triton)
    except ImportError:
        pass
    for fn in impls:
        y, last = fn(**kw, delta_softplus=True, return_last_state=True)
        assert y.dtype == dtype and last.dtype == torch.float32, (fn.__name__, y.dtype, last.dtype)
        torch.testing.assert_close(last, expected, atol=1e-5, rtol=1e-5)
