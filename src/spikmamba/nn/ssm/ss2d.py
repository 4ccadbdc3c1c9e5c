"""SS2D, VMamba's 2-D selective scan: four 1-D scans over an image's tokens, merged back.

The ``H x W`` map is read as four sequences of length ``L = H*W``: row-major, column-major and
both of those reversed (:func:`cross_scan`). Each direction ``k`` has its own input-dependent
``dt, B, C`` projections, ``A`` and ``D``, and runs Mamba's selective scan; the four outputs
are put back in row-major order and summed (:func:`cross_merge`), then normalised and
projected. All four directions go through one :func:`selective_scan_fn` call: the directions
are stacked along the channel axis and ``B, C`` are passed as 4 groups.

No ``z`` gate (VMamba's ``v05_noz``): in SVMamba the gate is the spike train that follows.
Input and output are channels-last ``[N, H, W, D]``; any ``H, W``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import InputError
from .selective_scan import selective_scan_fn

DIRECTIONS = 4


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """``[N, D, H, W] -> [N, 4, D, H*W]``: row-major, column-major, then both reversed."""
    row = x.flatten(2)
    col = x.transpose(2, 3).flatten(2)
    fwd = torch.stack([row, col], dim=1)
    return torch.cat([fwd, fwd.flip(-1)], dim=1)


def cross_merge(ys: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`cross_scan`, summed: ``[N, 4, D, H*W] -> [N, D, H*W]`` (row-major)."""
    N, K, D, L = ys.shape
    ys = ys[:, :2] + ys[:, 2:].flip(-1)
    col = ys[:, 1].reshape(N, D, W, H).transpose(2, 3).reshape(N, D, L)
    return ys[:, 0] + col


class SS2D(nn.Module):
    """Four-direction selective scan over ``[N, H, W, d_model]`` tokens (see the module docstring).

    ``d_state`` defaults to 1, SVMamba's published setting (VMamba uses 16).
    """

    def __init__(self, d_model: int, d_state: int = 1, dt_rank: int | str = "auto", dt_min: float = 0.001,
                 dt_max: float = 0.1, dt_init_floor: float = 1e-4, out_norm: bool = True):
        super().__init__()
        if d_model < 1 or d_state < 1:
            raise InputError(f"SS2D needs d_model >= 1 and d_state >= 1, got {d_model}, {d_state}")
        K, D = DIRECTIONS, d_model
        self.d_model, self.d_state = D, d_state
        self.dt_rank = math.ceil(D / 16) if dt_rank == "auto" else int(dt_rank)
        R = self.dt_rank
        # per direction: x -> (dt [R], B [N], C [N]); dt [R] -> [D]
        self.x_proj_weight = nn.Parameter(torch.empty(K, R + 2 * d_state, D).uniform_(-D**-0.5, D**-0.5))
        self.dt_proj_weight = nn.Parameter(torch.empty(K, D, R).uniform_(-R**-0.5, R**-0.5))
        dt = torch.exp(torch.rand(K, D) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(
            min=dt_init_floor
        )
        self.dt_proj_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(K, D, 1))
        self.D = nn.Parameter(torch.ones(K, D))
        for p in (self.A_log, self.D):
            p._no_weight_decay = True
        self.out_norm = nn.LayerNorm(D) if out_norm else nn.Identity()
        self.out_proj = nn.Linear(D, D, bias=False)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """The merged four-direction scan: ``[N, D, H, W] -> [N, D, H*W]`` (row-major)."""
        N, D, H, W = x.shape
        K, L, R, S = DIRECTIONS, H * W, self.dt_rank, self.d_state
        xs = cross_scan(x)                                                  # [N, K, D, L]
        dbl = torch.einsum("nkdl,kcd->nkcl", xs, self.x_proj_weight)        # [N, K, R+2S, L]
        dts, Bs, Cs = torch.split(dbl, [R, S, S], dim=2)
        dts = torch.einsum("nkrl,kdr->nkdl", dts, self.dt_proj_weight)      # [N, K, D, L]
        A = -torch.exp(self.A_log.float()).reshape(K * D, S)
        ys = selective_scan_fn(xs.reshape(N, K * D, L), dts.reshape(N, K * D, L), A, Bs.contiguous(), Cs.contiguous(),
                               self.D.float().reshape(-1), delta_bias=self.dt_proj_bias.float().reshape(-1),
                               delta_softplus=True)
        return cross_merge(ys.reshape(N, K, D, L), H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-1] != self.d_model:
            raise InputError(f"SS2D expects [N, H, W, {self.d_model}] (channels last), got {tuple(x.shape)}")
        N, H, W, D = x.shape
        y = self.scan(x.permute(0, 3, 1, 2)).transpose(1, 2).reshape(N, H, W, D)
        return self.out_proj(self.out_norm(y))

    def count_macs(self, inputs, output) -> float:
        """Energy accounting (see ``analysis/ops``): per direction and token, the x and dt
        projections and the scan (3 per state element for the update, 1 for the readout, 1 for
        ``D*u``), plus the output projection (a Linear, counted by its own hook)."""
        N, H, W, D = inputs[0].shape
        R, S = self.dt_rank, self.d_state
        per_token = D * (R + 2 * S) + R * D + 4 * D * S + D
        return float(N * H * W * DIRECTIONS * per_token)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, dt_rank={self.dt_rank}, directions={DIRECTIONS}"


def ss2d_scan_reference(module: SS2D, x: torch.Tensor) -> torch.Tensor:
    """The merged scan of :meth:`SS2D.scan`, written as a plain loop over the four directions with
    the token order of each built pixel by pixel: the readable definition the tests compare to."""
    from .selective_scan import selective_scan_ref

    N, D, H, W = x.shape
    row_order = [h * W + w for h in range(H) for w in range(W)]
    col_order = [h * W + w for w in range(W) for h in range(H)]
    orders = [row_order, col_order, row_order[::-1], col_order[::-1]]
    flat = x.flatten(2)
    out = torch.zeros_like(flat)
    R, S = module.dt_rank, module.d_state
    for k, order in enumerate(orders):
        seq = flat[:, :, order]                                             # [N, D, L] in direction k
        dbl = torch.einsum("cd,ndl->ncl", module.x_proj_weight[k], seq)
        dt, Bm, Cm = torch.split(dbl, [R, S, S], dim=1)
        dt = torch.einsum("dr,nrl->ndl", module.dt_proj_weight[k], dt)
        y = selective_scan_ref(seq, dt, -torch.exp(module.A_log[k]), Bm, Cm, module.D[k],
                               delta_bias=module.dt_proj_bias[k], delta_softplus=True)
        out[:, :, order] += y                                               # back to row-major, summed
    return out


__all__ = ["SS2D", "cross_merge", "cross_scan", "ss2d_scan_reference"]
