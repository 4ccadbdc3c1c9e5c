"""Mamba's selective scan with ``mamba_ssm.selective_scan_fn``'s exact signature and semantics.

For each batch ``b``, channel ``d`` and state ``n``::

    delta = softplus(delta + delta_bias)              (bias / softplus optional)
    x[t]  = exp(delta[t] * A[d, n]) * x[t-1] + delta[t] * B[t, n] * u[t]
    y[t]  = sum_n C[t, n] * x[t, n] + D[d] * u[t]
    out   = y * silu(z)                               (when z is given)

Shapes: ``u, delta, z: [B, D, L]``; ``A: [D, N]``; ``B, C``: ``[D, N]`` (time-invariant),
``[B, N, L]`` (selective) or ``[B, G, N, L]`` (G groups sharing B/C); ``D, delta_bias: [D]``.

Three entry points:
* :func:`selective_scan_ref`  - the recurrence as a plain loop; the readable definition.
* :func:`selective_scan_fast` - the same maths, time-blocked with a hand-written backward that
  recomputes each block (:mod:`.blocked_scan`); tested equal to the reference, forward and backward.
* :func:`selective_scan_fn`   - what models call: on CUDA the Triton kernels (:mod:`.triton_scan`),
  or ``mamba_ssm``'s when asked for (``nn/kernels.py``); the fast path otherwise. Neither Triton
  nor ``mamba_ssm`` is imported for CPU tensors.
"""
from __future__ import annotations

import functools

import torch

from ..export import exporting
from ..kernels import cuda_kernels, use_triton
import torch.nn.functional as F

from .blocked_scan import blocked_scan


def _check(u, delta, A, B, C, D, z, delta_bias):
    if u.dim() != 3:
        raise ValueError(f"u must be [batch, dim, length], got shape {tuple(u.shape)}")
    b, d, L = u.shape
    if L == 0:
        raise ValueError("u has sequence length L=0; the scan needs L >= 1")
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be [dim={d}, d_state], got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("complex A is not supported; pass a real A (Mamba uses A = -exp(A_log))")
    n = A.shape[1]
    for name, M in (("B", B), ("C", C)):
        ok = (M.dim() == 2 and tuple(M.shape) == (d, n)) or (
            M.dim() == 3 and tuple(M.shape) == (b, n, L)
        ) or (M.dim() == 4 and M.shape[0] == b and M.shape[2:] == (n, L) and d % M.shape[1] == 0)
        if not ok:
            raise ValueError(
                f"{name} must be [dim={d}, d_state={n}], [batch={b}, d_state={n}, length={L}] or "
                f"[batch={b}, groups dividing {d}, d_state={n}, length={L}]; got {tuple(M.shape)}"
            )
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and tuple(v.shape) != (d,):
            raise ValueError(f"{name} must be [dim={d}], got {tuple(v.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")


def _as_lbdn(M: torch.Tensor, d: int) -> torch.Tensor:
    """B or C as a tensor broadcastable to ``[L, B, D, N]``."""
    if M.dim() == 2:  # [D, N]
        return M.unsqueeze(0).unsqueeze(0)
    if M.dim() == 3:  # [B, N, L] -> [L, B, 1, N]
        return M.permute(2, 0, 1).unsqueeze(2)
    g = M.shape[1]  # [B, G, N, L] -> [L, B, D, N]
    return M.permute(3, 0, 1, 2).repeat_interleave(d // g, dim=2)


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs (as mamba_ssm does), float64 for float64."""
    return torch.promote_types(u.dtype, torch.float32)


def _prepare_delta(delta, delta_bias, delta_softplus, cdt):
    delta = delta.to(cdt)
    if delta_bias is not None:
        delta = delta + delta_bias.to(cdt)[:, None]
    return F.softplus(delta) if delta_softplus else delta


def _finish(y, u, D, z, dtype):
    out = y if D is None else y + u.to(y.dtype) * D.to(y.dtype)[:, None]
    if z is not None:
        out = out * F.silu(z.to(y.dtype))
    return out.to(dtype)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """The scan exactly as the equations read: one loop over time. Slow; for tests and reading."""
    _check(u, delta, A, B, C, D, z, delta_bias)
    dtype, cdt = u.dtype, _compute_dtype(u)
    b, d, L = u.shape
    delta = _prepare_delta(delta, delta_bias, delta_softplus, cdt)
    Bx, Cx = _as_lbdn(B.to(cdt), d), _as_lbdn(C.to(cdt), d)
    A = A.to(cdt)
    x = u.new_zeros((b, d, A.shape[1]), dtype=cdt)
    ys = []
    for t in range(L):
        dt = delta[:, :, t, None]  # [B, D, 1]
        B_t = Bx[t] if Bx.shape[0] == L else Bx[0]
        C_t = Cx[t] if Cx.shape[0] == L else Cx[0]
        x = torch.exp(dt * A) * x + dt * B_t * u[:, :, t, None].to(cdt)
        ys.append((x * C_t).sum(-1))
    out = _finish(torch.stack(ys, dim=-1), u, D, z, dtype)
    return (out, x) if return_last_state else out  # the running state's dtype (fp32 for half inputs), as mamba_ssm


def selective_scan_plain(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    """The scan in plain, out-of-place tensor operations, for exporters (forward only).

    ``exp(delta*A)`` and ``delta*B*u`` for the whole sequence at once, then two operations per
    step (``h = dA[t] * h + dBu[t]``), then the readout of every state at once: the fewest
    operations an exported graph can do the recurrence in. Equal to :func:`selective_scan_ref`."""
    _check(u, delta, A, B, C, D, z, delta_bias)
    dtype, cdt = u.dtype, _compute_dtype(u)
    L = u.shape[2]
    delta = _prepare_delta(delta, delta_bias, delta_softplus, cdt).permute(2, 0, 1).unsqueeze(-1)  # [L, B, D, 1]
    Bx, Cx = _as_lbdn(B.to(cdt), u.shape[1]), _as_lbdn(C.to(cdt), u.shape[1])
    dA = torch.exp(delta * A.to(cdt))                                          # [L, B, D, N]
    dBu = delta * u.to(cdt).permute(2, 0, 1).unsqueeze(-1) * Bx
    h = dBu[0]
    states = [h]
    for t in range(1, L):
        h = dA[t] * h + dBu[t]
        states.append(h)
    y = (torch.stack(states) * Cx).sum(-1).permute(1, 2, 0)                   # [B, D, L]
    out = _finish(y, u, D, z, dtype)
    return (out, h) if return_last_state else out


def _groups(M: torch.Tensor) -> int:
    return M.shape[1] if M.dim() == 4 else 1


def _as_blocked(M: torch.Tensor, G: int, d: int) -> torch.Tensor:
    """B or C in the blocked scan's layout, broadcastable to ``[L, B, G, D/G, N]``."""
    if M.dim() == 2:  # [D, N]: time-invariant
        return M.reshape(1, 1, G, d // G, M.shape[1])
    if M.dim() == 3:  # [B, N, L]: one B/C for every channel
        return M.permute(2, 0, 1).unsqueeze(2).unsqueeze(2)
    if M.shape[1] == G:  # [B, G, N, L]
        return M.permute(3, 0, 1, 2).unsqueeze(3)
    return _as_lbdn(M, d).unsqueeze(2)  # groups differing between B and C: per channel, G = 1


def selective_scan_fast(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                        return_last_state=False):
    """Same result as :func:`selective_scan_ref`, computed by the time-blocked scan
    (:mod:`.blocked_scan`): cache-sized blocks, states recomputed in backward."""
    _check(u, delta, A, B, C, D, z, delta_bias)
    dtype, cdt = u.dtype, _compute_dtype(u)
    b, d, L = u.shape
    G = max(_groups(B), _groups(C))
    if _groups(B) not in (1, G) or _groups(C) not in (1, G):
        G = 1
    lay = lambda t: t.to(cdt).permute(2, 0, 1).reshape(L, b, G, d // G)  # noqa: E731  [B, D, L] -> [L, B, G, Dg]
    delta = _prepare_delta(delta, delta_bias, delta_softplus, cdt)
    y, last = blocked_scan(lay(delta).contiguous(), lay(u).contiguous(), A.to(cdt).reshape(G, d // G, -1),
                           _as_blocked(B.to(cdt), G, d), _as_blocked(C.to(cdt), G, d))
    out = _finish(y.reshape(L, b, d).permute(1, 2, 0), u, D, z, dtype)
    return (out, last.reshape(b, d, -1)) if return_last_state else out


@functools.lru_cache(maxsize=1)
def _mamba_ssm_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as fn
    except Exception:  # not installed, or installed without its compiled extension
        return None
    return fn


def cuda_kernel_available() -> bool:
    """True when ``mamba_ssm``'s CUDA selective scan can be used (imports it; call on CUDA only)."""
    return torch.cuda.is_available() and _mamba_ssm_fn() is not None


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                      return_last_state=False):
    """Dispatching selective scan. CUDA tensors: the Triton kernels, or ``mamba_ssm`` when
    ``SPIKMAMBA_CUDA_KERNELS=mamba_ssm`` (see ``nn/kernels.py``); otherwise, and for float64, the
    time-blocked PyTorch path; while a model is exported, the plain loop (``nn/export.py``)."""
    if exporting():
        return selective_scan_plain(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if u.is_cuda and cuda_kernels() == "mamba_ssm":
        fn = _mamba_ssm_fn()
        if fn is None:
            raise RuntimeError("SPIKMAMBA_CUDA_KERNELS=mamba_ssm, but mamba_ssm's selective scan does not import "
                               "(pip install mamba-ssm, built for this CUDA); unset it to use the Triton kernels")
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if u.dtype != torch.float64 and use_triton(u):
        from .triton_scan import selective_scan_triton

        return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return selective_scan_fast(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
