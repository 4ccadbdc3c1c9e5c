"""Fused multi-step LIF: the whole time loop forward and one reverse loop backward.

Autograd over a per-step Python loop records ~10 nodes per step and keeps every
intermediate alive; this function records one node, stores only the pre-spike membrane
potential ``h[t]`` and the spikes, and computes the exact same gradients by hand.

Dynamics (SpikingJelly ``LIFNode`` semantics, ``k = 1/tau``)::

    charge   h[t] = a * v[t-1] + b * x[t] + c
             decay_input:      a = 1-k, b = k, c = k * v_reset
             not decay_input:  a = 1-k, b = 1, c = k * v_reset      (c = 0 for soft reset)
    fire     s[t] = H(h[t] - v_th)                 (surrogate gradient in backward)
    reset    hard: v[t] = s * v_reset + (1 - s) * h[t]
             soft: v[t] = h[t] - s * v_th
             with ``detach_reset`` the ``s`` in the reset carries no gradient.

Backward, with ``g_v`` the gradient arriving at ``v[t]`` from step t+1::

    sg     = surrogate'(h[t] - v_th)
    dv/dh  = hard: (1 - s) + [not detach] (v_reset - h) * sg
             soft: 1       - [not detach] v_th * sg
    g_h    = g_s[t] * sg + g_v * dv/dh
    g_x[t] = b * g_h ;  g_v <- a * g_h ;  g_k += sum(g_h * dh/dk)
"""
from __future__ import annotations

import torch

from .surrogate import SurrogateFunction


def _reset(h: torch.Tensor, s: torch.Tensor, v_threshold: float, v_reset: float | None) -> torch.Tensor:
    if v_reset is None:
        return h - s * v_threshold
    return torch.where(s.bool(), v_reset, h)


def _sum_to_shape(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Reduce a broadcast gradient back to ``shape`` (for a scalar or broadcast initial v)."""
    if g.shape == shape:
        return g
    lead = g.dim() - len(shape)
    g = g.sum(dim=tuple(range(lead))) if lead > 0 else g
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(dim=dims, keepdim=True) if dims else g


class MultiStepLIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, v0, k, v_threshold, v_reset, decay_input, detach_reset, surrogate):
        kf = float(k)
        a = 1.0 - kf
        b = kf if decay_input else 1.0
        c = kf * v_reset if v_reset is not None else 0.0
        h_seq = torch.empty_like(x_seq)
        s_seq = torch.empty_like(x_seq)
        v = v0.expand_as(x_seq[0])
        for t in range(x_seq.shape[0]):
            h = h_seq[t]
            torch.mul(v, a, out=h)
            h.add_(x_seq[t], alpha=b)
            if c != 0.0:
                h.add_(c)
            s = s_seq[t]
            s.copy_(h >= v_threshold)
            v = _reset(h, s, v_threshold, v_reset)
        ctx.save_for_backward(h_seq, s_seq, v0, x_seq if isinstance(k, torch.Tensor) and k.requires_grad else None)
        ctx.params = (kf, v_threshold, v_reset, decay_input, detach_reset, surrogate)
        ctx.k_is_tensor = isinstance(k, torch.Tensor)
        return s_seq, v

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v_last):
        h_seq, s_seq, v0, x_seq = ctx.saved_tensors
        kf, v_th, v_reset, decay_input, detach_reset, surrogate = ctx.params
        a = 1.0 - kf
        b = kf if decay_input else 1.0
        vr = 0.0 if v_reset is None else v_reset
        need_k = x_seq is not None
        T = h_seq.shape[0]
        grad_x = torch.empty_like(h_seq)
        g_v = grad_v_last if grad_v_last is not None else torch.zeros_like(h_seq[0])
        grad_k = torch.zeros((), dtype=h_seq.dtype, device=h_seq.device) if need_k else None
        for t in range(T - 1, -1, -1):
            h, s = h_seq[t], s_seq[t]
            sg = surrogate.derivative(h - v_th)
            if v_reset is None:
                dv_dh = 1.0 if detach_reset else 1.0 - v_th * sg
            else:
                dv_dh = 1.0 - s
                if not detach_reset:
                    dv_dh = dv_dh + (v_reset - h) * sg
            g_h = g_v * dv_dh
            if grad_s_seq is not None:
                g_h = g_h + grad_s_seq[t] * sg
            torch.mul(g_h, b, out=grad_x[t])
            if need_k:
                v_prev = v0 if t == 0 else _reset(h_seq[t - 1], s_seq[t - 1], v_th, v_reset)
                dh_dk = (x_seq[t] - (v_prev - vr)) if decay_input else -(v_prev - vr)
                grad_k = grad_k + (g_h * dh_dk).sum()
            g_v = g_h * a
        grad_v0 = _sum_to_shape(g_v, v0.shape) if ctx.needs_input_grad[1] else None
        if ctx.k_is_tensor and grad_k is not None:
            grad_k = grad_k.reshape(()).to(h_seq.dtype)
        return grad_x, grad_v0, grad_k, None, None, None, None, None


def multistep_lif(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    k: "float | torch.Tensor",
    v_threshold: float,
    v_reset: "float | None",
    decay_input: bool,
    detach_reset: bool,
    surrogate: SurrogateFunction,
) -> "tuple[torch.Tensor, torch.Tensor]":
    """Run ``T = x_seq.shape[0]`` LIF steps; returns ``(spikes [T, ...], v after the last step)``.

    ``k = 1/tau`` may be a float or a 0-d tensor that requires grad (parametric LIF).
    """
    if not torch.is_tensor(v0):
        v0 = torch.full((), float(v0), dtype=x_seq.dtype, device=x_seq.device)
    return MultiStepLIFFunction.apply(x_seq, v0, k, v_threshold, v_reset, decay_input, detach_reset, surrogate)
