"""The selective-scan recurrence, time-blocked, with a hand-written backward that recomputes each block.

Why: written over whole sequences, the scan materialises ``[L, B, D, N]`` tensors (the decays,
the inputs, every state, then the adjoints), several hundred MB at L=1024 for a Mamba layer, and
every elementwise pass streams them through memory. Here time is cut into blocks of ``K`` steps
sized so that one block's ``[K, B, D, N]`` tensors stay in cache:

* forward, per block: ``dA = exp(delta*A)`` and ``dBu = delta*u*B`` for the whole block at once,
  then ``h[t] = dA[t]*h[t-1] + dBu[t]`` one step at a time (one in-place ``addcmul``), then
  ``y = sum_n C*h`` for the block. Only the state entering each block is kept for backward.
* backward, blocks in reverse: recompute the block's ``dA`` and states from its entry state,
  run the adjoint ``g[t] = C[t]*gy[t] + dA[t+1]*g[t+1]`` backwards (one ``addcmul`` per step),
  and form every gradient for the block at once::

      grad dBu = g                      grad dA = g * h[t-1]
      grad delta = sum_n (grad dA * dA * A + g * u * B)
      grad A = sum_(t,b) grad dA * dA * delta
      grad u = sum_n g * delta * B      grad B = g * delta * u      grad C = gy * h

Memory is the inputs plus one state per block (linear in L, a small constant); the tests check
values and gradients against the plain loop of :func:`~.selective_scan.selective_scan_ref`.
The operator (:mod:`.scan_op`) wires the two passes to autograd, around the glue of :mod:`.torch_scan`.

Layout: ``delta, u: [L, B, G, Dg]``; ``A: [G, Dg, N]``; ``B, C`` broadcastable to
``[L, B, G, Dg, N]`` (time-invariant ``[1, 1, 1, D, N]``, selective ``[L, B, 1, 1, N]``, grouped
``[L, B, G, 1, N]``). Returns ``y: [L, B, G, Dg]`` and the last state ``[B, G, Dg, N]``.
"""
from __future__ import annotations

import torch

#: elements of one block's [K, B, D, N] tensor: about 1 MB of float32, so a block's handful of
#: temporaries stays in a core's cache
BLOCK_ELEMENTS = 1 << 18


def block_length(L: int, state_elements: int) -> int:
    return max(1, min(L, BLOCK_ELEMENTS // max(state_elements, 1)))


def _slice(M: torch.Tensor, a: int, b: int) -> torch.Tensor:
    return M[a:b] if M.shape[0] > 1 else M


def _recur(dA: torch.Tensor, hs: torch.Tensor, h: torch.Tensor) -> None:
    """``hs[t] = dA[t] * hs[t-1] + hs[t]`` in place, one step at a time, ``h`` being the state
    before step 0.
    The steps are taken apart once (``unbind``) rather than indexed each step: with small states
    (batch 1, as in live recognition) the indexing cost as much as the arithmetic."""
    steps, decays = hs.unbind(0), dA.unbind(0)
    steps[0].addcmul_(decays[0], h)
    for t in range(1, len(steps)):
        steps[t].addcmul_(decays[t], steps[t - 1])


def blocked_forward(delta, u, A, Bx, Cx):
    """``(y, last_state, entries)``: the outputs, and the state entering each block (stacked,
    ``[blocks, B, G, Dg, N]``), all :func:`blocked_backward` needs besides the inputs."""
    L = delta.shape[0]
    state_shape = delta.shape[1:] + (A.shape[-1],)
    K = block_length(L, delta[0].numel() * A.shape[-1])
    y = delta.new_empty(delta.shape)
    h = delta.new_zeros(state_shape)
    entries = []
    for a in range(0, L, K):
        b = min(a + K, L)
        d = delta[a:b].unsqueeze(-1)
        dA = torch.exp(d * A)
        hs = (d * u[a:b].unsqueeze(-1)) * _slice(Bx, a, b)  # dBu, overwritten by the states
        entries.append(h)
        _recur(dA, hs, h)
        torch.sum(hs * _slice(Cx, a, b), dim=-1, out=y[a:b])
        h = hs[-1].clone()
    return y, h, torch.stack(entries)


def blocked_backward(delta, u, A, Bx, Cx, entries, gy, g_last):
    """The gradients ``(delta, u, A, Bx, Cx)`` of the recurrence, blocks in reverse, each block's
    states recomputed from its entry (``g_last``: the last state's gradient, or None)."""
    K = block_length(delta.shape[0], delta[0].numel() * A.shape[-1])
    L = delta.shape[0]
    g_delta, g_u = torch.empty_like(delta), torch.empty_like(u)
    g_A = torch.zeros_like(A)
    g_B = torch.zeros_like(Bx)
    g_C = torch.zeros_like(Cx)
    carry = g_last  # adjoint flowing into the block's last step
    starts = list(range(0, L, K))
    for i in reversed(range(len(starts))):
        a = starts[i]
        b = min(a + K, L)
        d, uu = delta[a:b].unsqueeze(-1), u[a:b].unsqueeze(-1)
        Bb, Cb = _slice(Bx, a, b), _slice(Cx, a, b)
        dA = torch.exp(d * A)
        hs = (d * uu) * Bb
        h0 = entries[i]
        _recur(dA, hs, h0)
        gyb = gy[a:b].unsqueeze(-1)
        g = gyb * Cb                                            # adjoint of the states
        if carry is not None:
            g[-1] += carry
        for t in range(b - a - 2, -1, -1):
            g[t].addcmul_(dA[t + 1], g[t + 1])
        carry = dA[0] * g[0]
        h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])
        gdA_dA = g * h_prev * dA                                # grad wrt (delta*A) inside exp
        g_delta[a:b] = (gdA_dA * A).sum(-1) + (g * uu * Bb).sum(-1)
        g_A += (gdA_dA * d).sum(dim=(0, 1))
        g_u[a:b] = (g * d * Bb).sum(-1)
        part = (g * d * uu).sum_to_size(Bb.shape)
        if Bx.shape[0] > 1:
            g_B[a:b] += part
        else:
            g_B += part
        part = (gyb * hs).sum_to_size(Cb.shape)
        if Cx.shape[0] > 1:
            g_C[a:b] += part
        else:
            g_C += part
    return g_delta, g_u, g_A, g_B, g_C
