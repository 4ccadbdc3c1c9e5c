"""The Mamba mixer (Gu & Dao 2023) and its bidirectional form (Vision Mamba's "bimamba").

``Mamba``: in_proj -> (x, z); x -> causal depthwise conv1d -> SiLU -> x_proj -> (dt, B, C);
dt -> dt_proj -> softplus; selective scan; gate by SiLU(z); out_proj. Sequence ``[B, L, D]``.

``bidirectional=True`` adds a second conv/x_proj/dt_proj/A/D set that scans the flipped
sequence; the two outputs are averaged before the shared out_proj (Vim v2, ``if_divide_out``).
Each direction's conv/x_proj/dt_proj/A_log/D lives in its own ``_ScanBranch`` (``fwd``/``bwd``),
so the two directions share one piece of code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from ..layers import DropPath
from .selective_scan import selective_scan_fn


class _ScanBranch(nn.Module):
    """conv1d + x_proj + dt_proj + A_log + D: everything one scan direction owns."""

    def __init__(self, d_inner, d_state, d_conv, dt_rank, dt_min, dt_max, dt_init_floor, conv_bias):
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        # dt initialised log-uniform in [dt_min, dt_max]; bias = softplus^-1(dt)
        nn.init.uniform_(self.dt_proj.weight, -dt_rank**-0.5, dt_rank**-0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(d_inner))
        self.D._no_weight_decay = True

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x, z: [B, D_inner, L] -> y: [B, D_inner, L]."""
        L = x.shape[-1]
        x = F.silu(self.conv1d(x)[..., :L])
        dbl = self.x_proj(x.transpose(1, 2))  # [B, L, R + 2N]
        dt, Bm, Cm = torch.split(dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (self.dt_proj.weight @ dt.transpose(1, 2))  # [B, D_inner, L]
        A = -torch.exp(self.A_log.float())
        return selective_scan_fn(
            x, dt, A, Bm.transpose(1, 2).contiguous(), Cm.transpose(1, 2).contiguous(), self.D.float(),
            z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )


    def count_macs(self, inputs, output) -> float:
        """Energy accounting (``analysis/ops``): dt projection, state update (3 per state
        element), readout (1 per state element) and ``D*u``; conv1d and x_proj count themselves."""
        Bsz, D, L = inputs[0].shape
        return float(Bsz * L * (self.dt_rank * D + 4 * D * self.d_state + D))


class Mamba(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        bidirectional: bool = False,
    ):
        super().__init__()
        for name, v in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv)):
            if int(v) < 1:
                raise InputError(f"{name} must be >= 1, got {v}")
        self.d_model = d_model
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.bidirectional = bidirectional
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        args = (self.d_inner, d_state, d_conv, self.dt_rank, dt_min, dt_max, dt_init_floor, conv_bias)
        self.fwd = _ScanBranch(*args)
        self.bwd = _ScanBranch(*args) if bidirectional else None
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise InputError(
                f"Mamba expects [batch, length, d_model={self.d_model}], got {tuple(hidden_states.shape)}"
            )
        xz = self.in_proj(hidden_states).transpose(1, 2)  # [B, 2*D_inner, L]
        x, z = xz.chunk(2, dim=1)
        y = self.fwd(x, z)
        if self.bwd is not None:
            y_b = self.bwd(x.flip(-1), z.flip(-1)).flip(-1)
            y = 0.5 * (y + y_b)
        return self.out_proj(y.transpose(1, 2))


class RMSNorm(nn.Module):
    """Root-mean-square layer norm (Zhang & Sennrich 2019), as used by Mamba/Vim blocks."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class MambaBlock(nn.Module):
    """Pre-norm residual block ``x + Mamba(RMSNorm(x))`` (Vim's block, unfused)."""

    def __init__(self, dim: int, drop_path: float = 0.0, **mamba_kwargs):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.mixer = Mamba(dim, **mamba_kwargs)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mixer(self.norm(x)))
