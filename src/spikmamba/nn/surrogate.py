"""Surrogate gradients: a Heaviside step forward, a smooth derivative backward.

Spikes must be exactly 0/1 in the forward pass, but the step function has no useful gradient,
so each surrogate supplies a pseudo-derivative. Names and defaults follow SpikingJelly
(``surrogate.Sigmoid(alpha=4)``, ``surrogate.ATan(alpha=2)``) so models port by renaming.

Each surrogate exposes ``derivative(x)`` as well as ``forward(x)``: the fused multi-step
neuron kernel calls ``derivative`` directly in its own reverse loop.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from .export_mode import exporting


class _HeavisideWithSurrogate(torch.autograd.Function):
    """Forward: ``(x >= 0)`` as the input dtype. Backward: ``grad * surrogate.derivative(x)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: SurrogateFunction) -> torch.Tensor:
        if x.requires_grad:
            ctx.save_for_backward(x)
            ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.derivative(x), None


class SurrogateFunction(nn.Module):
    """Base class: subclasses implement :meth:`derivative`."""

    def __init__(self, alpha: float):
        super().__init__()
        if not alpha > 0:
            raise InputError(f"surrogate alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if exporting():  # an exporter records the forward alone (see nn/export_mode.py)
            return (x >= 0).to(x.dtype)
        return _HeavisideWithSurrogate.apply(x, self)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    @property
    def kernel_name(self) -> str | None:
        """The name the fused kernels know this surrogate by; None for any other class (a subclass
        too: it may have its own derivative), which keeps the autograd path."""
        return next((name for name, cls in SURROGATES.items() if type(self) is cls), None)


class Sigmoid(SurrogateFunction):
    """d/dx sigmoid(alpha x) = alpha * s * (1 - s)."""

    def __init__(self, alpha: float = 4.0):
        super().__init__(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1.0 - s)


class ATan(SurrogateFunction):
    """d/dx (1/pi) atan(pi/2 alpha x) + 1/2 = (alpha/2) / (1 + (pi/2 alpha x)^2)."""

    def __init__(self, alpha: float = 2.0):
        super().__init__(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alpha / 2.0) / (1.0 + (math.pi / 2.0 * self.alpha * x).square())


class Rectangular(SurrogateFunction):
    """Box of width ``alpha`` and height ``1/alpha`` centred on the threshold (integrates to 1)."""

    def __init__(self, alpha: float = 1.0):
        super().__init__(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() < self.alpha / 2.0).to(x.dtype) / self.alpha


SURROGATES = {"sigmoid": Sigmoid, "atan": ATan, "rectangular": Rectangular}


def get_surrogate(spec: str | SurrogateFunction | None) -> SurrogateFunction:
    """Build a surrogate from a name (``"sigmoid"``, ``"atan"``, ``"rectangular"``) or pass one through."""
    if spec is None:
        return Sigmoid()
    if isinstance(spec, SurrogateFunction):
        return spec
    try:
        return SURROGATES[str(spec).lower()]()
    except KeyError:
        raise InputError(
            f"unknown surrogate_function {spec!r}; expected one of {sorted(SURROGATES)} "
            "or a SurrogateFunction instance"
        ) from None
