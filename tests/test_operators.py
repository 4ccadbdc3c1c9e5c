"""The scan and the LIF as PyTorch operators (issue 29): ``torch.library.opcheck`` (schema, fake
implementation, autograd registration, AOT dispatch), finite-difference gradients of the scan
operator, the dispatch choice, and ``torch.compile`` of a whole model on the CPU equal to eager.

The Triton backend of the same operators is checked in tests/test_triton.py (interpreter)."""
import warnings

import pytest
import torch

from spikmamba.nn import kernels
from spikmamba.nn.lif_op import multistep_lif
from spikmamba.nn.surrogate import ATan, Sigmoid, SurrogateFunction

pytestmark = [pytest.mark.gpu, pytest.mark.slow]  # kernels a GPU runs natively; on the CPU, Triton's interpreter

F64 = torch.float64


def scan_args(bc="selective", dtype=F64, with_d=True, with_z=True, with_bias=True, b=2, d=4, L=9, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64).to(dtype).requires_grad_()  # noqa: E731
    shapes = {"selective": (b, n, L), "invariant": (d, n), "grouped": (b, 2, n, L), "mixed": (b, 2, n, L)}
    B = r(*shapes[bc])
    C = r(*shapes[bc]) if bc != "mixed" else r(b, n, L)
    A = (-torch.rand(d, n, generator=g, dtype=F64)).to(dtype if dtype == F64 else torch.float32).requires_grad_()
    return [r(b, d, L), (0.5 * torch.rand(b, d, L, generator=g, dtype=F64)).to(dtype).requires_grad_(), A, B, C,
            r(d).float().requires_grad_() if with_d else None, r(b, d, L) if with_z else None,
            r(d).float().requires_grad_() if with_bias else None]


@pytest.mark.parametrize("bc", ["selective", "invariant", "grouped", "mixed"])
@pytest.mark.parametrize("options", [(True, True, True), (False, False, False), (True, False, True)])
@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.bfloat16])
def test_the_scan_operator_passes_opcheck(bc, options, dtype):
    args = scan_args(bc, dtype, *options)
    if dtype == F64:  # D and the bias in the inputs' dtype, as a float64 model has them
        args = [t.detach().double().requires_grad_() if t is not None else None for t in args]
    result = torch.library.opcheck(torch.ops.spikmamba.selective_scan.default, (*args, True, "torch"))
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("bc", ["selective", "invariant", "grouped", "mixed"])
@pytest.mark.parametrize("softplus", [True, False])
def test_the_scan_operator_gradients_match_finite_differences(bc, softplus):
    """Every input's gradient, the last state's included, against central differences in float64."""
    args = [t.detach().double().requires_grad_() if t is not None else None for t in scan_args(bc, L=7)]

    def f(*xs):
        out, last, _, _ = torch.ops.spikmamba.selective_scan(*xs, softplus, "torch")
        return out, last

    assert torch.autograd.gradcheck(f, args, atol=1e-7, rtol=1e-6)


def test_the_backward_operator_passes_opcheck():
    u, delta, A, B, C, D, z, bias = [t.detach() if t is not None else None for t in scan_args()]
    _, _, states, kept = torch.ops.spikmamba.selective_scan(u, delta, A, B, C, D.double(), z, bias.double(), True,
                                                            "torch")
    args = (torch.randn_like(u), torch.randn(2, 4, 3, dtype=F64), u, delta, A, B, C, D.double(), z, bias.double(),
            states, kept, True, "torch")
    result = torch.library.opcheck(torch.ops.spikmamba.selective_scan_backward.default, args)
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("v_reset", [0.0, -0.2, None])
@pytest.mark.parametrize("parametric", [False, True])
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan", "rectangular"])
def test_the_lif_operator_passes_opcheck(v_reset, parametric, surrogate):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 5, generator=g, requires_grad=True)
    k = torch.tensor(0.4, requires_grad=parametric)
    v0 = torch.rand(3, 5, generator=g, requires_grad=True)
    args = (x, v0, k, 0.3, v_reset, True, surrogate, 2.0, False, True, "torch")
    result = torch.library.opcheck(torch.ops.spikmamba.multistep_lif.default, args)
    assert set(result.values()) == {"SUCCESS"}, result


def test_a_custom_surrogate_keeps_the_autograd_function_and_its_own_derivative():
    """An op carries a surrogate by name; a user's subclass (here of Sigmoid, with another
    derivative) must not be mistaken for the built-in one."""

    class Doubled(Sigmoid):
        def derivative(self, x):
            return 2 * super().derivative(x)

    assert Sigmoid().kernel_name == "sigmoid" and ATan().kernel_name == "atan" and Doubled().kernel_name is None
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    grads = []
    for s in (Sigmoid(), Doubled()):
        spikes, _ = multistep_lif(x, 0.0, 0.5, 0.2, 0.0, True, True, s)
        grads.append(torch.autograd.grad(spikes.sum(), x)[0])
    # detach_reset: the gradient is linear in the surrogate's derivative
    torch.testing.assert_close(grads[1], 2 * grads[0])


class _Custom(SurrogateFunction):
    def derivative(self, x):
        return torch.ones_like(x)


def test_the_dispatch_names_its_choice_and_says_why_a_cuda_tensor_cannot_take_triton(monkeypatch):
    cpu = torch.zeros(2)
    assert kernels.scan_backend(cpu) == "torch" and kernels.lif_backend(cpu, Sigmoid()) == "torch"

    class FakeCuda:  # what the dispatch reads of a tensor
        is_cuda = True

        def __init__(self, dtype, numel=8):
            self.dtype, self._numel = dtype, numel

        def numel(self):
            return self._numel

    kernels._warn_once.cache_clear()
    monkeypatch.setattr(kernels, "triton_available", lambda: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert kernels.scan_backend(FakeCuda(torch.float32)) == "triton"
        assert kernels.lif_backend(FakeCuda(torch.bfloat16), Sigmoid()) == "triton"
        assert not caught
        assert kernels.scan_backend(FakeCuda(torch.float64)) == "torch"
        assert kernels.scan_backend(FakeCuda(torch.float64)) == "torch"  # said once
        assert kernels.lif_backend(FakeCuda(torch.float32), _Custom(1.0)) == "torch"
        monkeypatch.setattr(kernels, "triton_available", lambda: False)
        assert kernels.scan_backend(FakeCuda(torch.float32)) == "torch"
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3, messages
    assert "float64" in messages[0] and "_Custom" in messages[1] and "triton does not import" in messages[2]
    assert kernels.scan_backend(FakeCuda(torch.float32, numel=0)) == "torch"  # an empty shard: nothing to launch
    monkeypatch.setenv("SPIKMAMBA_CUDA_KERNELS", "mamba_ssm")
    assert kernels.scan_backend(FakeCuda(torch.float32)) == "mamba_ssm"
    monkeypatch.setenv("SPIKMAMBA_CUDA_KERNELS", "torch")
    assert kernels.scan_backend(FakeCuda(torch.float32)) == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        torch.ops.spikmamba.selective_scan(*[t.detach() if t is not None else None for t in scan_args()], True,
                                           "cuda")
    kernels._warn_once.cache_clear()


def _tiny_spikmamba():
    from spikmamba.models import create_model

    torch.manual_seed(0)
    return create_model("spikmamba_tiny", img_size=16, patch_size=4, num_frames=2, num_classes=3, embed_dim=16)


def _step(model, forward, x):
    from spikmamba.nn.functional import reset_net

    reset_net(model)
    model.zero_grad()
    logits = forward(x)
    logits.square().sum().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_torch_compile_of_a_whole_model_equals_eager_values_and_gradients():
    """Inductor on the CPU, one graph (``fullgraph``: no break at the kernels), the operators
    inside it; logits and every parameter's gradient equal eager's, on two batches."""
    model = _tiny_spikmamba()
    compiled = torch.compile(model, fullgraph=True)
    for seed in (0, 1):
        x = torch.rand(2, 2, 2, 16, 16, generator=torch.Generator().manual_seed(seed))
        ref_logits, ref_grads = _step(model, model, x)
        logits, grads = _step(model, compiled, x)
        torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
        assert grads.keys() == ref_grads.keys() and len(grads) > 20
        for name in grads:
            torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_the_compiled_graph_holds_the_operators_not_their_loops():
    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model = _tiny_spikmamba()
    torch.compile(model, backend=record, fullgraph=True)(torch.rand(2, 2, 2, 16, 16))
    (gm,) = graphs
    targets = {str(node.target) for node in gm.graph.nodes if node.op == "call_function"}
    assert any("spikmamba.selective_scan" in t for t in targets), targets
    assert any("spikmamba.multistep_lif" in t for t in targets), targets


@pytest.mark.parametrize("bc", ["selective", "invariant", "mixed"])
def test_an_empty_batch_goes_through_both_operators(bc):
    """A DDP rank whose shard of the last batch is empty runs the model on batch 0: the scan's
    saved states once failed to reshape (``-1`` with no elements), and the whole torchrun
    training stopped."""
    args = scan_args(bc, torch.float32, b=0)
    out, last, _, _ = torch.ops.spikmamba.selective_scan(*args, True, "torch")
    assert out.shape == (0, 4, 9) and last.shape == (0, 4, 3)
    (out.sum() + last.sum()).backward()
    assert args[2].grad is not None and not args[2].grad.any()
    model = _tiny_spikmamba()
    logits = model(torch.rand(0, 2, 2, 16, 16))
    logits.sum().backward()
    assert logits.shape == (0, 3)
