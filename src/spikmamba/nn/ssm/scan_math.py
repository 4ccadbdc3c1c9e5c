"""What every implementation of the selective scan shares: the input checks, the compute dtype,
the delta bias and softplus before the recurrence, ``D`` and the ``z`` gate after it, and B/C
laid out for a loop over time.

A leaf: the readable loop, the blocked PyTorch scan, the Triton kernels and the operator that
dispatches between them all import from here, and this imports none of them."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import InputError


def check_scan_inputs(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise InputError(f"u must be [batch, dim, length], got shape {tuple(u.shape)}")
    b, d, L = u.shape
    if L == 0:
        raise InputError("u has sequence length L=0; the scan needs L >= 1")
    if delta.shape != u.shape:
        raise InputError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise InputError(f"A must be [dim={d}, d_state], got {tuple(A.shape)}")
    if A.is_complex():
        raise InputError("complex A is not supported; pass a real A (Mamba uses A = -exp(A_log))")
    n = A.shape[1]
    for name, M in (("B", B), ("C", C)):
        ok = (M.dim() == 2 and tuple(M.shape) == (d, n)) or (
            M.dim() == 3 and tuple(M.shape) == (b, n, L)
        ) or (M.dim() == 4 and M.shape[0] == b and M.shape[2:] == (n, L) and d % M.shape[1] == 0)
        if not ok:
            raise InputError(
                f"{name} must be [dim={d}, d_state={n}], [batch={b}, d_state={n}, length={L}] or "
                f"[batch={b}, groups dividing {d}, d_state={n}, length={L}]; got {tuple(M.shape)}"
            )
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and tuple(v.shape) != (d,):
            raise InputError(f"{name} must be [dim={d}], got {tuple(v.shape)}")
    if z is not None and z.shape != u.shape:
        raise InputError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")


def groups_of(M: torch.Tensor) -> int:
    """How many groups share a B or C (1 unless it is ``[B, G, N, L]``)."""
    return M.shape[1] if M.dim() == 4 else 1


def compute_dtype(u: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs (as mamba_ssm does), float64 for float64."""
    return torch.promote_types(u.dtype, torch.float32)


def prepare_delta(delta, delta_bias, delta_softplus, cdt):
    delta = delta.to(cdt)
    if delta_bias is not None:
        delta = delta + delta_bias.to(cdt)[:, None]
    return F.softplus(delta) if delta_softplus else delta


def finish(y, u, D, z, dtype):
    """``(y + D u) * silu(z)`` in the compute dtype, then in the input's. The gate is evaluated in
    the compute dtype, as mamba_ssm's CUDA kernel does (its Python reference rounds ``silu(z)`` to
    the input dtype first; see tests/test_mamba_conformance.py)."""
    out = y if D is None else y + u.to(y.dtype) * D.to(y.dtype)[:, None]
    if z is not None:
        out = out * F.silu(z.to(y.dtype))
    return out.to(dtype)


def as_lbdn(M: torch.Tensor, d: int) -> torch.Tensor:
    """B or C as a tensor broadcastable to ``[L, B, D, N]``."""
    if M.dim() == 2:  # [D, N]
        return M.unsqueeze(0).unsqueeze(0)
    if M.dim() == 3:  # [B, N, L] -> [L, B, 1, N]
        return M.permute(2, 0, 1).unsqueeze(2)
    g = M.shape[1]  # [B, G, N, L] -> [L, B, D, N]
    return M.permute(3, 0, 1, 2).repeat_interleave(d // g, dim=2)


def groups_agree(B: torch.Tensor, C: torch.Tensor) -> bool:
    """B and C have the same groups, or one of them is ungrouped."""
    G = max(groups_of(B), groups_of(C))
    return groups_of(B) in (1, G) and groups_of(C) in (1, G)


def shared_groups(B: torch.Tensor, C: torch.Tensor) -> int:
    """The groups the blocked scan can keep apart: B's and C's when they agree, else 1 (each
    channel then gets its own copy of B and C)."""
    return max(groups_of(B), groups_of(C)) if groups_agree(B, C) else 1


def as_blocked(M: torch.Tensor, G: int, d: int) -> torch.Tensor:
    """B or C in the blocked scan's layout, broadcastable to ``[L, B, G, D/G, N]``."""
    if M.dim() == 2:  # [D, N]: time-invariant
        return M.reshape(1, 1, G, d // G, M.shape[1])
    if M.dim() == 3:  # [B, N, L]: one B/C for every channel
        return M.permute(2, 0, 1).unsqueeze(2).unsqueeze(2)
    if M.shape[1] == G:  # [B, G, N, L]
        return M.permute(3, 0, 1, 2).unsqueeze(3)
    return as_lbdn(M, d).unsqueeze(2)  # groups differing between B and C: per channel, G = 1
