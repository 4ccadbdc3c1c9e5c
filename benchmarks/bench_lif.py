"""LIF multi-step forward+backward: our fused LIF vs the per-step loop and SpikingJelly (when installed).

Shape [T=16, B=8, 256, 32, 32] as in the performance anchors; tau=2, sigmoid surrogate."""
import torch

from spikmamba.benchmark import optional
from spikmamba.nn import LIFNode


def _fwd_bwd(node, x):
    def run():
        x.grad = None
        node.reset()
        node(x).sum().backward()
    return run


def setup(quick: bool):
    shape = (4, 2, 8, 8, 8) if quick else (16, 8, 256, 32, 32)
    x = torch.rand(*shape, requires_grad=True)
    impls = {
        "spikmamba LIFNode (fused)": _fwd_bwd(LIFNode(tau=2.0, step_mode="m", surrogate_function="sigmoid"), x),
        "per-step loop (autograd)": _fwd_bwd(
            LIFNode(tau=2.0, step_mode="m", surrogate_function="sigmoid", backend="loop"), x),
    }
    missing = optional("spikingjelly", "a baseline only; it replaces torch, install it in its own environment")
    if missing is None:
        from spikingjelly.activation_based import neuron, surrogate

        sj = neuron.LIFNode(tau=2.0, step_mode="m", backend="torch", surrogate_function=surrogate.Sigmoid())
        impls["SpikingJelly LIFNode (torch backend)"] = _fwd_bwd(sj, x)
    else:
        impls["SpikingJelly LIFNode (torch backend)"] = missing
    return {"what": f"LIF forward+backward, input {list(shape)}", "impls": impls}


BENCHMARKS = {"lif": setup}
