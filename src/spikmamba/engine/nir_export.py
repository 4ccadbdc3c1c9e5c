"""NIR export: a spiking network as a Neuromorphic Intermediate Representation graph.

Only networks that are a plain chain of layers NIR can express are exported (models that say
so with ``nir_sequence()``, e.g. ``scnn_nmnist``): ``Conv2d`` (a following ``BatchNorm2d`` is
folded into it: NIR has no normalisation node), ``LIFNode``, ``AvgPool2d``, ``Flatten``,
``Linear``. Anything else is an error naming the first module NIR cannot express.

The time-constant convention. Our LIF is SpikingJelly's discrete one, one update per time step::

    decay_input=True:   v <- v + (x - (v - v_reset)) / tau
    decay_input=False:  v <- v - (v - v_reset) / tau + x

NIR's LIF is continuous, ``tau dv/dt = (v_leak - v) + r I``. Its forward-Euler step with
``dt = 1`` (one time step) is the discrete update above when ``tau_nir = tau``, ``v_leak =
v_reset`` and ``r = 1`` (``decay_input=True``) or ``r = tau`` (``decay_input=False``). So the
exported ``tau`` is in time steps: a simulator running ``dt`` seconds per step should read
``tau * dt`` seconds. Thresholds and the reset value map as they are (a hard reset to
``v_reset``; NIR has no soft reset, so a soft-reset LIF is refused). NIR fires on
``v > v_threshold``, our LIF on ``v >= v_threshold``: they differ only when the membrane lands
exactly on the threshold. The model's logits are the time average of the last ``Affine``'s
output (``forward_head``); NIR carries the per-step graph, the host averages.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..nn.neurons import LIFNode
from .checkpoint import load_checkpoint, model_from_checkpoint
from .export import ExportError

SUPPORTED = (nn.Conv2d, nn.BatchNorm2d, LIFNode, nn.AvgPool2d, nn.Flatten, nn.Linear)


def first_inexpressible(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first leaf module (in registration order) that NIR has no node for."""
    for name, m in model.named_modules():
        if len(list(m.children())) == 0 and not isinstance(m, SUPPORTED + (nn.Dropout, nn.Identity)):
            return name, m
    return None


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of ``bn(conv(x))`` as one conv, with ``bn``'s running statistics (eval mode)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight.detach() * scale[:, None, None, None]
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    bias = (bias - bn.running_mean) * scale + bn.bias.detach()
    return weight.double().numpy(), bias.double().numpy()


def lif_to_nir(lif: LIFNode, shape) -> object:
    """Our LIF as a NIR LIF (see the module docstring for the convention)."""
    import nir

    if lif.v_reset is None:
        raise ExportError("NIR's LIF resets to a value; this LIF resets by subtraction (v_reset=None)")
    tau = float(1.0 / float(lif.decay()))
    full = lambda v: np.full(shape, v, dtype=np.float64)  # noqa: E731
    return nir.LIF(tau=full(tau), r=full(1.0 if lif.decay_input else tau), v_leak=full(lif.v_reset),
                   v_threshold=full(lif.v_threshold), v_reset=full(lif.v_reset))


def to_nir(model: nn.Module, input_shape) -> object:
    """``model`` (with ``nir_sequence()``) as a NIR graph for inputs of ``input_shape`` = (C, H, W)."""
    import nir

    sequence = getattr(model, "nir_sequence", None)
    if sequence is None:
        bad = first_inexpressible(model)
        where = f"; the first module NIR cannot express is {bad[0]} ({type(bad[1]).__name__})" if bad else ""
        raise ExportError(f"{type(model).__name__} is not a plain chain of layers that NIR can express{where}. "
                          f"Spiking CNNs made of conv, BatchNorm, LIF, average pooling, flatten and linear layers "
                          f"(such as scnn_nmnist) can be exported")
    model = model.eval()
    layers = sequence()
    nodes, order = {"input": nir.Input(input_type={"input": np.array(input_shape)})}, ["input"]
    shape = tuple(input_shape)
    i = 0
    while i < len(layers):
        name, m = layers[i]
        key = name.replace(".", "_")
        if isinstance(m, nn.Conv2d):
            if i + 1 < len(layers) and isinstance(layers[i + 1][1], nn.BatchNorm2d):
                weight, bias = fold_batchnorm(m, layers[i + 1][1])
                i += 1
            else:
                weight = m.weight.detach().double().numpy()
                bias = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(m.out_channels)
            nodes[key] = nir.Conv2d(input_shape=shape[1:], weight=weight, stride=m.stride, padding=m.padding,
                                    dilation=m.dilation, groups=m.groups, bias=bias)
            with torch.no_grad():
                shape = tuple(m(torch.zeros(1, *shape)).shape[1:])
        elif isinstance(m, LIFNode):
            nodes[key] = lif_to_nir(m, shape)
        elif isinstance(m, nn.AvgPool2d):
            k, s, p = (np.array([v, v]) if isinstance(v, int) else np.array(v) for v in (m.kernel_size,
                                                                                       m.stride or m.kernel_size,
                                                                                       m.padding))
            nodes[key] = nir.AvgPool2d(kernel_size=k, stride=s, padding=p)
            with torch.no_grad():
                shape = tuple(m(torch.zeros(1, *shape)).shape[1:])
        elif isinstance(m, nn.Flatten):
            nodes[key] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            shape = (int(np.prod(shape)),)
        elif isinstance(m, nn.Linear):
            nodes[key] = nir.Affine(weight=m.weight.detach().double().numpy(), bias=m.bias.detach().double().numpy())
            shape = (m.out_features,)
        else:
            raise ExportError(f"NIR cannot express {name} ({type(m).__name__}); supported: "
                              f"{', '.join(t.__name__ for t in SUPPORTED)}")
        order.append(key)
        i += 1
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    order.append("output")
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), type_check=False)


def export_checkpoint_nir(checkpoint, out) -> dict:
    import nir

    ckpt = load_checkpoint(checkpoint)
    model, _ = model_from_checkpoint(checkpoint, ckpt)
    g = ckpt["geometry"]
    graph = to_nir(model, (g["in_chans"], g["img_size"], g["img_size"]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(out), graph)
    return {"path": str(out), "nodes": len(graph.nodes)}
