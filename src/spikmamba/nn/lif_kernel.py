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

from .lif_math import charge_coefficients, sum_to_shape

#: elements of one block of steps in the backward pass (a few temporaries of this size stay in cache)
LIF_BLOCK_ELEMENTS = 1 << 16


def _reset(h: torch.Tensor, s: torch.Tensor, v_threshold: float, v_reset: float | None) -> torch.Tensor:
    if v_reset is None:
        return h - s * v_threshold
    return torch.where(s.bool(), v_reset, h)


def lif_forward(x_seq, v0, k: float, v_threshold, v_reset, decay_input):
    """``(spikes, v after the last step, h)``: h, the charged membrane of every step, is what
    :func:`lif_backward` needs with the spikes."""
    a, b, c = charge_coefficients(k, v_reset, decay_input)
    # the input part of every step's charge at once, then 3 operations per step: the time
    # loop is the only part that cannot be vectorised, so it does as little as possible
    h_seq = torch.mul(x_seq, b) if b != 1.0 else x_seq.clone()
    if c != 0.0:
        h_seq.add_(c)
    s_seq = torch.empty_like(x_seq)
    v = torch.empty_like(x_seq[0])
    v_prev = v0
    v_reset_t = None if not v_reset else torch.tensor(v_reset, dtype=x_seq.dtype, device=x_seq.device)
    for t in range(x_seq.shape[0]):
        h = h_seq[t].add_(v_prev, alpha=a)                   # charge
        s = torch.ge(h, v_threshold, out=s_seq[t])           # fire
        if v_reset is None:                                  # soft reset: h - s * v_th
            torch.sub(h, s, alpha=v_threshold, out=v)
        elif v_reset_t is None:                              # hard reset to 0: h - s * h, exact
            torch.addcmul(h, s, h, value=-1.0, out=v)
        else:                                                # hard reset to v_reset
            torch.where(s.bool(), v_reset_t, h, out=v)
        v_prev = v
    return s_seq, v, h_seq


def lif_backward(grad_s_seq, grad_v_last, h_seq, s_seq, v0, x_seq, k: float, v_th, v_reset, decay_input,
                 detach_reset, surrogate):
    """``(grad x, grad v0, grad k)``; ``x_seq`` is given only when k's gradient is wanted (else
    the third is None). ``grad_s_seq``/``grad_v_last`` may be None."""
    a, b, _ = charge_coefficients(k, v_reset, decay_input)
    vr = 0.0 if v_reset is None else v_reset
    T = h_seq.shape[0]
    # g_h[t] = grad_s[t] * sg[t] + g_v[t] * dv_dh[t], with g_v[t] = a * g_h[t+1] (grad_v_last at
    # the end). Everything but the recursion is computed for a block of steps at once; blocks
    # are sized to stay in cache, so small layers take few, larger operations and large
    # layers stream each step once, as a per-step loop would.
    g_h = torch.empty_like(h_seq)
    K = max(1, min(T, LIF_BLOCK_ELEMENTS // max(h_seq[0].numel(), 1)))
    carry = grad_v_last  # g_v entering the block's last step
    for start in reversed(range(0, T, K)):
        stop = min(start + K, T)
        h, s, g = h_seq[start:stop], s_seq[start:stop], g_h[start:stop]
        sg = surrogate.derivative(h - v_th)
        if grad_s_seq is not None:
            torch.mul(grad_s_seq[start:stop], sg, out=g)
        else:
            g.zero_()
        if v_reset is None:
            dv_dh = None if detach_reset else sg.mul_(-v_th).add_(1.0)
        else:
            dv_dh = 1.0 - s
            if not detach_reset:
                dv_dh.addcmul_(vr - h, sg)
        if carry is not None:
            g[-1].add_(carry * dv_dh[-1] if dv_dh is not None else carry)
        for t in range(stop - start - 2, -1, -1):  # the recursion: one operation per step
            if dv_dh is None:
                g[t].add_(g[t + 1], alpha=a)
            else:
                g[t].addcmul_(g[t + 1], dv_dh[t], value=a)
        carry = g[0] * a
    grad_v0 = sum_to_shape(carry, v0.shape) if carry is not None else torch.zeros_like(v0)
    grad_k = None
    if x_seq is not None:  # parametric LIF: dh/dk, with v_prev the membrane after the previous step
        v_prev = torch.cat([v0.expand_as(h_seq[0]).unsqueeze(0), _reset(h_seq[:-1], s_seq[:-1], v_th, v_reset)])
        dh_dk = (x_seq - (v_prev - vr)) if decay_input else -(v_prev - vr)
        grad_k = (g_h * dh_dk).sum()
    grad_x = g_h.mul_(b) if b != 1.0 else g_h
    return grad_x, grad_v0, grad_k


class MultiStepLIFFunction(torch.autograd.Function):
    """:func:`lif_forward`/:func:`lif_backward` for any surrogate, including one written by a user
    (the ``spikmamba::multistep_lif`` operator carries a built-in surrogate by name)."""

    @staticmethod
    def forward(ctx, x_seq, v0, k, v_threshold, v_reset, decay_input, detach_reset, surrogate):
        kf = float(k)
        s_seq, v, h_seq = lif_forward(x_seq, v0, kf, v_threshold, v_reset, decay_input)
        ctx.save_for_backward(h_seq, s_seq, v0, x_seq if isinstance(k, torch.Tensor) and k.requires_grad else None)
        ctx.params = (kf, v_threshold, v_reset, decay_input, detach_reset, surrogate)
        ctx.k_is_tensor = isinstance(k, torch.Tensor)
        return s_seq, v

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v_last):
        h_seq, s_seq, v0, x_seq = ctx.saved_tensors
        grad_x, grad_v0, grad_k = lif_backward(grad_s_seq, grad_v_last, h_seq, s_seq, v0, x_seq, *ctx.params)
        if grad_k is not None and ctx.k_is_tensor:
            grad_k = grad_k.reshape(()).to(h_seq.dtype)
        return grad_x, grad_v0 if ctx.needs_input_grad[1] else None, grad_k, None, None, None, None, None


def multistep_lif_plain(x_seq: torch.Tensor, v0, k: float, v_threshold: float, v_reset: float | None,
                        decay_input: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward of :class:`MultiStepLIFFunction` in plain, out-of-place operations, for exporters:
    the input part of every charge at once, then three operations per step. Same spikes."""
    a, b, c = charge_coefficients(k, v_reset, decay_input)
    bx = x_seq * b
    if c != 0.0:
        bx = bx + c
    # a float start stays a float: a tensor made by full_like gets a shape an exporter may bake
    # in as a constant (behind the adaptive sampler the batch size was baked into the graph)
    v = v0 if torch.is_tensor(v0) else float(v0)
    spikes = []
    for t in range(x_seq.shape[0]):
        h = bx[t] + v * a
        fired = h >= v_threshold
        s = fired.to(x_seq.dtype)
        v = h - s * v_threshold if v_reset is None else h.masked_fill(fired, v_reset)
        spikes.append(s)
    return torch.stack(spikes), v
