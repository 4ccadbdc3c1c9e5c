"""The selective scan's two passes in PyTorch operations, for any device: the glue around the
time-blocked recurrence of :mod:`.blocked_scan` (delta bias and softplus before it, ``D`` and the
``z`` gate after it, B/C laid out per group), as the operator of :mod:`.scan_op` calls them.

The forward returns, besides the output and the last state, what the backward needs: the state
entering each block and, when there is a gate, the scan's output before ``D`` and the gate
(``[B, D, L]`` in the compute dtype; without a gate nothing is kept, the gradient does not need
it). The backward writes out the glue's gradients and takes the recurrence's from
:func:`~.blocked_scan.blocked_backward`."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .blocked_scan import block_length, blocked_backward, blocked_forward
from .scan_math import as_blocked, compute_dtype, finish, prepare_delta, shared_groups


def _layout(t: torch.Tensor, G: int, cdt: torch.dtype) -> torch.Tensor:
    """``[B, D, L]`` as the blocked scan's ``[L, B, G, D/G]``."""
    b, d, L = t.shape
    return t.to(cdt).permute(2, 0, 1).reshape(L, b, G, d // G)


def _core_inputs(u, delta, A, B, C, cdt):
    """The recurrence's inputs in the blocked layout: ``(delta, u, A, B, C)`` (``delta`` with its
    bias and softplus already applied)."""
    d = u.shape[1]
    G = shared_groups(B, C)
    return (_layout(delta, G, cdt), _layout(u, G, cdt), A.to(cdt).reshape(G, d // G, -1),
            as_blocked(B.to(cdt), G, d), as_blocked(C.to(cdt), G, d))


def saved_shapes(u: torch.Tensor, A: torch.Tensor, has_z: bool):
    """Shapes of what the forward keeps for the backward: the block entries and the pre-gate output."""
    b, d, L = u.shape
    N = A.shape[1]
    blocks = math.ceil(L / block_length(L, b * d * N))
    return (blocks, b, d, N), ((b, d, L) if has_z else (0,))


def forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """``(out, last_state, block_entries, y_before_gate)``; see the module docstring."""
    dtype, cdt = u.dtype, compute_dtype(u)
    b, d, L = u.shape
    with torch.no_grad():
        delta_p = prepare_delta(delta, delta_bias, delta_softplus, cdt)
        delta_l, u_l, A_l, Bx, Cx = _core_inputs(u, delta_p, A, B, C, cdt)
        y, last, entries = blocked_forward(delta_l.contiguous(), u_l.contiguous(), A_l, Bx, Cx)
        y = y.reshape(L, b, d).permute(1, 2, 0)
        out = finish(y, u, D, z, dtype).contiguous()  # the layout the fake implementation promises
    kept = y.contiguous() if z is not None else y.new_empty((0,))
    N = A.shape[1]  # (no -1 in the shapes: an empty batch, as a DDP rank with an empty shard gets, is fine)
    return out, last.reshape(b, d, N), entries.reshape(entries.shape[0], b, d, N), kept


def _bc_grad(g: torch.Tensor, M: torch.Tensor, G: int) -> torch.Tensor:
    """B's (or C's) gradient from its gradient in the blocked layout (:func:`as_blocked`)."""
    if M.dim() == 2:  # [1, 1, G, Dg, N]
        return g.reshape(M.shape)
    if M.dim() == 3:  # [L, B, 1, 1, N]
        return g[:, :, 0, 0].permute(1, 2, 0)
    if M.shape[1] == G:  # [L, B, G, 1, N]
        return g[:, :, :, 0].permute(1, 2, 3, 0)
    g = g[:, :, 0]  # per channel [L, B, D, N], each group of channels sharing one B
    groups = M.shape[1]
    return g.reshape(g.shape[0], g.shape[1], groups, g.shape[2] // groups, g.shape[-1]).sum(3).permute(1, 2, 3, 0)


def backward(gout, glast, u, delta, A, B, C, D, z, delta_bias, entries, y, delta_softplus):
    """The gradients of ``(u, delta, A, B, C, D, z, delta_bias)`` (None for absent inputs), each
    in its input's dtype. The glue's gradients are written out (an operator's implementation
    runs below autograd), the recurrence's come from :func:`blocked_backward`."""
    cdt = compute_dtype(u)
    b, d, L = u.shape
    G = shared_groups(B, C)
    uc = u.to(cdt)
    # after the recurrence: out = (y + D u) * silu(z)
    g = gout.to(cdt) if gout is not None else torch.zeros_like(uc)
    gz = None
    if z is not None:
        zc = z.to(cdt)
        sz = torch.sigmoid(zc)
        pre = y if D is None else y + uc * D.to(cdt)[:, None]
        gz = (g * pre * sz * (1 + zc * (1 - sz))).to(z.dtype)
        g = g * (zc * sz)
    gD = (g * uc).sum((0, 2)).to(D.dtype) if D is not None else None
    # the recurrence, on the inputs laid out as the forward had them
    with torch.no_grad():
        raw = prepare_delta(delta, delta_bias, False, cdt)  # delta + bias, kept for softplus' gradient
        delta_l, u_l, A_l, Bx, Cx = _core_inputs(u, F.softplus(raw) if delta_softplus else raw, A, B, C, cdt)
    N = A.shape[1]
    g_last = glast.to(cdt).reshape(b, G, d // G, N) if glast is not None else None
    g_dl, g_ul, g_A, g_B, g_C = blocked_backward(delta_l.contiguous(), u_l.contiguous(), A_l, Bx, Cx,
                                                 entries.reshape(entries.shape[0], b, G, d // G, N),
                                                 _layout(g, G, cdt).contiguous(), g_last)
    unlay = lambda t: t.reshape(L, b, d).permute(1, 2, 0)  # noqa: E731  [L, B, G, Dg] -> [B, D, L]
    gu = unlay(g_ul) + (g * D.to(cdt)[:, None] if D is not None else 0)
    # before it: delta = softplus(delta + bias)
    gdelta = unlay(g_dl)
    if delta_softplus:
        gdelta = gdelta * torch.sigmoid(raw)
    gbias = gdelta.sum((0, 2)).to(delta_bias.dtype) if delta_bias is not None else None
    return (gu.to(u.dtype), gdelta.to(delta.dtype), g_A.reshape(d, -1).to(A.dtype), _bc_grad(g_B, B, G).to(B.dtype),
            _bc_grad(g_C, C, G).to(C.dtype), gD, gz, gbias)
