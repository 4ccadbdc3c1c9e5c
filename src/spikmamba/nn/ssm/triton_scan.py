"""The selective scan as Triton kernels: ``mamba_ssm.selective_scan_fn``'s signature and maths,
with nothing to compile at install time (Triton ships with PyTorch's CUDA wheels).

Time is cut into tiles of ``CHUNK`` steps. Each tile is loaded whole (contiguous along time, so
the loads coalesce) and its recurrence ``x[t] = dA[t] * x[t-1] + dB[t] u[t]`` is solved in
registers by a parallel prefix scan (``tl.associative_scan`` over ``(a, b)`` pairs combined as
``(a1 a2, b1 a2 + b2)``), then joined to the state entering the tile: ``x[t] = h[t] + P[t] x_in``
with ``P`` the running product of ``dA``. The delta bias/softplus, ``D`` and the ``z`` gate are
folded in. The forward keeps the state entering each tile, ``L / CHUNK`` of them, never
``[B, D, L, N]``.

Programs split channels (``BLOCK_D`` per program) and, when batch x channel blocks would leave
the GPU short of programs (fewer than ``MIN_PROGRAMS``), time too: the tiles are dealt out in
*segments*, one per program, in three passes (the chunk-parallel form Mamba-2's SSD also uses):

1. each segment is scanned from a zero state, in parallel, keeping only its end:
   ``(prod dA, x_end)``, i.e. ``x_out = a x_in + h`` for the whole segment;
2. one short sequential pass over those pairs gives the state entering each segment;
3. each segment is scanned again from its true entering state, in parallel, writing the output.

A segment longer than one tile walks its tiles in order, so one segment per sequence is the
plain tile-by-tile walk and passes 1-2 are skipped.

The backward walks the tiles from last to first, split into the same kind of segments (pass 1
scans each segment's adjoint from a zero gradient, pass 2 carries the gradient back across the
segments). It recomputes a tile's states from the stored one, and solves the adjoint recurrence
with a reverse prefix scan::

    g_x[t] = C[t] g_y[t] + dA[t+1] g_x[t+1]            (g_x past the end: the last state's gradient)
    g_dt   = sum_n g_x (A (x[t] - dB[t] u[t]) + B[t] u[t])      (dA x[t-1] = x[t] - dB u, no division)
    g_A   += g_x dt (x[t] - dB[t] u[t])     g_B[t] += g_x dt u     g_C[t] += g_y x[t]
    g_u    = dt sum_n g_x B[t] + D g_y

Gradients shared by many programs (A, D, delta_bias, and a time-invariant B or C) are written as
per-program partial sums and added up with ``torch.sum``. A time-varying B or C (the usual, and
the same for every channel of a group) has its gradient added in place with atomics; under
``torch.use_deterministic_algorithms(True)`` each channel block writes its own copy instead, summed
in a fixed order, bit for bit the same from run to run at the cost of memory.

The same kernels run on CPU tensors under ``TRITON_INTERPRET=1`` (set before this module is
imported); that is how the tests compare them with :func:`selective_scan_ref`.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

#: launch shape: steps per tile (also the spacing of the states kept for the backward), channels
#: per program (at most) and warps per program. benchmarks/gpu_check.py sweeps them; on an H200
#: (session 7, fwd+bwd at B, D, L, N = 32, 512, 4096, 16) 4 channels / 2 warps / 32 steps took
#: 14.3 ms against 20.4 ms with 4 warps, the fastest of the nine shapes tried
CHUNK = 32
BLOCK_D_MAX = 4
NUM_WARPS = 2
#: time is split into segments until there are at least this many programs (0: never split).
#: 1024 is about 8 per SM on an H200; a first guess, swept by benchmarks/gpu_check.py
MIN_PROGRAMS = 1024


@triton.jit
def _softplus(v):
    return tl.where(v > 20.0, v, tl.log(1.0 + tl.exp(tl.minimum(v, 20.0))))


@triton.jit
def _linear_combine(a1, b1, a2, b2):
    """Two steps of ``x -> a x + b`` applied one after the other."""
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _dt(dl_ptr, bias, row, t, dm, L, SOFTPLUS: tl.constexpr):
    """``(raw, dt)`` of a tile ([BLOCK_D, CHUNK]); ``dt`` is 0 past the end, where the state stands still."""
    m2 = dm[:, None] & (t < L)[None, :]
    raw = tl.load(dl_ptr + row[:, None] + t[None, :], mask=m2, other=0.0).to(tl.float32) + bias[:, None]
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    return raw, tl.where(m2, dt, 0.0)


@triton.jit
def _tile(u_ptr, dl_ptr, B_ptr, A3, bias, row, Bo, t, dm, nm, L, sBt, sBn, SOFTPLUS: tl.constexpr,
          BLOCK_N: tl.constexpr):
    """A tile's inputs: ``u``, the raw and the final ``dt`` ([BLOCK_D, CHUNK], 0 past the end),
    ``B`` and the discretised ``dA``, ``dB u`` ([BLOCK_D, CHUNK, BLOCK_N])."""
    tm = t < L
    m2 = dm[:, None] & tm[None, :]
    m3 = m2[:, :, None] & nm[None, None, :]
    u = tl.load(u_ptr + row[:, None] + t[None, :], mask=m2, other=0.0).to(tl.float32)
    raw, dt = _dt(dl_ptr, bias, row, t, dm, L, SOFTPLUS)  # past the end: dA = 1 and dB u = 0
    B3 = tl.load(B_ptr + Bo[:, None, None] + t[None, :, None] * sBt + tl.arange(0, BLOCK_N)[None, None, :] * sBn,
                 mask=m3, other=0.0).to(tl.float32)
    dA = tl.exp(dt[:, :, None] * A3)
    bx = (dt * u)[:, :, None] * B3
    return u, raw, dt, B3, dA, bx, m2, m3


@triton.jit
def _program_setup(A_ptr, D_ptr, bias_ptr, b, Dm, L, N, dpg, sBb, sBg, sBd, sBn, sCb, sCg, sCd, sCn,
                   HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """What both kernels start from: this program's channels and states, their masks, A
    ([BLOCK_D, 1, BLOCK_N]), D and the delta bias (float32), where B and C of step 0 are, and where
    each channel's row of u starts."""
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dm, nm = d < Dm, n < N
    g = d // dpg
    A3 = tl.load(A_ptr + d[:, None, None] * N + n[None, None, :], mask=dm[:, None, None] & nm[None, None, :],
                 other=0.0).to(tl.float32)
    Dv = tl.zeros([BLOCK_D], tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=dm, other=0.0).to(tl.float32)
    bias = tl.zeros([BLOCK_D], tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=dm, other=0.0).to(tl.float32)
    Bo = b * sBb + g * sBg + d * sBd
    Co = b * sCb + g * sCg + d * sCd
    row = (b * Dm + d) * L
    return d, n, dm, nm, A3, Dv, bias, Bo, Co, row


@triton.jit
def _segment(n_chunks, tps):
    """The tiles ``[c0, c1)`` of this program's segment (axis 2 of the grid)."""
    c0 = tl.program_id(2) * tps
    return c0, tl.minimum(c0 + tps, n_chunks)


@triton.jit
def _last(v, tt, CHUNK: tl.constexpr):
    """``v[:, CHUNK - 1, :]`` of a tile."""
    return tl.sum(tl.where((tt == CHUNK - 1)[None, :, None], v, 0.0), axis=1)


@triton.jit
def _first(v, tt):
    """``v[:, 0, :]`` of a tile."""
    return tl.sum(tl.where((tt == 0)[None, :, None], v, 0.0), axis=1)


@triton.jit
def _seg_offsets(b, d, n, Dm, N, n_seg):
    """Where this program's segment's ``[BLOCK_D, BLOCK_N]`` entry is in a ``[B, D, segments, N]`` buffer."""
    return ((b * Dm + d[:, None]) * n_seg + tl.program_id(2)) * N + n[None, :]


@triton.jit
def _store_summary(a_ptr, h_ptr, b, d, n, dm, nm, Dm, N, n_seg, dt_sum, A3, state):
    """A segment's summary: its decay over the whole segment, ``exp(A * sum(delta))``, and ``state``."""
    o = _seg_offsets(b, d, n, Dm, N, n_seg)
    m_dn = dm[:, None] & nm[None, :]
    tl.store(a_ptr + o, tl.exp(dt_sum[:, None] * tl.sum(A3, axis=1)), mask=m_dn)
    tl.store(h_ptr + o, state, mask=m_dn)


@triton.jit
def _scan_fwd_summary(u_ptr, dl_ptr, A_ptr, B_ptr, bias_ptr, a_ptr, h_ptr, Dm, L, N, n_chunks, dpg, tps, n_seg,
                      sBb, sBg, sBd, sBn, sBt, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CHUNK: tl.constexpr,
                      BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Pass 1: each segment from a zero state. Writes ``a = prod dA = exp(A sum dt)`` and the
    state ``h`` it ends in, so that the segment maps an entering state x to ``a x + h``."""
    b = tl.program_id(0).to(tl.int64)
    d, n, dm, nm, A3, _, bias, Bo, _, row = _program_setup(
        A_ptr, A_ptr, bias_ptr, b, Dm, L, N, dpg, sBb, sBg, sBd, sBn, 0, 0, 0, 0, False, HAS_BIAS, BLOCK_D, BLOCK_N)
    tt = tl.arange(0, CHUNK)
    c0, c1 = _segment(n_chunks, tps)
    x = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    dt_sum = tl.zeros([BLOCK_D], tl.float32)
    for c in range(c0, c1):
        t = c * CHUNK + tt
        u, raw, dt, B3, dA, bx, m2, m3 = _tile(u_ptr, dl_ptr, B_ptr, A3, bias, row, Bo, t, dm, nm, L, sBt, sBn,
                                               SOFTPLUS, BLOCK_N)
        P, h = tl.associative_scan((dA, bx), axis=1, combine_fn=_linear_combine)
        x = _last(h + P * x[:, None, :], tt, CHUNK)
        dt_sum += tl.sum(dt, axis=1)
    _store_summary(a_ptr, h_ptr, b, d, n, dm, nm, Dm, N, n_seg, dt_sum, A3, x)


@triton.jit
def _carry(a_ptr, h_ptr, init_ptr, out_ptr, Dm, N, n_seg, HAS_INIT: tl.constexpr, REVERSE: tl.constexpr,
           BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Pass 2: ``out[s] = carry; carry = a[s] carry + h[s]`` over the segments in order (the state
    entering each, forward) or in reverse (the gradient reaching each from the step after it)."""
    b = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    m = (d < Dm)[:, None] & (n < N)[None, :]
    base = (b * Dm + d[:, None]) * n_seg * N + n[None, :]
    x = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    if HAS_INIT:
        x = tl.load(init_ptr + (b * Dm + d[:, None]) * N + n[None, :], mask=m, other=0.0).to(tl.float32)
    for i in range(0, n_seg):
        if REVERSE:
            s = n_seg - 1 - i
        else:
            s = i
        tl.store(out_ptr + base + s * N, x, mask=m)
        x = tl.load(a_ptr + base + s * N, mask=m, other=0.0) * x + tl.load(h_ptr + base + s * N, mask=m, other=0.0)


@triton.jit
def _scan_fwd(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, ck_ptr, seg_ptr,
              Dm, L, N, n_chunks, dpg, tps, n_seg,
              sBb, sBg, sBd, sBn, sBt, sCb, sCg, sCd, sCn, sCt,
              HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
              HAS_SEG: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Pass 3 (the only one with one segment per sequence): the segment's tiles from the state
    entering it; writes the output, the state entering each tile, and the last state."""
    b = tl.program_id(0).to(tl.int64)  # offsets past 2**31 elements stay right
    d, n, dm, nm, A3, Dv, bias, Bo, Co, row = _program_setup(
        A_ptr, D_ptr, bias_ptr, b, Dm, L, N, dpg, sBb, sBg, sBd, sBn, sCb, sCg, sCd, sCn, HAS_D, HAS_BIAS,
        BLOCK_D, BLOCK_N)
    tt = tl.arange(0, CHUNK)
    m_dn = dm[:, None] & nm[None, :]
    ck = ((b * Dm + d[:, None]) * n_chunks) * N + n[None, :]
    c0, c1 = _segment(n_chunks, tps)
    x = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    if HAS_SEG:
        x = tl.load(seg_ptr + _seg_offsets(b, d, n, Dm, N, n_seg), mask=m_dn, other=0.0)
    for c in range(c0, c1):
        tl.store(ck_ptr + ck + c * N, x, mask=m_dn)
        t = c * CHUNK + tt
        u, raw, dt, B3, dA, bx, m2, m3 = _tile(u_ptr, dl_ptr, B_ptr, A3, bias, row, Bo, t, dm, nm, L, sBt, sBn,
                                               SOFTPLUS, BLOCK_N)
        C3 = tl.load(C_ptr + Co[:, None, None] + t[None, :, None] * sCt + n[None, None, :] * sCn, mask=m3,
                     other=0.0).to(tl.float32)
        P, h = tl.associative_scan((dA, bx), axis=1, combine_fn=_linear_combine)
        xs = h + P * x[:, None, :]
        y = tl.sum(xs * C3, axis=2) + Dv[:, None] * u
        if HAS_Z:
            zv = tl.load(z_ptr + row[:, None] + t[None, :], mask=m2, other=0.0).to(tl.float32)
            y = y * zv * tl.sigmoid(zv)
        tl.store(out_ptr + row[:, None] + t[None, :], y.to(out_ptr.dtype.element_ty), mask=m2)
        x = _last(xs, tt, CHUNK)  # the state leaving the tile
    is_last = tl.program_id(2) == n_seg - 1
    tl.store(last_ptr + (b * Dm + d[:, None]) * N + n[None, :], x, mask=m_dn & is_last)


@triton.jit
def _output_grad(gout_ptr, z_ptr, row, t, m2, HAS_Z: tl.constexpr):
    """``(go, z, sigmoid(z), g_y)`` of a tile: the output's gradient and, through the gate, the scan's."""
    go = tl.load(gout_ptr + row[:, None] + t[None, :], mask=m2, other=0.0).to(tl.float32)
    if HAS_Z:
        zv = tl.load(z_ptr + row[:, None] + t[None, :], mask=m2, other=0.0).to(tl.float32)
        sz = tl.sigmoid(zv)
        gy = go * zv * sz
    else:
        zv, sz, gy = go, go, go
    return go, zv, sz, gy


@triton.jit
def _adjoint(dl_ptr, bias, row, t, dm, L, A3, gy, C3, SOFTPLUS: tl.constexpr):
    """A tile's adjoint from a zero gradient after it: ``(dt[t+1], Q, g)`` with ``g_x[t] = g[t] + Q[t] R``
    for the gradient ``R`` reaching the step after the tile (``Q[t]`` the product of ``dA[t+1:]``)."""
    _, dt_next = _dt(dl_ptr, bias, row, t + 1, dm, L, SOFTPLUS)
    dA_next = tl.exp(dt_next[:, :, None] * A3)  # dA[t+1]: 1 past the end
    Q, g = tl.associative_scan((dA_next, gy[:, :, None] * C3), axis=1, combine_fn=_linear_combine, reverse=True)
    return dt_next, Q, g


@triton.jit
def _scan_bwd_summary(dl_ptr, A_ptr, C_ptr, z_ptr, bias_ptr, gout_ptr, a_ptr, h_ptr, Dm, L, N, n_chunks, dpg, tps,
                      n_seg, sCb, sCg, sCd, sCn, sCt, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                      SOFTPLUS: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Backward pass 1: each segment's adjoint from a zero gradient after it. Writes
    ``a = prod dA[t+1]`` over the segment and the gradient ``h`` it leaves at its first step,
    so that a gradient R after the segment reaches its first step as ``a R + h``."""
    b = tl.program_id(0).to(tl.int64)
    d, n, dm, nm, A3, _, bias, _, Co, row = _program_setup(
        A_ptr, A_ptr, bias_ptr, b, Dm, L, N, dpg, 0, 0, 0, 0, sCb, sCg, sCd, sCn, False, HAS_BIAS, BLOCK_D, BLOCK_N)
    tt = tl.arange(0, CHUNK)
    c0, c1 = _segment(n_chunks, tps)
    R = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    dt_sum = tl.zeros([BLOCK_D], tl.float32)
    for i in range(0, c1 - c0):
        t = (c1 - 1 - i) * CHUNK + tt
        m2 = dm[:, None] & (t < L)[None, :]
        m3 = m2[:, :, None] & nm[None, None, :]
        _, _, _, gy = _output_grad(gout_ptr, z_ptr, row, t, m2, HAS_Z)
        C3 = tl.load(C_ptr + Co[:, None, None] + t[None, :, None] * sCt + n[None, None, :] * sCn, mask=m3,
                     other=0.0).to(tl.float32)
        dt_next, Q, g = _adjoint(dl_ptr, bias, row, t, dm, L, A3, gy, C3, SOFTPLUS)
        R = _first(g + Q * R[:, None, :], tt)
        dt_sum += tl.sum(dt_next, axis=1)
    _store_summary(a_ptr, h_ptr, b, d, n, dm, nm, Dm, N, n_seg, dt_sum, A3, R)


@triton.jit
def _add_shared_grad(g_ptr, part, t, L, nm, g3, acc, TIME: tl.constexpr, ATOMIC: tl.constexpr):
    """A tile's gradient of B (or C), ``g3`` [BLOCK_D, CHUNK, BLOCK_N]: summed over the block's
    channels into memory when B varies in time (added atomically, or as this block's partial
    sum), else summed over time into the running ``acc`` [BLOCK_D, BLOCK_N], which is returned."""
    if TIME:
        ptr = g_ptr + part[None, :] * L + t[:, None]
        mask = (t < L)[:, None] & nm[None, :]
        if ATOMIC:
            tl.atomic_add(ptr, tl.sum(g3, axis=0), mask=mask)
        else:
            tl.store(ptr, tl.sum(g3, axis=0), mask=mask)
    else:
        acc += tl.sum(g3, axis=1)
    return acc


@triton.jit
def _scan_bwd(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, gout_ptr, glast_ptr, ck_ptr, seg_ptr,
              gu_ptr, gdl_ptr, gz_ptr, gA_ptr, gD_ptr, gbias_ptr, gB_ptr, gC_ptr,
              Dm, L, N, n_chunks, dpg, n_dblocks, tps, n_seg,
              sBb, sBg, sBd, sBn, sBt, sCb, sCg, sCd, sCn, sCt,
              HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
              HAS_GLAST: tl.constexpr, HAS_SEG: tl.constexpr, B_TIME: tl.constexpr, C_TIME: tl.constexpr,
              ATOMIC: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Backward pass 3 (the only one with one segment per sequence): the segment's tiles from last
    to first, from the gradient reaching the step after it; writes every gradient (shared ones as
    this program's partial sums)."""
    b = tl.program_id(0).to(tl.int64)  # offsets past 2**31 elements stay right
    d, n, dm, nm, A3, Dv, bias, Bo, Co, row = _program_setup(
        A_ptr, D_ptr, bias_ptr, b, Dm, L, N, dpg, sBb, sBg, sBd, sBn, sCb, sCg, sCd, sCn, HAS_D, HAS_BIAS,
        BLOCK_D, BLOCK_N)
    blk = tl.program_id(1)
    tt = tl.arange(0, CHUNK)
    m_dn = dm[:, None] & nm[None, :]
    dn = d[:, None] * N + n[None, :]
    ck = ((b * Dm + d[:, None]) * n_chunks) * N + n[None, :]
    if ATOMIC:  # time-varying B/C gradients added straight into [batch, group, N, L]
        part = (b * (Dm // dpg) + (blk * BLOCK_D) // dpg) * N + n
    else:  # per-program partial sums over this block's channels, added up afterwards
        part = (b * n_dblocks + blk) * N + n
    R = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)  # g_x of the step after the tile
    if HAS_SEG:
        R = tl.load(seg_ptr + _seg_offsets(b, d, n, Dm, N, n_seg), mask=m_dn, other=0.0)
    elif HAS_GLAST:
        R = tl.load(glast_ptr + (b * Dm + d[:, None]) * N + n[None, :], mask=m_dn, other=0.0).to(tl.float32)
    gA = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    gBs = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    gCs = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    gD = tl.zeros([BLOCK_D], tl.float32)
    gbias = tl.zeros([BLOCK_D], tl.float32)
    c0, c1 = _segment(n_chunks, tps)
    for i in range(0, c1 - c0):
        c = c1 - 1 - i
        t = c * CHUNK + tt
        u, raw, dt, B3, dA, bx, m2, m3 = _tile(u_ptr, dl_ptr, B_ptr, A3, bias, row, Bo, t, dm, nm, L, sBt, sBn,
                                               SOFTPLUS, BLOCK_N)
        C3 = tl.load(C_ptr + Co[:, None, None] + t[None, :, None] * sCt + n[None, None, :] * sCn, mask=m3,
                     other=0.0).to(tl.float32)
        x_in = tl.load(ck_ptr + ck + c * N, mask=m_dn, other=0.0)
        P, h = tl.associative_scan((dA, bx), axis=1, combine_fn=_linear_combine)
        xs = h + P * x_in[:, None, :]  # the tile's states, recomputed
        go, zv, sz, gy = _output_grad(gout_ptr, z_ptr, row, t, m2, HAS_Z)
        if HAS_Z:
            y = tl.sum(xs * C3, axis=2) + Dv[:, None] * u
            tl.store(gz_ptr + row[:, None] + t[None, :],
                     (go * y * sz * (1.0 + zv * (1.0 - sz))).to(gz_ptr.dtype.element_ty), mask=m2)
        _, Q, gl = _adjoint(dl_ptr, bias, row, t, dm, L, A3, gy, C3, SOFTPLUS)
        gx = tl.where(m3, gl + Q * R[:, None, :], 0.0)
        R = _first(gl + Q * R[:, None, :], tt)  # g_x of the tile's first step
        prev = xs - bx  # dA[t] x[t-1], without dividing by dA
        gdt = tl.sum(gx * prev * A3, axis=2) + tl.sum(gx * B3, axis=2) * u
        gu = dt * tl.sum(gx * B3, axis=2) + Dv[:, None] * gy
        gA += tl.sum(gx * prev * dt[:, :, None], axis=1)
        gBt = gx * (dt * u)[:, :, None]
        gCt = tl.where(m3, gy[:, :, None] * xs, 0.0)
        gBs = _add_shared_grad(gB_ptr, part, t, L, nm, gBt, gBs, B_TIME, ATOMIC)
        gCs = _add_shared_grad(gC_ptr, part, t, L, nm, gCt, gCs, C_TIME, ATOMIC)
        if SOFTPLUS:
            gdt = gdt * tl.sigmoid(raw)
        gD += tl.sum(tl.where(m2, gy * u, 0.0), axis=1)
        gbias += tl.sum(tl.where(m2, gdt, 0.0), axis=1)
        tl.store(gu_ptr + row[:, None] + t[None, :], gu.to(gu_ptr.dtype.element_ty), mask=m2)
        tl.store(gdl_ptr + row[:, None] + t[None, :], gdt.to(gdl_ptr.dtype.element_ty), mask=m2)
    p = b * n_seg + tl.program_id(2)  # this program's row of the partial sums
    tl.store(gA_ptr + p * Dm * N + dn, gA, mask=m_dn)
    if not B_TIME:
        tl.store(gB_ptr + p * Dm * N + dn, gBs, mask=m_dn)
    if not C_TIME:
        tl.store(gC_ptr + p * Dm * N + dn, gCs, mask=m_dn)
    tl.store(gD_ptr + p * Dm + d, gD, mask=dm)
    tl.store(gbias_ptr + p * Dm + d, gbias, mask=dm)


def _layout(M: torch.Tensor, d: int):
    """``(tensor, strides (batch, group, channel, state, time), groups)`` for B or C in any of its forms."""
    M = M.contiguous()
    if M.dim() == 2:  # [D, N]
        return M, (0, 0, M.stride(0), M.stride(1), 0), 1
    if M.dim() == 3:  # [B, N, L]
        return M, (M.stride(0), 0, 0, M.stride(1), M.stride(2)), 1
    return M, (M.stride(0), M.stride(1), 0, M.stride(2), M.stride(3)), M.shape[1]


def _block_d(d: int, dpg: int, time_varying_grouped: bool) -> int:
    """Channels per program: a power of two up to ``BLOCK_D_MAX``; with grouped, time-varying B/C it must divide
    the channels of a group, so that a program's partial sum belongs to one group."""
    bd = min(BLOCK_D_MAX, triton.next_power_of_2(d))
    if time_varying_grouped:
        while dpg % bd:
            bd //= 2
    return bd


def saved_shape(u: torch.Tensor, A: torch.Tensor):
    """Shape of the states the forward keeps for the backward: one entering each tile."""
    b, d, L = u.shape
    return (b, d, triton.cdiv(L, CHUNK), A.shape[1])


def _launch(B, C, d):
    """B and C with their strides and groups, the channels per group and per program."""
    Bt, sB, GB = _layout(B, d)
    Ct, sC, GC = _layout(C, d)
    G = max(GB, GC)
    dpg = d // G
    grouped_time = (B.dim() == 4 and GB > 1) or (C.dim() == 4 and GC > 1)
    return Bt, sB, GB, Ct, sC, GC, G, dpg, _block_d(d, dpg, grouped_time)


def segments(programs: int, n_chunks: int) -> tuple:
    """``(segments per sequence, tiles per segment)``: time split until ``programs`` (batch x channel
    blocks) times the segments reaches ``MIN_PROGRAMS``, into segments of whole tiles, equal but
    for the last."""
    want = triton.cdiv(MIN_PROGRAMS, programs) if MIN_PROGRAMS > 0 else 1
    per = max(1, n_chunks // want)
    return max(1, triton.cdiv(n_chunks, per)), per


def _carried(summary, grid, tensors, sizes, strides, init, reverse: bool, blocks, **flags):
    """Passes 1 and 2: ``summary`` writes each segment's map ``carry -> a carry + h``, then
    :func:`_carry` runs through the segments (from ``init``, or zero when it is None). Returns the
    carry each segment starts from, ``[B, D, segments, N]`` float32, for the third pass."""
    b, nblk, n_seg = grid
    d, N = sizes[0], sizes[2]
    BD, BN = blocks
    dev = tensors[0].device
    a, h, out = (torch.empty((b, d, n_seg, N), dtype=torch.float32, device=dev) for _ in range(3))
    summary[grid](*tensors, a, h, *sizes, n_seg, *strides, CHUNK=CHUNK, BLOCK_D=BD, BLOCK_N=BN,
                  num_warps=NUM_WARPS, **flags)
    _carry[(b, nblk)](a, h, init if init is not None else a, out, d, N, n_seg, HAS_INIT=init is not None,
                      REVERSE=reverse, BLOCK_D=BD, BLOCK_N=BN, num_warps=NUM_WARPS)
    return out


def forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """``(out, last_state, tile_states)``: the output in u's dtype, the last state and the
    states entering each tile in float32."""
    b, d, L = u.shape
    N = A.shape[1]
    u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
    z = z.contiguous() if z is not None else None
    Bt, sB, GB, Ct, sC, GC, G, dpg, BD = _launch(B, C, d)
    BN = triton.next_power_of_2(N)
    n_chunks = triton.cdiv(L, CHUNK)
    nblk = triton.cdiv(d, BD)
    n_seg, tps = segments(b * nblk, n_chunks)
    out = torch.empty_like(u)
    last = torch.empty((b, d, N), dtype=torch.float32, device=u.device)
    ck = torch.empty(saved_shape(u, A), dtype=torch.float32, device=u.device)
    dummy = u  # for absent optional tensors (never read)
    bias = delta_bias if delta_bias is not None else dummy
    seg = dummy
    if n_seg > 1:
        seg = _carried(_scan_fwd_summary, (b, nblk, n_seg), (u, delta, A, Bt, bias), (d, L, N, n_chunks, dpg, tps),
                       sB, None, False, (BD, BN), HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus))
    _scan_fwd[(b, nblk, n_seg)](
        u, delta, A, Bt, Ct, D if D is not None else dummy, z if z is not None else dummy, bias, out, last, ck, seg,
        d, L, N, n_chunks, dpg, tps, n_seg, *sB, *sC,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
        HAS_SEG=n_seg > 1, CHUNK=CHUNK, BLOCK_D=BD, BLOCK_N=BN, num_warps=NUM_WARPS)
    return out, last, ck


def backward(gout, glast, u, delta, A, B, C, D, z, delta_bias, ck, delta_softplus):
    """The gradients of ``(u, delta, A, B, C, D, z, delta_bias)`` (None for absent inputs), each in
    its input's dtype; ``ck``: the tile states :func:`forward` returned."""
    b, d, L = u.shape
    N = A.shape[1]
    u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
    z = z.contiguous() if z is not None else None
    Bt, sB, GB, Ct, sC, GC, G, dpg, BD = _launch(B, C, d)
    BN = triton.next_power_of_2(N)
    n_chunks = ck.shape[2]
    if n_chunks != triton.cdiv(L, CHUNK):
        raise RuntimeError(f"the scan's tile length changed between forward and backward (CHUNK is now {CHUNK})")
    nblk = triton.cdiv(d, BD)
    n_seg, tps = segments(b * nblk, n_chunks)  # the backward's own split: it needs only the tile states
    dev, f32 = u.device, torch.float32
    gout = gout.contiguous() if gout is not None else torch.zeros_like(u)
    gu, gdl = torch.empty_like(u), torch.empty_like(delta)
    gz = torch.empty_like(z) if z is not None else None
    rows = b * n_seg  # the partial sums: one row per (batch, segment)
    gA = torch.empty((rows, d, N), dtype=f32, device=dev)
    gD = torch.empty((rows, d), dtype=f32, device=dev)
    gbias = torch.empty((rows, d), dtype=f32, device=dev)
    b_time, c_time = B.dim() > 2, C.dim() > 2
    # time-varying B/C: every channel block adds to them. Atomics add in place; under
    # torch.use_deterministic_algorithms each block writes its own partial sums instead,
    # added up in a fixed order (as many copies of B as there are blocks: much more memory)
    atomic = not torch.are_deterministic_algorithms_enabled()
    shared = (b, G, N, L) if atomic else (b, nblk, N, L)
    gB = torch.zeros(shared if b_time else (rows, d, N), dtype=f32, device=dev)
    gC = torch.zeros(shared if c_time else (rows, d, N), dtype=f32, device=dev)
    dummy = u
    bias = delta_bias if delta_bias is not None else dummy
    zt = z if z is not None else dummy
    glast = glast.contiguous() if glast is not None else None
    seg = dummy
    if n_seg > 1:
        seg = _carried(_scan_bwd_summary, (b, nblk, n_seg), (delta, A, Ct, zt, bias, gout),
                       (d, L, N, n_chunks, dpg, tps), sC, glast, True, (BD, BN), HAS_Z=z is not None,
                       HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus))
    _scan_bwd[(b, nblk, n_seg)](u, delta, A, Bt, Ct, D if D is not None else dummy, zt, bias, gout,
                                glast if glast is not None else dummy, ck, seg,
                                gu, gdl, gz if gz is not None else dummy, gA, gD, gbias, gB, gC,
                                d, L, N, n_chunks, dpg, nblk, tps, n_seg, *sB, *sC,
                                HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                                SOFTPLUS=bool(delta_softplus), HAS_GLAST=glast is not None, HAS_SEG=n_seg > 1,
                                B_TIME=b_time, C_TIME=c_time, ATOMIC=atomic, CHUNK=CHUNK, BLOCK_D=BD, BLOCK_N=BN,
                                num_warps=NUM_WARPS)
    return (gu, gdl, gA.sum(0).to(A.dtype), _reduce_bc(gB, B.shape, GB, G, atomic).to(B.dtype),
            _reduce_bc(gC, C.shape, GC, G, atomic).to(C.dtype), gD.sum(0).to(D.dtype) if D is not None else None,
            gz, gbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None)


def _reduce_bc(g: torch.Tensor, shape, groups: int, G: int, atomic: bool) -> torch.Tensor:
    """B's (or C's) gradient in B's own shape, from what the kernel wrote: ``[B x segments, D, N]``
    partial sums for a time-invariant B; for a time-varying one ``[B, G, N, L]`` (atomics) or per-block
    partial sums ``[B, blocks, N, L]`` (deterministic; a block never straddles two groups)."""
    if len(shape) == 2:  # [D, N]: summed over the batch
        return g.sum(0)
    b = g.shape[0]
    if not atomic:
        g = g.reshape(b, G, g.shape[1] // G, *g.shape[2:]).sum(2)  # the blocks of each group
    if len(shape) == 3:  # [B, N, L]: one B for every channel (G is 1, or C has the groups)
        return g.sum(1)
    return g if groups == G else g.sum(1, keepdim=True)
