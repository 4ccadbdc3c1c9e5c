"""Count the operations a forward pass really performs, layer by layer, with forward hooks.

Counted (multiply-accumulates, MACs, per layer call, summed over every call):

* ``nn.Linear``: ``in_features * out_features`` per input row.
* ``nn.Conv1d/2d/3d``: ``output elements * (C_in / groups) * kernel volume``.
* :class:`~spikmamba.nn.attention.SpikingWindowLinearAttention`, its three matmuls per window
  and head: the normaliser ``q . mean(k)`` (``n*hd``), ``k^T v`` (``n*hd^2``) and ``q (k^T v)``
  (``n*hd^2``). The q/k/v projections are Linear layers and are counted by their own hooks.
* Modules with a ``count_macs(inputs, output)`` method count themselves: the selective scans.
  A Mamba direction (``_ScanBranch``): the ``dt`` projection
  (``L*R*D``), the state update ``h = exp(dt*A)*h + dt*B*u`` (3 per state element: ``dt*A``,
  the decay times ``h``, ``dt*B*u``), the readout ``C.h`` (1 per state element) and the skip
  ``D*u`` (``L*D``), i.e. ``B*L*(R*D + 4*D*N + D)``. Its conv1d and x_proj are counted by
  their own hooks. SS2D: per direction, its x and dt projections plus the scan (see
  :meth:`~spikmamba.nn.ssm.ss2d.SS2D.count_macs`).

A layer is **spike-fed** when every element of its input is 0 or 1. For such a layer, only the
nonzero inputs cause work, so its synaptic operations are ``SOPs = input firing rate * MACs``
(accumulates, AC), and its MACs are not counted as energy. The first counted layer of the model
always counts as MAC, because it sees the encoded input, as in the energy estimates of
Spikformer / SpikMamba-style papers. Elementwise operations (norms, activations, neuron
updates) are not counted, as is the convention in those papers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class LayerOps:
    name: str
    kind: str
    calls: int = 0
    macs: float = 0.0           # dense multiply-accumulates this layer would do
    spike_fed: bool = False     # every call saw a 0/1 input (and it is not the first layer)
    nonzero: float = 0.0        # input elements that were nonzero (spike-fed layers)
    elements: float = 0.0       # input elements seen
    order: int = field(default=0, repr=False)

    @property
    def input_rate(self) -> float:
        return self.nonzero / self.elements if self.elements else 0.0

    @property
    def sops(self) -> float:
        """Synaptic (accumulate) operations: only for spike-fed layers."""
        return self.input_rate * self.macs if self.spike_fed else 0.0

    @property
    def dense_macs(self) -> float:
        """MACs that cost multiply-accumulate energy: all of them unless the layer is spike-fed."""
        return 0.0 if self.spike_fed else self.macs


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all()) if x.numel() else True


def _linear_macs(m: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(x.numel() // m.in_features) * m.in_features * m.out_features


def _conv_macs(m: nn.modules.conv._ConvNd, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(y.numel()) * (m.in_channels // m.groups) * math.prod(m.kernel_size)


def _attention_macs(m, x: torch.Tensor, y: torch.Tensor) -> float:
    from ..nn.attention import resolve_window

    T, B, H, W, C = x.shape
    wh, ww = resolve_window(m.window_size, H, W)
    n, hd = wh * ww, C // m.num_heads
    windows = T * B * (H // wh) * (W // ww)
    return float(windows * m.num_heads * (n * hd + 2 * n * hd * hd))


class OpCounter:
    """``with OpCounter(model) as ops: model(x)``; then ``ops.layers`` (in call order) holds the counts."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers: dict[str, LayerOps] = {}
        self._handles = []
        self._first = None

    def _rules(self, module: nn.Module):
        from ..nn.attention import SpikingWindowLinearAttention

        if isinstance(module, nn.Linear):
            return "linear", lambda m, i, o: _linear_macs(m, i[0], o), True
        if isinstance(module, nn.modules.conv._ConvNd):
            return "conv", lambda m, i, o: _conv_macs(m, i[0], o), True
        if isinstance(module, SpikingWindowLinearAttention):
            return "attention-matmul", lambda m, i, o: _attention_macs(m, i[0], o), False
        if callable(getattr(module, "count_macs", None)):  # scans declare their own arithmetic
            return "selective-scan", lambda m, i, o: m.count_macs(i, o), False
        return None

    def __enter__(self) -> OpCounter:
        for name, module in self.model.named_modules():
            rule = self._rules(module)
            if rule is None:
                continue
            kind, macs_fn, may_be_spike_fed = rule
            self._handles.append(
                module.register_forward_hook(self._hook(name or kind, kind, macs_fn, may_be_spike_fed))
            )
        return self

    def _hook(self, name, kind, macs_fn, may_be_spike_fed):
        def hook(module, inputs, output):
            x = inputs[0]
            rec = self.layers.get(name)
            if rec is None:
                rec = self.layers[name] = LayerOps(name, kind, spike_fed=may_be_spike_fed, order=len(self.layers))
                if self._first is None:
                    self._first = name
            binary = may_be_spike_fed and name != self._first and _is_binary(x)
            rec.spike_fed = rec.spike_fed and binary
            rec.calls += 1
            rec.macs += macs_fn(module, inputs, output)
            rec.elements += x.numel()
            rec.nonzero += float(torch.count_nonzero(x)) if binary else float(x.numel())
        return hook

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
