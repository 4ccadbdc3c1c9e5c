"""First-order linear recurrence ``h[t] = a[t] * h[t-1] + b[t]`` (``h[-1] = 0``) along dim 0.

Why chunked: a plain loop needs ``L`` tiny sequential steps, dominated by per-op overhead on
CPU; a log-space cumulative-sum trick divides by products of decays that underflow. Here the
sequence is cut into ``nc`` chunks of ``K ~ sqrt(L)`` steps:

1. local scans inside every chunk at once (``K`` steps over ``[nc, ...]`` tensors),
2. the true state at each chunk end by a short carry loop (``nc`` steps),
3. ``h = h_local + cumprod(a within chunk) * state entering the chunk``.

Only products of decays in (0, 1] and sums appear, so it is as stable as the plain loop,
with ``K + nc ~ 2 sqrt(L)`` sequential steps instead of ``L``.

The backward pass is the same recurrence run backwards in time (the adjoint):
``lam[t] = g[t] + a[t+1] * lam[t+1]``, ``grad_b = lam``, ``grad_a[t] = lam[t] * h[t-1]``.
"""
from __future__ import annotations

import math

import torch

from ...errors import InputError


def _chunk_size(L: int) -> int:
    """About sqrt(L), at least 8; a divisor of L when one lies within 2x of sqrt(L), so the
    sequence needs no padding (padding copies both inputs)."""
    root = max(8, int(math.isqrt(max(L, 1))))
    for k in sorted(range(max(8, root // 2), 2 * root + 1), key=lambda k: abs(k - root)):
        if L % k == 0:
            return k
    return root


def scan_sequential(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Reference: the recurrence as written (no autograd tricks)."""
    h = torch.empty_like(b)
    prev = torch.zeros_like(b[0])
    for t in range(b.shape[0]):
        prev = a[t] * prev + b[t]
        h[t] = prev
    return h


def _scan_chunked(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Forward recurrence along dim 0 without autograd; returns a new tensor."""
    L = b.shape[0]
    K = _chunk_size(L)
    if L <= K:
        h = b.clone()
        for t in range(1, L):
            h[t].addcmul_(a[t], h[t - 1])
        return h
    nc = -(-L // K)
    pad = nc * K - L
    if pad:
        a = torch.cat([a, a.new_ones((pad,) + a.shape[1:])])
        b = torch.cat([b, b.new_zeros((pad,) + b.shape[1:])])
    rest = b.shape[1:]
    # [K, nc, ...]: step k of every chunk is one contiguous slice. Always copies (``contiguous``
    # may return a view, e.g. of an empty tensor, and the in-place updates below must never
    # touch the caller's a or b, which autograd may have saved).
    ac = a.reshape((nc, K) + rest).transpose(0, 1).clone(memory_format=torch.contiguous_format)
    h = b.reshape((nc, K) + rest).transpose(0, 1).clone(memory_format=torch.contiguous_format)
    for k in range(1, K):
        h[k].addcmul_(ac[k], h[k - 1])
    torch.cumprod(ac, dim=0, out=ac)  # decay from the chunk start through step k
    # state at the end of each chunk, carried across chunks
    ends = h[K - 1].clone()
    for c in range(1, nc):
        ends[c].addcmul_(ac[K - 1, c], ends[c - 1])
    h[:, 1:].addcmul_(ac[:, 1:], ends[:-1].unsqueeze(0))
    h = h.transpose(0, 1).reshape((nc * K,) + rest)
    return h[:L] if pad else h


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = _scan_chunked(a, b)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        a, h = ctx.saved_tensors
        # adjoint recurrence backwards in time with decay a[t+1]
        a_next = torch.cat([a[1:], a.new_zeros((1,) + a.shape[1:])])
        lam = _scan_chunked(a_next.flip(0), g.flip(0)).flip(0)
        grad_a = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.empty_like(lam)
            grad_a[0].zero_()
            torch.mul(lam[1:], h[:-1], out=grad_a[1:])
        return grad_a, lam


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h[t] = a[t] * h[t-1] + b[t]`` along dim 0, differentiable in ``a`` and ``b``."""
    if a.shape != b.shape:
        raise InputError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if b.shape[0] == 0:
        raise InputError("linear_scan needs a sequence length L >= 1 along dim 0")
    return _LinearScan.apply(a, b)
