"""Mamba's selective scan with ``mamba_ssm.selective_scan_fn``'s exact signature and semantics.

For each batch ``b``, channel ``d`` and state ``n``::

    delta = softplus(delta + delta_bias)              (bias / softplus optional)
    x[t]  = exp(delta[t] * A[d, n]) * x[t-1] + delta[t] * B[t, n] * u[t]
    y[t]  = sum_n C[t, n] * x[t, n] + D[d] * u[t]
    out   = y * silu(z)                               (when z is given)

Shapes: ``u, delta, z: [B, D, L]``; ``A: [D, N]``; ``B, C``: ``[D, N]`` (time-invariant),
``[B, N, L]`` (selective) or ``[B, G, N, L]`` (G groups sharing B/C); ``D, delta_bias: [D]``.

Entry points:
* :func:`selective_scan_ref`    - the recurrence as a plain loop; the readable definition.
* :func:`selective_scan_fast`   - the same maths, time-blocked with a hand-written backward that
  recomputes each block (:mod:`.blocked_scan`): the ``spikmamba::selective_scan`` operator's
  PyTorch backend (:mod:`.scan_op`); tested equal to the reference, forward and backward.
* :func:`selective_scan_triton` - the operator's Triton backend (:mod:`.triton_scan`).
* :func:`selective_scan_fn`     - what models call: the backend ``nn/kernels.py`` chooses (CUDA:
  Triton, or ``mamba_ssm``'s when asked for; otherwise the PyTorch one). Neither Triton nor
  ``mamba_ssm`` is imported for CPU tensors.
"""
from __future__ import annotations

import functools

import torch

from ...errors import InputError, MissingDependency
from ..export_mode import exporting
from ..kernels import scan_backend
from .scan_math import as_lbdn, check_scan_inputs, compute_dtype, finish, groups_agree, groups_of, prepare_delta
from .scan_op import selective_scan as _scan_op


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """The scan exactly as the equations read: one loop over time. Slow; for tests and reading."""
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype, cdt = u.dtype, compute_dtype(u)
    b, d, L = u.shape
    delta = prepare_delta(delta, delta_bias, delta_softplus, cdt)
    Bx, Cx = as_lbdn(B.to(cdt), d), as_lbdn(C.to(cdt), d)
    A = A.to(cdt)
    x = u.new_zeros((b, d, A.shape[1]), dtype=cdt)
    ys = []
    for t in range(L):
        dt = delta[:, :, t, None]  # [B, D, 1]
        B_t = Bx[t] if Bx.shape[0] == L else Bx[0]
        C_t = Cx[t] if Cx.shape[0] == L else Cx[0]
        x = torch.exp(dt * A) * x + dt * B_t * u[:, :, t, None].to(cdt)
        ys.append((x * C_t).sum(-1))
    out = finish(torch.stack(ys, dim=-1), u, D, z, dtype)
    return (out, x) if return_last_state else out  # the running state's dtype (fp32 for half inputs), as mamba_ssm


def selective_scan_plain(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    """The scan in plain, out-of-place tensor operations, for exporters (forward only).

    ``exp(delta*A)`` and ``delta*B*u`` for the whole sequence at once, then two operations per
    step (``h = dA[t] * h + dBu[t]``), then the readout of every state at once: the fewest
    operations an exported graph can do the recurrence in. Equal to :func:`selective_scan_ref`."""
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype, cdt = u.dtype, compute_dtype(u)
    L = u.shape[2]
    delta = prepare_delta(delta, delta_bias, delta_softplus, cdt).permute(2, 0, 1).unsqueeze(-1)  # [L, B, D, 1]
    Bx, Cx = as_lbdn(B.to(cdt), u.shape[1]), as_lbdn(C.to(cdt), u.shape[1])
    dA = torch.exp(delta * A.to(cdt))                                          # [L, B, D, N]
    dBu = delta * u.to(cdt).permute(2, 0, 1).unsqueeze(-1) * Bx
    h = dBu[0]
    states = [h]
    for t in range(1, L):
        h = dA[t] * h + dBu[t]
        states.append(h)
    y = (torch.stack(states) * Cx).sum(-1).permute(1, 2, 0)                   # [B, D, L]
    out = finish(y, u, D, z, dtype)
    return (out, h) if return_last_state else out


def selective_scan_fast(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                        return_last_state=False):
    """Same result as :func:`selective_scan_ref`, computed by the time-blocked scan
    (:mod:`.blocked_scan`: cache-sized blocks, states recomputed in backward) as the
    ``spikmamba::selective_scan`` operator's PyTorch backend."""
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    out, last, _, _ = _scan_op(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), "torch")
    return (out, last) if return_last_state else out


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    """:func:`selective_scan_ref`'s result from the Triton kernels (:mod:`.triton_scan`; CUDA
    tensors, or CPU tensors under ``TRITON_INTERPRET=1``), as the operator's Triton backend."""
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None]
    if len({t.device for t in tensors}) > 1:
        raise InputError(f"selective scan: the tensors are on different devices "
                         f"({sorted({str(t.device) for t in tensors})}); move them to one")
    if u.dtype == torch.float64:
        raise InputError("the Triton scan computes in float32; use selective_scan_fast for float64")
    if not groups_agree(B, C):
        raise InputError(f"B has {groups_of(B)} groups and C {groups_of(C)}; they must match (or one be ungrouped)")
    out, last, _, _ = _scan_op(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), "triton")
    return (out, last) if return_last_state else out  # fp32, the running state's dtype, as mamba_ssm


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
    """Dispatching selective scan: the backend :func:`~spikmamba.nn.kernels.scan_backend` names
    (CUDA tensors: the Triton kernels, or ``mamba_ssm`` when ``SPIKMAMBA_CUDA_KERNELS=mamba_ssm``;
    otherwise the time-blocked PyTorch path); while a model is exported, the plain loop."""
    if exporting():
        return selective_scan_plain(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    backend = scan_backend(u)
    if backend == "mamba_ssm":
        fn = _mamba_ssm_fn()
        if fn is None:
            raise MissingDependency("SPIKMAMBA_CUDA_KERNELS=mamba_ssm, but mamba_ssm's selective scan does not import "
                               "(pip install mamba-ssm, built for this CUDA); unset it to use the Triton kernels")
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    impl = selective_scan_triton if backend == "triton" else selective_scan_fast
    return impl(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
