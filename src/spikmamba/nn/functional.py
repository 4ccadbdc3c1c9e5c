"""Whole-network helpers for stateful neurons: reset, step mode, firing-rate monitoring."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from ..errors import InputError
from .neurons import BaseNode


def spiking_layers(model: nn.Module) -> Iterator[tuple[str, BaseNode]]:
    """Yield ``(qualified_name, neuron)`` for every spiking neuron in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, BaseNode):
            yield name, module


def reset_net(model: nn.Module) -> None:
    """Reset every neuron, and every module that declares ``stateful = True`` and has ``reset()``."""
    for module in model.modules():
        if isinstance(module, BaseNode) or getattr(module, "stateful", False):
            module.reset()


def set_step_mode(model: nn.Module, step_mode: str) -> None:
    for _, neuron in spiking_layers(model):
        if step_mode not in ("s", "m"):
            raise InputError(f"step_mode must be 's' or 'm', got {step_mode!r}")
        neuron.step_mode = step_mode


@contextlib.contextmanager
def record_firing_rates(model: nn.Module) -> Iterator[dict[str, float]]:
    """Count spikes while the block runs; the yielded dict is filled with rates on exit.

    ::

        with record_firing_rates(model) as rates:
            model(x)
        rates  # {'blocks.0.attn.q_lif': 0.12, ...}  mean spikes per neuron per step
    """
    layers = list(spiking_layers(model))
    previous = {name: n.monitor for name, n in layers}
    for _, n in layers:
        n.monitor = True
        n.spike_count, n.neuron_count = 0.0, 0
    rates: dict[str, float] = {}
    try:
        yield rates
    finally:
        for name, n in layers:
            rates[name] = n.firing_rate
            n.monitor = previous[name]
