"""The multi-step LIF as two Triton kernels: one walk over T forward, one reverse walk backward.

Same dynamics, surrogates and gradients as :class:`~.lif_kernel.MultiStepLIFFunction` (its
docstring has the equations). Each program owns ``BLOCK`` neurons and keeps their membrane (or,
backward, the gradient reaching it) in registers for all T steps, so a step costs one read and
one write per tensor, not the dozen kernel launches of a per-step loop on the GPU.

Forward reads ``x`` and writes the spikes, and when a gradient is wanted the charged potential
``h`` (float32). Backward reads ``h`` and the spike gradient and writes the input gradient: the
spikes are ``h >= v_th`` again, and the membrane after a step is ``h`` reset by its spike. That is
three tensors of ``[T, neurons]`` each way, against the floor of two (read ``x``, write ``s``; read
``g_s``, write ``g_x``).

Runs on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (tests).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .lif_math import charge_coefficients, sum_to_shape

#: the surrogates the kernels know, by ``SurrogateFunction.kernel_name``
SURROGATE_IDS = {"sigmoid": 0, "atan": 1, "rectangular": 2}
#: neurons and warps per program: defaults, not yet tuned on a GPU (benchmarks/gpu_check.py sweeps them)
BLOCK = 256
NUM_WARPS = 4


@triton.jit
def _surrogate(xv, alpha, KIND: tl.constexpr):
    if KIND == 0:
        sg = tl.sigmoid(alpha * xv)
        return alpha * sg * (1.0 - sg)
    elif KIND == 1:
        w = 1.5707963267948966 * alpha * xv
        return (alpha * 0.5) / (1.0 + w * w)
    else:
        return tl.where(tl.abs(xv) < alpha * 0.5, 1.0 / alpha, 0.0)


@triton.jit
def _lif_fwd(x_ptr, v0_ptr, s_ptr, h_ptr, v_ptr, T, M, a, bcoef, c, v_th, v_reset,
             HARD: tl.constexpr, STORE_H: tl.constexpr, BLOCK: tl.constexpr):
    # the scalars in the kernel's own dtype: under torch.compile they arrived as fp64, and the
    # membrane carried through the loop became fp64 (a compile error: issue 29)
    a, bcoef, c = tl.cast(a, tl.float32), tl.cast(bcoef, tl.float32), tl.cast(c, tl.float32)
    v_th, v_reset = tl.cast(v_th, tl.float32), tl.cast(v_reset, tl.float32)
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # t * M + i may pass 2**31
    m = i < M
    v = tl.load(v0_ptr + i, mask=m, other=0.0).to(tl.float32)
    for t in range(0, T):
        h = a * v + bcoef * tl.load(x_ptr + t * M + i, mask=m, other=0.0).to(tl.float32) + c
        fired = h >= v_th
        tl.store(s_ptr + t * M + i, fired.to(tl.float32).to(s_ptr.dtype.element_ty), mask=m)
        if STORE_H:
            tl.store(h_ptr + t * M + i, h, mask=m)
        if HARD:
            v = tl.where(fired, v_reset, h)
        else:
            v = tl.where(fired, h - v_th, h)
    tl.store(v_ptr + i, v.to(v_ptr.dtype.element_ty), mask=m)


@triton.jit
def _lif_bwd(h_ptr, gs_ptr, gv_ptr, x_ptr, v0_ptr, gx_ptr, gv0_ptr, gk_ptr, T, M, a, bcoef, v_th, v_reset, alpha,
             HARD: tl.constexpr, DETACH: tl.constexpr, HAS_GS: tl.constexpr, HAS_GV: tl.constexpr,
             GRAD_K: tl.constexpr, DECAY_INPUT: tl.constexpr, KIND: tl.constexpr, BLOCK: tl.constexpr):
    a, bcoef = tl.cast(a, tl.float32), tl.cast(bcoef, tl.float32)  # the kernel's dtype, whatever the caller passed
    v_th, v_reset, alpha = tl.cast(v_th, tl.float32), tl.cast(v_reset, tl.float32), tl.cast(alpha, tl.float32)
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # t * M + i may pass 2**31
    m = i < M
    carry = tl.zeros([BLOCK], tl.float32)
    if HAS_GV:
        carry = tl.load(gv_ptr + i, mask=m, other=0.0).to(tl.float32)
    gk = tl.zeros([BLOCK], tl.float32)
    vr = 0.0
    if HARD:
        vr = v_reset
    for j in range(0, T):
        t = T - 1 - j
        h = tl.load(h_ptr + t * M + i, mask=m, other=0.0)
        fired = h >= v_th
        s = fired.to(tl.float32)
        sg = _surrogate(h - v_th, alpha, KIND)
        if HARD:
            dv_dh = 1.0 - s
            if not DETACH:
                dv_dh += (vr - h) * sg
        else:
            dv_dh = tl.full([BLOCK], 1.0, tl.float32)
            if not DETACH:
                dv_dh -= v_th * sg
        g = carry * dv_dh
        if HAS_GS:
            g += tl.load(gs_ptr + t * M + i, mask=m, other=0.0).to(tl.float32) * sg
        tl.store(gx_ptr + t * M + i, (bcoef * g).to(gx_ptr.dtype.element_ty), mask=m)
        if GRAD_K:  # dh/dk with the membrane after the previous step
            hp = tl.load(h_ptr + (t - 1) * M + i, mask=m & (t > 0), other=0.0)
            if HARD:
                vp = tl.where(hp >= v_th, v_reset, hp)
            else:
                vp = tl.where(hp >= v_th, hp - v_th, hp)
            vp = tl.where(t > 0, vp, tl.load(v0_ptr + i, mask=m, other=0.0).to(tl.float32))
            if DECAY_INPUT:
                gk += g * (tl.load(x_ptr + t * M + i, mask=m, other=0.0).to(tl.float32) - (vp - vr))
            else:
                gk -= g * (vp - vr)
        carry = a * g
    tl.store(gv0_ptr + i, carry, mask=m)
    if GRAD_K:
        tl.store(gk_ptr + i, gk, mask=m)


def saved_shape(x_seq: torch.Tensor, keep: bool):
    """Shape of the charged membrane kept for the backward (a placeholder when none is)."""
    return (x_seq.shape[0], math.prod(x_seq.shape[1:])) if keep else (1,)


def forward(x_seq, v0, k: float, v_threshold, v_reset, decay_input, keep: bool):
    """``(spikes, v after the last step, h)``; ``h`` (float32 ``[T, neurons]``) only when ``keep``."""
    a, bcoef, c = charge_coefficients(k, v_reset, decay_input)
    T = x_seq.shape[0]
    x = x_seq.contiguous().reshape(T, -1)
    M = x.shape[1]
    v0_full = v0.to(x.dtype).expand(x_seq.shape[1:]).contiguous().reshape(-1)
    s = torch.empty_like(x)
    h = torch.empty(saved_shape(x_seq, keep), dtype=torch.float32, device=x.device)
    v = torch.empty(M, dtype=x.dtype, device=x.device)
    _lif_fwd[(triton.cdiv(M, BLOCK),)](x, v0_full, s, h, v, T, M, a, bcoef, c, float(v_threshold),
                                      float(v_reset or 0.0), HARD=v_reset is not None, STORE_H=keep,
                                      BLOCK=BLOCK, num_warps=NUM_WARPS)
    return s.reshape(x_seq.shape), v.reshape(x_seq.shape[1:]), h


def backward(grad_s, grad_v, h, s, v0, x_seq, k: float, v_threshold, v_reset, decay_input, detach_reset,
             surrogate: str, alpha: float):
    """``(grad x, grad v0, grad k)`` from the kept ``h`` (``s``: the spikes, for their shape and
    dtype); ``x_seq`` only when k's gradient is wanted (else the third is None)."""
    a, bcoef, _ = charge_coefficients(k, v_reset, decay_input)
    T, M = h.shape
    grad_k = x_seq is not None
    # the starting membrane, per neuron: read by the kernel only for k's gradient
    v0_full = v0.to(s.dtype).expand(s.shape[1:]).contiguous().reshape(-1) if grad_k else h
    gx = torch.empty((T, M), dtype=s.dtype, device=h.device)
    gv0 = torch.empty(M, dtype=torch.float32, device=h.device)
    gk = torch.empty(M if grad_k else 1, dtype=torch.float32, device=h.device)
    gs = grad_s.contiguous().reshape(T, M) if grad_s is not None else h
    gv = grad_v.contiguous().reshape(M) if grad_v is not None else h
    x = x_seq.contiguous().reshape(T, M) if grad_k else h
    _lif_bwd[(triton.cdiv(M, BLOCK),)](h, gs, gv, x, v0_full, gx, gv0, gk, T, M, a, bcoef, float(v_threshold),
                                      float(v_reset or 0.0), float(alpha), HARD=v_reset is not None,
                                      DETACH=bool(detach_reset), HAS_GS=grad_s is not None, HAS_GV=grad_v is not None,
                                      GRAD_K=grad_k, DECAY_INPUT=bool(decay_input), KIND=SURROGATE_IDS[surrogate],
                                      BLOCK=BLOCK, num_warps=NUM_WARPS)
    grad_v0 = sum_to_shape(gv0.reshape(s.shape[1:]), v0.shape).to(v0.dtype)
    return gx.reshape(s.shape), grad_v0, gk.sum() if grad_k else None
