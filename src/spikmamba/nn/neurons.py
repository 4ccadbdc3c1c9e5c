"""Spiking neurons with SpikingJelly's ``LIFNode`` semantics.

A neuron is a stateful module. ``step_mode='s'`` takes one time step ``[B, ...]`` and keeps
the membrane potential ``v`` between calls; ``step_mode='m'`` takes a whole sequence
``[T, B, ...]`` (time leading) and runs the fused kernel of :mod:`.lif_kernel`
(``backend='fused'``) or a readable per-step loop (``backend='loop'``, the test reference).
Call :func:`spikmamba.nn.functional.reset_net` between independent samples.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from .export_mode import exporting
from .lif_kernel import multistep_lif_plain
from .lif_op import multistep_lif
from .surrogate import SurrogateFunction, get_surrogate

BACKENDS = ("fused", "loop")


class BaseNode(nn.Module):
    """Integrate-fire-reset skeleton; subclasses define :meth:`decay` (``k = 1/tau``)."""

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: str | SurrogateFunction | None = None,
        detach_reset: bool = False,
        decay_input: bool = True,
        step_mode: str = "s",
        backend: str = "fused",
        store_v_seq: bool = False,
    ):
        super().__init__()
        if step_mode not in ("s", "m"):
            raise InputError(f"step_mode must be 's' (single step) or 'm' (multi step), got {step_mode!r}")
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if v_reset is not None and not v_reset < v_threshold:
            raise InputError(f"v_reset ({v_reset}) must be below v_threshold ({v_threshold})")
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate_function = get_surrogate(surrogate_function)
        self.detach_reset = bool(detach_reset)
        self.decay_input = bool(decay_input)
        self.step_mode = step_mode
        self.backend = backend
        self.store_v_seq = store_v_seq
        self.v: float | torch.Tensor = self._v_init
        self.v_seq: torch.Tensor | None = None
        # firing-rate monitor (off by default: costs one reduction per call)
        self.monitor = False
        self.spike_count = 0.0
        self.neuron_count = 0

    @property
    def _v_init(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def decay(self) -> float | torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the membrane state (and the firing-rate counts)."""
        self.v = self._v_init
        self.v_seq = None
        self.spike_count = 0.0
        self.neuron_count = 0

    @property
    def firing_rate(self) -> float:
        """Mean spikes per neuron per time step since the last reset (needs ``monitor=True``)."""
        return self.spike_count / self.neuron_count if self.neuron_count else float("nan")

    # ---- one step, plain autograd (also the reference for the fused kernel) ----
    def _charge(self, x: torch.Tensor, v, k) -> torch.Tensor:
        vr = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            return v + (x - (v - vr)) * k
        return v - (v - vr) * k + x

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.decay()
        h = self._charge(x, self.v, k)
        spike = self.surrogate_function(h - self.v_threshold)
        s_r = spike.detach() if self.detach_reset else spike
        if self.v_reset is None:
            self.v = h - s_r * self.v_threshold
        else:
            self.v = s_r * self.v_reset + (1.0 - s_r) * h
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2 or x_seq.shape[0] == 0:
            raise InputError(
                f"multi-step input must be [T, B, ...] with T >= 1, got shape {tuple(x_seq.shape)}"
            )
        if exporting() and not self.store_v_seq and not torch.is_tensor(self.decay()):
            spikes, self.v = multistep_lif_plain(x_seq, self.v, self.decay(), self.v_threshold, self.v_reset,
                                                 self.decay_input)
            return spikes
        if self.backend == "loop" or self.store_v_seq or exporting():
            out, vs = [], []
            for t in range(x_seq.shape[0]):
                out.append(self.single_step_forward(x_seq[t]))
                vs.append(self.v)
            if self.store_v_seq:
                self.v_seq = torch.stack(vs)
            return torch.stack(out)
        v0 = self.v
        if torch.is_tensor(v0) and v0.shape != x_seq.shape[1:]:
            raise InputError(
                f"input step shape {tuple(x_seq.shape[1:])} does not match the stored membrane "
                f"shape {tuple(v0.shape)}; call reset_net(model) between batches"
            )
        spikes, self.v = multistep_lif(
            x_seq, v0 if torch.is_tensor(v0) else float(v0), self.decay(), self.v_threshold,
            self.v_reset, self.decay_input, self.detach_reset, self.surrogate_function,
        )
        return spikes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            if torch.is_tensor(self.v) and self.v.shape != x.shape:
                raise InputError(
                    f"input shape {tuple(x.shape)} does not match the stored membrane shape "
                    f"{tuple(self.v.shape)}; call reset_net(model) between batches"
                )
            out = self.single_step_forward(x)
        else:
            out = self.multi_step_forward(x)
        if self.monitor:
            with torch.no_grad():
                self.spike_count += float(out.sum())
                self.neuron_count += out.numel()
        return out

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, detach_reset={self.detach_reset}, "
            f"decay_input={self.decay_input}, step_mode={self.step_mode}, backend={self.backend}"
        )


class LIFNode(BaseNode):
    """Leaky integrate-and-fire neuron with a fixed membrane time constant ``tau`` (> 1)."""

    def __init__(self, tau: float = 2.0, **kwargs):
        if not tau > 1.0:
            raise InputError(f"tau must be > 1 (k = 1/tau must lie in (0, 1)), got {tau}")
        super().__init__(**kwargs)
        self.tau = float(tau)

    def decay(self) -> float:
        return 1.0 / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}, " + super().extra_repr()


class ParametricLIFNode(BaseNode):
    """LIF with a learnable time constant: ``1/tau = sigmoid(w)`` (Fang et al., ICCV 2021)."""

    def __init__(self, init_tau: float = 2.0, **kwargs):
        if not init_tau > 1.0:
            raise InputError(f"init_tau must be > 1, got {init_tau}")
        super().__init__(**kwargs)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    def decay(self) -> torch.Tensor:
        return torch.sigmoid(self.w)

    @property
    def tau(self) -> float:
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4f}, " + super().extra_repr()


def build_neuron(spiking: bool = True, kind: str = "lif", **kwargs) -> nn.Module:
    """A multi-step neuron, or ``nn.Identity`` for the non-spiking (``nosnn``) ablation."""
    if not spiking:
        return nn.Identity()
    kwargs.setdefault("step_mode", "m")
    if kind == "lif":
        return LIFNode(**kwargs)
    if kind == "plif":
        kwargs["init_tau"] = kwargs.pop("tau", kwargs.get("init_tau", 2.0))
        return ParametricLIFNode(**kwargs)
    raise InputError(f"unknown neuron kind {kind!r}; expected 'lif' or 'plif'")
