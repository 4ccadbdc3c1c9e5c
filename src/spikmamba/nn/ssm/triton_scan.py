"""The selective scan as Triton kernels: ``mamba_ssm.selective_scan_fn``'s signature and maths,
with nothing to compile at install time (Triton ships with PyTorch's CUDA wheels).

Forward: one program per (batch, block of ``BLOCK_D`` channels) walks time with the state
``x [BLOCK_D, N]`` in registers, the delta bias/softplus, ``D`` and the ``z`` gate folded in, and
writes ``out`` and the last state. Every ``CHUNK`` steps it also writes the state it holds, so
the backward never needs ``[B, D, L, N]``: ``L / CHUNK`` states are kept instead.

Backward: the same programs walk the chunks from last to first. Each chunk's states are
recomputed from its stored start into a small per-program scratch (``CHUNK + 1`` tiles, which
stays in cache), then walked in reverse with the state gradient in registers::

    g_x[t]  = g_x[t+1] * dA[t+1] + C[t] * g_y[t]
    g_dt    = sum_n g_x[t] * (A * dA[t] * x[t-1] + B[t] * u[t])
    g_A    += g_x[t] * dt * dA[t] * x[t-1]        g_B[t] += g_x[t] * dt * u[t]
    g_C[t] += g_y[t] * x[t]                       g_u = dt * sum_n g_x[t] * B[t] + D * g_y

Gradients shared by many programs (A, D, delta_bias, B and C summed over channels) are written
as per-program partial sums and added up with ``torch.sum``: deterministic, no atomics.

The same kernels run on CPU tensors under ``TRITON_INTERPRET=1`` (set before this module is
imported); that is how the tests compare them with :func:`selective_scan_ref`.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .selective_scan import _check, _groups

#: steps between the states the forward stores for the backward
CHUNK = 64
#: launch shape: channels per program (at most) and warps per program. Defaults, not yet tuned on a
#: GPU; benchmarks/gpu_check.py sweeps them and reports the fastest
BLOCK_D_MAX = 32
NUM_WARPS = 4


@triton.jit
def _softplus(v):
    return tl.where(v > 20.0, v, tl.log(1.0 + tl.exp(tl.minimum(v, 20.0))))


@triton.jit
def _program_setup(A_ptr, D_ptr, bias_ptr, b, Dm, L, N, dpg, sBb, sBg, sBd, sBn, sCb, sCg, sCd, sCn,
                   HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """What both kernels start from: this program's channels and states, their masks, A, D and the
    delta bias (float32), where B and C of step 0 are, and where each channel's row of u starts."""
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dm, nm = d < Dm, n < N
    m2 = dm[:, None] & nm[None, :]
    g = d // dpg
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=m2, other=0.0).to(tl.float32)
    Dv = tl.zeros([BLOCK_D], tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=dm, other=0.0).to(tl.float32)
    bias = tl.zeros([BLOCK_D], tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=dm, other=0.0).to(tl.float32)
    Bo = b * sBb + g[:, None] * sBg + d[:, None] * sBd + n[None, :] * sBn
    Co = b * sCb + g[:, None] * sCg + d[:, None] * sCd + n[None, :] * sCn
    row = (b * Dm + d) * L
    return d, n, dm, nm, m2, A, Dv, bias, Bo, Co, row


@triton.jit
def _scan_fwd(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, ck_ptr,
              Dm, L, N, n_chunks, dpg,
              sBb, sBg, sBd, sBn, sBt, sCb, sCg, sCd, sCn, sCt,
              HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
              CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)  # offsets past 2**31 elements stay right
    d, n, dm, nm, m2, A, Dv, bias, Bo, Co, row = _program_setup(
        A_ptr, D_ptr, bias_ptr, b, Dm, L, N, dpg, sBb, sBg, sBd, sBn, sCb, sCg, sCd, sCn, HAS_D, HAS_BIAS,
        BLOCK_D, BLOCK_N)
    ck = ((b * Dm + d[:, None]) * n_chunks) * N + n[None, :]
    x = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    for c in range(0, n_chunks):
        tl.store(ck_ptr + ck + c * N, x, mask=m2)
        for i in range(0, CHUNK):
            t = c * CHUNK + i
            valid = t < L
            tm = dm & valid
            u = tl.load(u_ptr + row + t, mask=tm, other=0.0).to(tl.float32)
            dt = tl.load(dl_ptr + row + t, mask=tm, other=0.0).to(tl.float32) + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            Bt = tl.load(B_ptr + Bo + t * sBt, mask=m2 & valid, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + Co + t * sCt, mask=m2 & valid, other=0.0).to(tl.float32)
            x_new = tl.exp(dt[:, None] * A) * x + (dt * u)[:, None] * Bt
            x = tl.where(valid, x_new, x)
            y = tl.sum(x * Ct, axis=1) + Dv * u
            if HAS_Z:
                zv = tl.load(z_ptr + row + t, mask=tm, other=0.0).to(tl.float32)
                y = y * zv * tl.sigmoid(zv)
            tl.store(out_ptr + row + t, y.to(out_ptr.dtype.element_ty), mask=tm)
    tl.store(last_ptr + (b * Dm + d[:, None]) * N + n[None, :], x, mask=m2)


@triton.jit
def _scan_bwd(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, gout_ptr, glast_ptr, ck_ptr, scr_ptr,
              gu_ptr, gdl_ptr, gz_ptr, gA_ptr, gD_ptr, gbias_ptr, gB_ptr, gC_ptr,
              Dm, L, N, n_chunks, dpg, n_dblocks,
              sBb, sBg, sBd, sBn, sBt, sCb, sCg, sCd, sCn, sCt,
              HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
              HAS_GLAST: tl.constexpr, B_TIME: tl.constexpr, C_TIME: tl.constexpr,
              CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)  # offsets past 2**31 elements stay right
    d, n, dm, nm, m2, A, Dv, bias, Bo, Co, row = _program_setup(
        A_ptr, D_ptr, bias_ptr, b, Dm, L, N, dpg, sBb, sBg, sBd, sBn, sCb, sCg, sCd, sCn, HAS_D, HAS_BIAS,
        BLOCK_D, BLOCK_N)
    blk = tl.program_id(1)
    dn = d[:, None] * N + n[None, :]
    ck = ((b * Dm + d[:, None]) * n_chunks) * N + n[None, :]
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + n[None, :]
    scr = scr_ptr + (b * n_dblocks + blk) * (CHUNK + 1) * BLOCK_D * BLOCK_N + tile
    part = (b * n_dblocks + blk) * N + n  # per-program partial sums over this block's channels
    if HAS_GLAST:
        gx = tl.load(glast_ptr + (b * Dm + d[:, None]) * N + n[None, :], mask=m2, other=0.0).to(tl.float32)
    else:
        gx = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    gA = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    gBs = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    gCs = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    gD = tl.zeros([BLOCK_D], tl.float32)
    gbias = tl.zeros([BLOCK_D], tl.float32)
    for cc in range(0, n_chunks):
        c = n_chunks - 1 - cc
        x = tl.load(ck_ptr + ck + c * N, mask=m2, other=0.0)
        tl.store(scr, x)
        for i in range(0, CHUNK):  # recompute this chunk's states
            t = c * CHUNK + i
            tm = dm & (t < L)
            u = tl.load(u_ptr + row + t, mask=tm, other=0.0).to(tl.float32)
            dt = tl.load(dl_ptr + row + t, mask=tm, other=0.0).to(tl.float32) + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            Bt = tl.load(B_ptr + Bo + t * sBt, mask=m2 & (t < L), other=0.0).to(tl.float32)
            x = tl.exp(dt[:, None] * A) * x + (dt * u)[:, None] * Bt
            tl.store(scr + (i + 1) * BLOCK_D * BLOCK_N, x)
        tl.debug_barrier()
        for j in range(0, CHUNK):  # and walk them backwards
            i = CHUNK - 1 - j
            t = c * CHUNK + i
            valid = t < L
            tm = dm & valid
            x_t = tl.load(scr + (i + 1) * BLOCK_D * BLOCK_N)
            x_p = tl.load(scr + i * BLOCK_D * BLOCK_N)
            u = tl.load(u_ptr + row + t, mask=tm, other=0.0).to(tl.float32)
            raw = tl.load(dl_ptr + row + t, mask=tm, other=0.0).to(tl.float32) + bias
            dt = raw
            if SOFTPLUS:
                dt = _softplus(raw)
            Bt = tl.load(B_ptr + Bo + t * sBt, mask=m2 & valid, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + Co + t * sCt, mask=m2 & valid, other=0.0).to(tl.float32)
            go = tl.load(gout_ptr + row + t, mask=tm, other=0.0).to(tl.float32)
            if HAS_Z:
                zv = tl.load(z_ptr + row + t, mask=tm, other=0.0).to(tl.float32)
                sz = tl.sigmoid(zv)
                y = tl.sum(x_t * Ct, axis=1) + Dv * u
                tl.store(gz_ptr + row + t, (go * y * sz * (1.0 + zv * (1.0 - sz))).to(gz_ptr.dtype.element_ty),
                         mask=tm)
                gy = go * zv * sz
            else:
                gy = go
            dA = tl.exp(dt[:, None] * A)
            gx = gx + gy[:, None] * Ct
            gdA = gx * x_p * dA
            gdt = tl.sum(gdA * A + gx * Bt * u[:, None], axis=1)
            gu = dt * tl.sum(gx * Bt, axis=1) + Dv * gy
            gA += tl.where(valid, gdA * dt[:, None], 0.0)
            gBt = tl.where(valid, gx * (dt * u)[:, None], 0.0)
            gCt = tl.where(valid, gy[:, None] * x_t, 0.0)
            if B_TIME:
                tl.store(gB_ptr + part * L + t, tl.sum(gBt, axis=0), mask=nm & valid)
            else:
                gBs += gBt
            if C_TIME:
                tl.store(gC_ptr + part * L + t, tl.sum(gCt, axis=0), mask=nm & valid)
            else:
                gCs += gCt
            if SOFTPLUS:
                gdt = gdt * tl.sigmoid(raw)
            gD += tl.where(valid, gy * u, 0.0)
            gbias += tl.where(valid, gdt, 0.0)
            tl.store(gu_ptr + row + t, gu.to(gu_ptr.dtype.element_ty), mask=tm)
            tl.store(gdl_ptr + row + t, gdt.to(gdl_ptr.dtype.element_ty), mask=tm)
            gx = tl.where(valid, gx * dA, gx)
        tl.debug_barrier()
    tl.store(gA_ptr + b * Dm * N + dn, gA, mask=m2)
    if not B_TIME:
        tl.store(gB_ptr + b * Dm * N + dn, gBs, mask=m2)
    if not C_TIME:
        tl.store(gC_ptr + b * Dm * N + dn, gCs, mask=m2)
    tl.store(gD_ptr + b * Dm + d, gD, mask=dm)
    tl.store(gbias_ptr + b * Dm + d, gbias, mask=dm)


def _layout(M: torch.Tensor, d: int):
    """``(tensor, strides (batch, group, channel, state, time), groups)`` for B or C in any of its forms."""
    M = M.contiguous()
    if M.dim() == 2:  # [D, N]
        return M, (0, 0, M.stride(0), M.stride(1), 0), 1
    if M.dim() == 3:  # [B, N, L]
        return M, (M.stride(0), 0, 0, M.stride(1), M.stride(2)), 1
    return M, (M.stride(0), M.stride(1), 0, M.stride(2), M.stride(3)), M.shape[1]


def _block_d(d: int, dpg: int, time_varying_grouped: bool) -> int:
    """Channels per program: a power of two up to 32; with grouped, time-varying B/C it must divide
    the channels of a group, so that a program's partial sum belongs to one group."""
    bd = min(BLOCK_D_MAX, triton.next_power_of_2(d))
    if time_varying_grouped:
        while dpg % bd:
            bd //= 2
    return bd


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        ctx.set_materialize_grads(False)  # an unused output (often the last state) costs nothing backward
        b, d, L = u.shape
        N = A.shape[1]
        u, delta = u.contiguous(), delta.contiguous()
        A = A.contiguous()
        z = z.contiguous() if z is not None else None
        Bt, sB, GB = _layout(B, d)
        Ct, sC, GC = _layout(C, d)
        G = max(GB, GC)
        dpg = d // G
        grouped_time = (B.dim() == 4 and GB > 1) or (C.dim() == 4 and GC > 1)
        BD = _block_d(d, dpg, grouped_time)
        BN = triton.next_power_of_2(N)
        n_chunks = triton.cdiv(L, CHUNK)
        out = torch.empty_like(u)
        last = torch.empty((b, d, N), dtype=torch.float32, device=u.device)
        ck = torch.empty((b, d, n_chunks, N), dtype=torch.float32, device=u.device)
        dummy = u  # for absent optional tensors (never read)
        grid = (b, triton.cdiv(d, BD))
        _scan_fwd[grid](u, delta, A, Bt, Ct, D if D is not None else dummy, z if z is not None else dummy,
                        delta_bias if delta_bias is not None else dummy, out, last, ck,
                        d, L, N, n_chunks, dpg, *sB, *sC,
                        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                        SOFTPLUS=bool(delta_softplus), CHUNK=CHUNK, BLOCK_D=BD, BLOCK_N=BN, num_warps=NUM_WARPS)
        ctx.save_for_backward(u, delta, A, Bt, Ct, D, z, delta_bias, ck)
        ctx.meta = (sB, sC, dpg, BD, BN, n_chunks, bool(delta_softplus), B.shape, C.shape, GB, GC, CHUNK, NUM_WARPS)
        return out, last

    @staticmethod
    def backward(ctx, gout, glast):
        u, delta, A, Bt, Ct, D, z, delta_bias, ck = ctx.saved_tensors
        sB, sC, dpg, BD, BN, n_chunks, softplus, Bshape, Cshape, GB, GC, chunk, warps = ctx.meta
        b, d, L = u.shape
        N = A.shape[1]
        nblk = triton.cdiv(d, BD)
        dev, f32 = u.device, torch.float32
        gout = gout.contiguous() if gout is not None else torch.zeros_like(u)
        gu, gdl = torch.empty_like(u), torch.empty_like(delta)
        gz = torch.empty_like(z) if z is not None else None
        gA = torch.empty((b, d, N), dtype=f32, device=dev)
        gD = torch.empty((b, d), dtype=f32, device=dev)
        gbias = torch.empty((b, d), dtype=f32, device=dev)
        b_time, c_time = len(Bshape) > 2, len(Cshape) > 2
        gB = torch.zeros((b, nblk, N, L) if b_time else (b, d, N), dtype=f32, device=dev)
        gC = torch.zeros((b, nblk, N, L) if c_time else (b, d, N), dtype=f32, device=dev)
        scratch = torch.empty((b, nblk, chunk + 1, BD, BN), dtype=f32, device=dev)
        dummy = u
        _scan_bwd[(b, nblk)](u, delta, A, Bt, Ct, D if D is not None else dummy, z if z is not None else dummy,
                             delta_bias if delta_bias is not None else dummy, gout,
                             glast.contiguous() if glast is not None else dummy, ck, scratch,
                             gu, gdl, gz if gz is not None else dummy, gA, gD, gbias, gB, gC,
                             d, L, N, n_chunks, dpg, nblk, *sB, *sC,
                             HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                             SOFTPLUS=softplus, HAS_GLAST=glast is not None, B_TIME=b_time, C_TIME=c_time,
                             CHUNK=chunk, BLOCK_D=BD, BLOCK_N=BN, num_warps=warps)
        return (gu, gdl, gA.sum(0).to(A.dtype), _reduce_bc(gB, Bshape, GB, nblk, BD, dpg).to(Bt.dtype),
                _reduce_bc(gC, Cshape, GC, nblk, BD, dpg).to(Ct.dtype),
                gD.sum(0).to(D.dtype) if D is not None else None, gz,
                gbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None, None)


def _reduce_bc(g: torch.Tensor, shape, groups: int, nblk: int, bd: int, dpg: int) -> torch.Tensor:
    """Per-program partial sums of B's (or C's) gradient, added up into B's own shape."""
    if len(shape) == 2:  # [D, N]: summed over the batch
        return g.sum(0)
    if len(shape) == 3:  # [B, N, L]: every channel block adds to it
        return g.sum(1)
    b = g.shape[0]  # [B, G, N, L]: the blocks of each group (a block never straddles two)
    return g.reshape(b, groups, nblk // groups, *g.shape[2:]).sum(2) if groups > 1 else g.sum(1, keepdim=True)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    """:func:`~.selective_scan.selective_scan_ref`'s result from the Triton kernels (CUDA tensors,
    or CPU tensors under ``TRITON_INTERPRET=1``)."""
    _check(u, delta, A, B, C, D, z, delta_bias)
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None]
    if len({t.device for t in tensors}) > 1:
        raise ValueError(f"selective scan: the tensors are on different devices "
                         f"({sorted({str(t.device) for t in tensors})}); move them to one")
    if u.dtype == torch.float64:
        raise ValueError("the Triton scan computes in float32; use selective_scan_fast for float64")
    if _groups(B) not in (1, max(_groups(B), _groups(C))) or _groups(C) not in (1, max(_groups(B), _groups(C))):
        raise ValueError(f"B has {_groups(B)} groups and C {_groups(C)}; they must match (or one be ungrouped)")
    out, last = _TritonScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return (out, last.to(u.dtype)) if return_last_state else out
