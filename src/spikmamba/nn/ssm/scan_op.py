"""The selective scan as PyTorch operators: ``torch.ops.spikmamba.selective_scan`` and its
backward, ``torch.ops.spikmamba.selective_scan_backward``.

Why operators and not a bare ``autograd.Function``: ``torch.compile`` and ``torch.export`` see
one opaque op with a known output shape (the fake implementation below) instead of tracing into
a Python loop or a Triton launch, so a compiled model keeps the hand-written kernels, and the
scalars reach the kernels at run time in the kernels' own dtype.

``backend`` names the implementation, chosen by the caller (``nn/kernels.py``, one place):

* ``"torch"``: PyTorch operations on any device (:mod:`.torch_scan`, the time-blocked scan);
* ``"triton"``: the Triton kernels (:mod:`.triton_scan`), on CUDA tensors, or on CPU tensors
  under ``TRITON_INTERPRET=1``.

Besides ``(out, last_state)`` the forward returns what its backend's backward needs (the states
at block or tile starts, and the pre-gate output for the PyTorch backend); the backward op takes
them back. Absent optional gradients come back as empty tensors (an op returns no None)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..kernels import check_op_backend
from . import torch_scan
from .scan_math import compute_dtype


def _triton_scan():
    from . import triton_scan  # imports triton: only when that backend is asked for

    return triton_scan


@torch.library.custom_op("spikmamba::selective_scan", mutates_args=())
def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                   z: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool,
                   backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(out, last_state, saved_states, saved_y)``; the last two are for the backward only."""
    check_op_backend(backend, "selective scan")
    if backend == "triton":
        out, last, ck = _triton_scan().forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        return out, last, ck, u.new_empty((0,), dtype=torch.float32)
    return torch_scan.forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


@selective_scan.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend):
    b, d, L = u.shape
    cdt = compute_dtype(u)
    if backend == "triton":
        states, kept, sdt = _triton_scan().saved_shape(u, A), (0,), torch.float32
    else:
        (states, kept), sdt = torch_scan.saved_shapes(u, A, z is not None), cdt
    return (u.new_empty(u.shape), u.new_empty((b, d, A.shape[1]), dtype=cdt), u.new_empty(states, dtype=sdt),
            u.new_empty(kept, dtype=sdt))


@torch.library.custom_op("spikmamba::selective_scan_backward", mutates_args=())
def selective_scan_backward(gout: Tensor, glast: Tensor | None, u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
                            C: Tensor, D: Tensor | None, z: Tensor | None, delta_bias: Tensor | None,
                            saved_states: Tensor, saved_y: Tensor, delta_softplus: bool,
                            backend: str) -> list[Tensor]:
    """The gradients of ``(u, delta, A, B, C, D, z, delta_bias)``; empty for an absent input."""
    check_op_backend(backend, "selective scan")
    if backend == "triton":
        grads = _triton_scan().backward(gout, glast, u, delta, A, B, C, D, z, delta_bias, saved_states,
                                        delta_softplus)
    else:
        grads = torch_scan.backward(gout, glast, u, delta, A, B, C, D, z, delta_bias, saved_states, saved_y,
                                    delta_softplus)
    return [g.contiguous() if g is not None else u.new_empty((0,)) for g in grads]  # as the fake promises


@selective_scan_backward.register_fake
def _(gout, glast, u, delta, A, B, C, D, z, delta_bias, saved_states, saved_y, delta_softplus, backend):
    return [t.new_empty(t.shape) if t is not None else u.new_empty((0,)) for t in (u, delta, A, B, C, D, z, delta_bias)]


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend = inputs
    _, _, states, kept = output
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states, kept)
    ctx.delta_softplus, ctx.backend = delta_softplus, backend


def _backward(ctx, gout, glast, _g_states, _g_kept):
    u, delta, A, B, C, D, z, delta_bias, states, kept = ctx.saved_tensors
    grads = torch.ops.spikmamba.selective_scan_backward(gout, glast, u, delta, A, B, C, D, z, delta_bias, states,
                                                        kept, ctx.delta_softplus, ctx.backend)
    present = (u, delta, A, B, C, D, z, delta_bias)
    return (*(g if t is not None else None for g, t in zip(grads, present)), None, None)


torch.library.register_autograd("spikmamba::selective_scan", _backward, setup_context=_setup_context)
