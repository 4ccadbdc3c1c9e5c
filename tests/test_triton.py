"""The Triton kernels (issue 22) against the readable references, values and gradients.

Without a GPU they run on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``, set here
before the kernels are defined); on a CUDA machine the same tests run compiled on the GPU.
Shapes are tiny and odd: L crossing several of the scan's chunks (made 8 steps long here) and
ending inside one, N=1, channel and neuron counts that are not multiples of the blocks."""
import itertools
import os

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.slow]  # kernels a GPU runs natively; on the CPU, Triton's interpreter

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":  # conftest.py sets it before triton loads
    pytest.skip("TRITON_INTERPRET=1 was not set before triton was imported", allow_module_level=True)
triton = pytest.importorskip("triton", reason="triton is not installed (pip install triton; .ci/run does)")

from spikmamba.nn import kernels  # noqa: E402
from spikmamba.nn.lif_kernel import MultiStepLIFFunction  # noqa: E402
from spikmamba.nn.lif_op import multistep_lif_triton  # noqa: E402
from spikmamba.nn.ssm import triton_scan  # noqa: E402
from spikmamba.nn.ssm.selective_scan import (
    selective_scan_ref,  # noqa: E402
    selective_scan_triton,  # noqa: E402
)
from spikmamba.nn.surrogate import ATan, Rectangular, Sigmoid  # noqa: E402


@pytest.fixture(autouse=True)
def short_chunks(monkeypatch):
    monkeypatch.setattr(triton_scan, "CHUNK", 8)


def scan_inputs(b=2, d=5, L=21, n=3, bc="selective", groups=2, with_d=True, with_z=True, bias=True, seed=0,
                dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).to(DEVICE, dtype).requires_grad_()  # noqa: E731
    shapes = {"invariant": (d, n), "selective": (b, n, L), "grouped": (b, groups, n, L)}
    B = r(*shapes[bc]) if bc != "mixed" else r(b, groups, n, L)
    C = r(*shapes[bc]) if bc != "mixed" else r(b, n, L)
    A = (-torch.rand(d, n, generator=g) - 0.2).to(DEVICE, dtype).requires_grad_()
    return dict(u=r(b, d, L), delta=r(b, d, L), A=A, B=B, C=C, D=r(d) if with_d else None,
                z=r(b, d, L) if with_z else None, delta_bias=r(d) if bias else None)


def grads_of(fn, inputs, softplus, last=True, seed=1):
    out, state = fn(**inputs, delta_softplus=softplus, return_last_state=True)
    g = torch.Generator().manual_seed(seed)
    loss = (out.float() * torch.randn(out.shape, generator=g).to(DEVICE)).sum()
    if last:
        loss = loss + (state.float() * torch.randn(state.shape, generator=g).to(DEVICE)).sum()
    leaves = {k: v for k, v in inputs.items() if v is not None}
    return out, state, dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))


def assert_close_scan(inputs, softplus=True, last=True, tol=2e-4):
    out_t, state_t, g_t = grads_of(selective_scan_triton, inputs, softplus, last)
    out_r, state_r, g_r = grads_of(selective_scan_ref, inputs, softplus, last)
    assert out_t.dtype == inputs["u"].dtype and out_t.shape == out_r.shape
    scale = lambda r: tol * max(1.0, float(r.detach().abs().max()))  # noqa: E731
    assert (out_t.float() - out_r.float()).abs().max() <= scale(out_r)
    assert (state_t.float() - state_r.float()).abs().max() <= scale(state_r)
    for k in g_r:
        assert g_t[k].shape == g_r[k].shape and g_t[k].dtype == g_r[k].dtype, k
        assert (g_t[k].float() - g_r[k].float()).abs().max() <= scale(g_r[k]), k


@pytest.mark.parametrize("bc,d,n,with_d,with_z,bias,softplus", [
    ("selective", 5, 3, True, True, True, True),       # SpikMamba's Mamba blocks
    ("invariant", 5, 1, False, False, False, False),   # S4-style B/C, N=1, nothing optional
    ("grouped", 6, 4, True, False, True, True),        # SS2D: 2 groups of 3 channels (blocks of 1)
    ("grouped", 8, 2, False, True, False, True),       # 2 groups of 4 channels (blocks of 4)
    ("mixed", 8, 3, True, True, True, False),          # grouped B, ungrouped C
])
def test_the_scan_equals_the_reference_values_and_gradients(bc, d, n, with_d, with_z, bias, softplus):
    assert_close_scan(scan_inputs(d=d, n=n, bc=bc, with_d=with_d, with_z=with_z, bias=bias), softplus)


def test_the_scan_at_lengths_around_the_chunk_and_from_the_last_state_alone():
    for L in (1, 8, 9):
        assert_close_scan(scan_inputs(L=L, d=3, n=2, seed=L))
    inputs = scan_inputs(L=13, d=3, n=2)
    out, state = selective_scan_triton(**inputs, delta_softplus=True, return_last_state=True)
    ref_out, ref_state = selective_scan_ref(**inputs, delta_softplus=True, return_last_state=True)
    g1 = torch.autograd.grad(state.sum(), [inputs["u"], inputs["A"]])
    g2 = torch.autograd.grad(ref_state.sum(), [inputs["u"], inputs["A"]])
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("min_programs,split", [(0, (1, 5)), (8, (3, 2))])
def test_the_scan_split_in_time_equals_the_reference(monkeypatch, min_programs, split):
    """The chunk-parallel passes: one segment (the plain walk), and segments of two tiles with a
    shorter last one; every B/C form, the last state's gradient carried back across segments, and
    deterministic mode's per-block B/C sums. (Everywhere else in this file the default splits
    these tiny batches into one tile per segment.)"""
    monkeypatch.setattr(triton_scan, "MIN_PROGRAMS", min_programs)
    assert triton_scan.segments(2 * 2, 5) == split  # b=2, two channel blocks, L=37 in tiles of 8
    for bc, d, n in (("selective", 5, 3), ("invariant", 5, 1), ("grouped", 6, 4), ("mixed", 8, 3)):
        assert_close_scan(scan_inputs(d=d, n=n, bc=bc, L=37, seed=d), last=True)
    torch.use_deterministic_algorithms(True)
    try:
        assert_close_scan(scan_inputs(d=8, n=3, bc="grouped", L=37))
    finally:
        torch.use_deterministic_algorithms(False)


def test_the_time_split_covers_every_tile_once():
    """``segments``: enough programs, segments of whole tiles that cover the sequence exactly."""
    for mp, programs, tiles in itertools.product((0, 1, 7, 1024), (1, 3, 64, 5000), (1, 2, 5, 128, 129)):
        triton_scan.MIN_PROGRAMS, saved = mp, triton_scan.MIN_PROGRAMS
        try:
            n_seg, per = triton_scan.segments(programs, tiles)
        finally:
            triton_scan.MIN_PROGRAMS = saved
        assert (n_seg - 1) * per < tiles <= n_seg * per  # none empty, none missed
        if mp == 0 or programs >= mp:
            assert n_seg == 1
        else:
            assert programs * n_seg >= mp or n_seg == tiles


def test_the_scan_takes_non_contiguous_and_half_precision_inputs():
    base = scan_inputs(d=4, n=2, L=12)
    u_t = base["u"].detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    assert not u_t.is_contiguous()
    assert_close_scan({**base, "u": u_t})
    for dtype in (torch.bfloat16, torch.float16):
        inputs = scan_inputs(d=4, n=2, L=12, dtype=dtype)
        out_t, state_t, g_t = grads_of(selective_scan_triton, inputs, True)
        as32 = {k: (v.detach().float().requires_grad_() if v is not None else None) for k, v in inputs.items()}
        out_r, _, g_r = grads_of(selective_scan_ref, as32, True)
        assert out_t.dtype == dtype and g_t["u"].dtype == dtype and g_t["B"].dtype == dtype
        assert (out_t.float() - out_r).abs().max() <= 0.05 * out_r.abs().max()
        assert (g_t["delta"].float() - g_r["delta"]).abs().max() <= 0.05 * g_r["delta"].abs().max()


def test_the_scan_refuses_what_it_cannot_compute_right():
    with pytest.raises(ValueError, match="L=0"):
        selective_scan_triton(**scan_inputs(L=0))
    with pytest.raises(ValueError, match="float64"):
        selective_scan_triton(**{k: v.double() if v is not None else None for k, v in scan_inputs().items()})
    meta = {**scan_inputs(), "D": torch.zeros(5, device="meta")}
    with pytest.raises(ValueError, match="different devices"):
        selective_scan_triton(**meta)


def lif_case(T, shape, v_reset, detach, decay_input, surrogate, parametric, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, *shape, generator=g) * 1.5).to(DEVICE, dtype).requires_grad_()
    v0 = torch.randn(*shape, generator=g).to(DEVICE, dtype).requires_grad_()
    k = torch.tensor(0.4, device=DEVICE, requires_grad=True) if parametric else 0.4
    results = []
    for fn in (multistep_lif_triton, lambda *a: MultiStepLIFFunction.apply(*a)):
        s, v = fn(x, v0, k, 1.0, v_reset, decay_input, detach, surrogate)
        gs = torch.randn(s.shape, generator=torch.Generator().manual_seed(1)).to(DEVICE, dtype)
        gv = torch.randn(v.shape, generator=torch.Generator().manual_seed(2)).to(DEVICE, dtype)
        leaves = [x, v0, k] if parametric else [x, v0]
        results.append((s, v, *torch.autograd.grad((s * gs).sum() + (v * gv).sum(), leaves)))
    return results


@pytest.mark.parametrize("v_reset,detach,decay_input,surrogate,parametric", [
    (v, det, di, sur, par) for (v, det, di, sur), par in zip(
        itertools.product([0.0, None, -0.2], [False, True], [True, False], [Sigmoid(), ATan(2.5), Rectangular()]),
        itertools.cycle([False, True, False]))])
def test_the_lif_equals_the_pytorch_kernel_values_and_gradients(v_reset, detach, decay_input, surrogate, parametric):
    ours, ref = lif_case(5, (3, 7), v_reset, detach, decay_input, surrogate, parametric)
    assert torch.equal(ours[0], ref[0])  # the spikes themselves: exactly
    for a, b in zip(ours[1:], ref[1:]):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_the_lif_at_odd_sizes_one_step_broadcast_membrane_and_half_precision():
    ours, ref = lif_case(1, (300,), 0.0, False, True, Sigmoid(), False)  # 300 neurons: beyond one block of 256
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-5)
    x = torch.randn(4, 2, 5, device=DEVICE).requires_grad_()
    v0 = torch.tensor(0.3, device=DEVICE, requires_grad=True)  # one membrane value for every neuron
    s1, v1 = multistep_lif_triton(x, v0, 0.5, 1.0, 0.0, True, False, Sigmoid())
    s2, v2 = MultiStepLIFFunction.apply(x, v0, 0.5, 1.0, 0.0, True, False, Sigmoid())
    g1 = torch.autograd.grad(s1.sum() + v1.sum(), [x, v0])
    g2 = torch.autograd.grad(s2.sum() + v2.sum(), [x, v0])
    assert torch.equal(s1, s2) and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g1, g2))
    assert g1[1].shape == ()
    xt = torch.randn(3, 6, 4, device=DEVICE).transpose(1, 2)  # not contiguous
    assert torch.equal(multistep_lif_triton(xt, 0.0, 0.5, 1.0, 0.0, True, False, ATan())[0],
                       MultiStepLIFFunction.apply(xt, torch.tensor(0.0), 0.5, 1.0, 0.0, True, False, ATan())[0])
    ours, ref = lif_case(4, (2, 9), None, False, True, ATan(), False, dtype=torch.bfloat16)
    assert ours[0].dtype == torch.bfloat16 and ours[2].dtype == torch.bfloat16
    assert (ours[0] != ref[0]).float().mean() < 0.05  # bf16 charge rounding may flip a spike at the threshold


def test_the_lif_refuses_what_it_cannot_compute_right():
    with pytest.raises(ValueError, match="T >= 1"):
        multistep_lif_triton(torch.zeros(0, 3, device=DEVICE), 0.0, 0.5, 1.0, 0.0, True, False, Sigmoid())
    with pytest.raises(ValueError, match="float64"):
        multistep_lif_triton(torch.zeros(2, 3, dtype=torch.float64), 0.0, 0.5, 1.0, 0.0, True, False, Sigmoid())
    with pytest.raises(ValueError, match="different|move them"):
        multistep_lif_triton(torch.zeros(2, 3), torch.zeros(3, device="meta"), 0.5, 1.0, 0.0, True, False, Sigmoid())


def test_the_kernel_choice_is_checked_and_cpu_tensors_never_take_triton(monkeypatch):
    monkeypatch.setenv("SPIKMAMBA_CUDA_KERNELS", "cudnn")
    with pytest.raises(ValueError, match="SPIKMAMBA_CUDA_KERNELS must be one of"):
        kernels.cuda_kernels()
    with pytest.raises(ValueError, match="must be one of"):
        kernels.set_cuda_kernels("fast")
    monkeypatch.setenv("SPIKMAMBA_CUDA_KERNELS", "triton")
    assert kernels.cuda_kernels() == "triton" and kernels.triton_available()
    assert kernels.scan_backend(torch.zeros(1)) == "torch" and kernels.lif_backend(torch.zeros(1), Sigmoid()) == "torch"


def tiny_model_step():
    """``(model, run)``: a tiny SpikMamba (small: the interpreter's prefix scan costs per element)
    and ``run(forward)``, one loss and backward returning the logits and every gradient."""
    from spikmamba.models import create_model
    from spikmamba.nn.functional import reset_net

    torch.manual_seed(0)
    model = create_model("spikmamba_tiny", img_size=16, patch_size=4, num_frames=2, num_classes=3,
                         embed_dim=16).to(DEVICE)
    x = torch.rand(2, 2, 2, 16, 16, device=DEVICE)

    def run(forward):
        reset_net(model)
        model.zero_grad()
        logits = forward(x)
        logits.square().sum().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    return model, run


def test_a_model_on_the_triton_kernels_matches_the_pytorch_paths(monkeypatch):
    """The dispatch wired end to end: a tiny SpikMamba with both kernels routed to Triton (as on
    CUDA) gives the PyTorch paths' logits and gradients."""
    from spikmamba.nn import lif_op
    from spikmamba.nn.ssm import selective_scan

    monkeypatch.setattr(triton_scan, "CHUNK", 32)  # fewer, larger programs: the interpreter runs them one by one
    monkeypatch.setattr(triton_scan, "BLOCK_D_MAX", 32)
    model, run = tiny_model_step()
    monkeypatch.setattr(kernels, "cuda_kernels", lambda: "torch")
    ref_logits, ref_grads = run(model)
    used = []
    monkeypatch.setattr(selective_scan, "scan_backend", lambda t: used.append("scan") or "triton")
    monkeypatch.setattr(lif_op, "lif_backend", lambda t, s: used.append("lif") or "triton")
    logits, grads = run(model)
    assert set(used) == {"scan", "lif"} and torch.allclose(logits, ref_logits, atol=1e-4)
    assert len(grads) == len(ref_grads) and all(torch.allclose(a, b, atol=1e-4, rtol=1e-3)
                                                for a, b in zip(grads, ref_grads))


@pytest.mark.parametrize("bc", ["selective", "grouped", "mixed"])
def test_deterministic_mode_sums_b_and_c_gradients_in_a_fixed_order(bc):
    """By default a time-varying B/C gradient is added with atomics; under
    torch.use_deterministic_algorithms each channel block writes its own copy, summed in order."""
    inputs = scan_inputs(d=8, n=3, bc=bc)
    _, _, atomic = grads_of(selective_scan_triton, inputs, True)
    torch.use_deterministic_algorithms(True)
    try:
        runs = [grads_of(selective_scan_triton, inputs, True)[2] for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    for k in ("B", "C", "u", "A"):
        assert torch.equal(runs[0][k], runs[1][k]), k
        assert torch.allclose(runs[0][k], atomic[k], atol=1e-5, rtol=1e-5), k


@pytest.mark.parametrize("bc", ["selective", "grouped", "invariant"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_scan_operator_on_its_triton_backend_passes_opcheck(bc, dtype):
    """Schema, fake implementation (the tile states' shape), autograd registration and AOT
    dispatch of ``spikmamba::selective_scan`` with the Triton kernels behind it."""
    inputs = scan_inputs(b=2, d=4, L=19, n=3, bc=bc, dtype=dtype)
    args = [inputs[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    result = torch.library.opcheck(torch.ops.spikmamba.selective_scan.default, (*args, True, "triton"))
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("parametric", [False, True])
def test_the_lif_operator_on_its_triton_backend_passes_opcheck(v_reset, parametric):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3, 7, generator=g).to(DEVICE).requires_grad_()
    v0 = torch.rand(3, 7, generator=g).to(DEVICE).requires_grad_()
    k = torch.tensor(0.4, device=DEVICE, requires_grad=parametric)
    args = (x, v0, k, 0.3, v_reset, True, "atan", 2.0, False, True, "triton")
    result = torch.library.opcheck(torch.ops.spikmamba.multistep_lif.default, args)
    assert set(result.values()) == {"SUCCESS"}, result


def test_a_compiled_model_on_the_triton_operators_equals_the_eager_pytorch_paths(monkeypatch):
    """The Triton kernels inside a ``torch.compile`` graph (one graph, traced through the fake
    implementations; the interpreter runs the kernels): logits and gradients equal eager PyTorch."""
    from spikmamba.nn import lif_op
    from spikmamba.nn.ssm import selective_scan

    monkeypatch.setattr(triton_scan, "CHUNK", 32)
    monkeypatch.setattr(triton_scan, "BLOCK_D_MAX", 32)
    model, run = tiny_model_step()
    monkeypatch.setattr(kernels, "cuda_kernels", lambda: "torch")
    ref_logits, ref_grads = run(model)
    graphs = []

    def record(gm, example_inputs):
        graphs.append({str(n.target) for n in gm.graph.nodes if n.op == "call_function"})
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        plain = lambda g, _: make_boxed_func(g.forward)  # noqa: E731  AOT autograd's graphs, run as traced
        return aot_autograd(fw_compiler=plain, bw_compiler=plain)(gm, example_inputs)

    monkeypatch.setattr(selective_scan, "scan_backend", lambda t: "triton")
    monkeypatch.setattr(lif_op, "lif_backend", lambda t, s: "triton")
    logits, grads = run(torch.compile(model, backend=record, fullgraph=True))
    assert len(graphs) == 1 and any("spikmamba.selective_scan" in t for t in graphs[0])
    assert torch.allclose(logits, ref_logits, atol=1e-4)
    assert len(grads) == len(ref_grads) and all(torch.allclose(a, b, atol=1e-4, rtol=1e-3)
                                                for a, b in zip(grads, ref_grads))
