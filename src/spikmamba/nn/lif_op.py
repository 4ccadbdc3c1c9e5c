"""The multi-step LIF as PyTorch operators: ``torch.ops.spikmamba.multistep_lif`` and its
backward, and :func:`multistep_lif`, the entry point the neurons call.

As for the scan (``nn/ssm/scan_op.py``): ``torch.compile`` and ``torch.export`` see one op with a
known output shape, not a T-step Python loop or a Triton launch, and the coefficients reach the
kernels at run time in the kernels' dtype. ``backend`` is ``"torch"`` (``nn/lif_kernel.py``, any
device) or ``"triton"`` (``nn/lif_triton.py``; CUDA, or CPU under ``TRITON_INTERPRET=1``), chosen
in ``nn/kernels.py``. An op carries its surrogate by name and ``alpha``, so only the built-in
surrogates take it; another surrogate runs :class:`~.lif_kernel.MultiStepLIFFunction`."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import InputError
from .kernels import check_op_backend, lif_backend
from .lif_kernel import MultiStepLIFFunction, lif_backward, lif_forward
from .surrogate import SURROGATES, SurrogateFunction


def _lif_triton():
    from . import lif_triton  # imports triton: only when that backend is asked for

    return lif_triton


@torch.library.custom_op("spikmamba::multistep_lif", mutates_args=())
def multistep_lif_op(x_seq: Tensor, v0: Tensor, k: Tensor, v_threshold: float, v_reset: float | None,
                     decay_input: bool, surrogate: str, alpha: float, detach_reset: bool, keep: bool,
                     backend: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(spikes, v after the last step, kept)``: ``kept`` is the charged membrane the backward
    reads (the PyTorch backend always has it; the Triton one writes it only when ``keep``)."""
    check_op_backend(backend, "LIF")
    if backend == "triton":
        return _lif_triton().forward(x_seq, v0, float(k), v_threshold, v_reset, decay_input, keep)
    return lif_forward(x_seq, v0, float(k), v_threshold, v_reset, decay_input)


@multistep_lif_op.register_fake
def _(x_seq, v0, k, v_threshold, v_reset, decay_input, surrogate, alpha, detach_reset, keep, backend):
    kept = (x_seq.new_empty(_lif_triton().saved_shape(x_seq, keep), dtype=torch.float32) if backend == "triton"
            else x_seq.new_empty(x_seq.shape))
    return x_seq.new_empty(x_seq.shape), x_seq.new_empty(x_seq.shape[1:]), kept


@torch.library.custom_op("spikmamba::multistep_lif_backward", mutates_args=())
def multistep_lif_backward(grad_s: Tensor | None, grad_v: Tensor | None, kept: Tensor, spikes: Tensor,
                           v0: Tensor, x_seq: Tensor | None, k: Tensor, v_threshold: float,
                           v_reset: float | None, decay_input: bool, surrogate: str, alpha: float,
                           detach_reset: bool, backend: str) -> list[Tensor]:
    """``[grad x, grad v0, grad k]``; grad k is empty unless ``x_seq`` (needed for it) is given."""
    check_op_backend(backend, "LIF")
    if backend == "triton":
        gx, gv0, gk = _lif_triton().backward(grad_s, grad_v, kept, spikes, v0, x_seq, float(k), v_threshold, v_reset,
                                             decay_input, detach_reset, surrogate, alpha)
    else:
        gx, gv0, gk = lif_backward(grad_s, grad_v, kept, spikes, v0, x_seq, float(k), v_threshold, v_reset,
                                   decay_input, detach_reset, SURROGATES[surrogate](alpha))
    return [gx.contiguous(), gv0.contiguous(), gk.reshape(()).to(k.dtype) if gk is not None else k.new_empty((0,))]


@multistep_lif_backward.register_fake
def _(grad_s, grad_v, kept, spikes, v0, x_seq, k, v_threshold, v_reset, decay_input, surrogate, alpha, detach_reset,
      backend):
    return [spikes.new_empty(spikes.shape), v0.new_empty(v0.shape),
            k.new_empty(() if x_seq is not None else (0,))]


def _setup_context(ctx, inputs, output):
    x_seq, v0, k, *params, keep, backend = inputs
    spikes, _, kept = output
    ctx.save_for_backward(kept, spikes, v0, x_seq if ctx.needs_input_grad[2] else None, k)
    ctx.params, ctx.backend = params, backend


def _backward(ctx, grad_s, grad_v, _g_kept):
    kept, spikes, v0, x_seq, k = ctx.saved_tensors
    gx, gv0, gk = torch.ops.spikmamba.multistep_lif_backward(grad_s, grad_v, kept, spikes, v0, x_seq, k, *ctx.params,
                                                              ctx.backend)
    return gx, gv0, gk if x_seq is not None else None, *([None] * 8)


torch.library.register_autograd("spikmamba::multistep_lif", _backward, setup_context=_setup_context)


def _run(x_seq, v0, k, v_threshold, v_reset, decay_input, detach_reset, surrogate, backend):
    k = k if torch.is_tensor(k) else torch.tensor(float(k), dtype=torch.float64)
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in (x_seq, v0, k))
    spikes, v, _ = multistep_lif_op(x_seq, v0, k, float(v_threshold), None if v_reset is None else float(v_reset),
                                    bool(decay_input), surrogate.kernel_name, surrogate.alpha, bool(detach_reset),
                                    keep, backend)
    return spikes, v


def _as_membrane(v0, x_seq: torch.Tensor) -> torch.Tensor:
    return v0 if torch.is_tensor(v0) else torch.full((), float(v0), dtype=x_seq.dtype, device=x_seq.device)


def multistep_lif(
    x_seq: torch.Tensor,
    v0: float | torch.Tensor,
    k: float | torch.Tensor,
    v_threshold: float,
    v_reset: float | None,
    decay_input: bool,
    detach_reset: bool,
    surrogate: SurrogateFunction,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``T = x_seq.shape[0]`` LIF steps; returns ``(spikes [T, ...], v after the last step)``.

    ``k = 1/tau`` may be a float or a 0-d tensor that requires grad (parametric LIF). The backend
    is :func:`~spikmamba.nn.kernels.lif_backend`'s choice (CUDA: Triton when it imports)."""
    v0 = _as_membrane(v0, x_seq)
    if surrogate.kernel_name is None:
        lif_backend(x_seq, surrogate)  # says once, on CUDA, why the fused kernels do not run
        return MultiStepLIFFunction.apply(x_seq, v0, k, v_threshold, v_reset, decay_input, detach_reset, surrogate)
    return _run(x_seq, v0, k, v_threshold, v_reset, decay_input, detach_reset, surrogate, lif_backend(x_seq, surrogate))


def multistep_lif_triton(x_seq, v0, k, v_threshold, v_reset, decay_input, detach_reset, surrogate):
    """:func:`multistep_lif` on the Triton kernels, whatever the device (CPU tensors need
    ``TRITON_INTERPRET=1``); same arguments and results."""
    if surrogate.kernel_name is None:
        raise InputError(f"the Triton LIF knows the surrogates {sorted(SURROGATES)}, not {type(surrogate).__name__}")
    if x_seq.dtype == torch.float64:
        raise InputError("the Triton LIF computes in float32; use the PyTorch kernel for float64")
    v0 = _as_membrane(v0, x_seq)
    if v0.device != x_seq.device:
        raise InputError(f"the membrane is on {v0.device} and the input on {x_seq.device}; move them to one")
    if x_seq.shape[0] == 0 or math.prod(x_seq.shape[1:]) == 0:
        raise InputError(f"multi-step input must be [T, B, ...] with T >= 1 and neurons, got {tuple(x_seq.shape)}")
    return _run(x_seq, v0, k, v_threshold, v_reset, decay_input, detach_reset, surrogate, "triton")
