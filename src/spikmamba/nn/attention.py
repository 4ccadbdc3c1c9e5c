"""Spiking window-based linear attention (SpikMamba's SLA), inside an MLLA-style block.

Linear attention (MLLA, Han et al. 2024) with spiking queries and keys:

    q, k = LIF(BN(Linear(x)))  -> elu(.) + 1          (spikes 0/1 become 1/2: a positive kernel)
    v    = x
    z    = 1 / (q . mean(k) + 1e-6)
    out  = (RoPE(q) @ (RoPE(k)^T / sqrt(n)) @ (v / sqrt(n))) * z  + LePE(v)

computed independently inside non-overlapping ``window_size`` windows, so the cost is O(N) in
tokens (O(n * head_dim^2) per window). ``window_size=None`` (or a window covering the map) is
global attention, the published configuration. RoPE uses window-local positions, so any map
that the window divides works; LePE is a 3x3 depthwise conv over the whole map.

Tensors are channels-last and time-leading: ``[T, B, H, W, C]``. The LIF neurons run
multi-step over ``T`` with each sample's own membrane (the published code folds ``T*B``
together in places and leaks state across samples; we do not).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .layers import ChannelLastBatchNorm, DropPath, Mlp, check_channels, check_rank, to_2tuple
from .neurons import build_neuron


class RoPE2d(nn.Module):
    """2-D rotary position embedding: half the channel pairs rotate with the row, half with the column."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        if dim % 4:
            raise InputError(f"RoPE2d needs dim divisible by 4 (pairs for rows and columns), got {dim}")
        self.dim, self.base = dim, base
        self._cache: dict = {}

    def _cos_sin(self, h: int, w: int, device, dtype):
        key = (h, w, device, dtype)
        if key not in self._cache:
            k_max = self.dim // 4
            theta = 1.0 / (self.base ** (torch.arange(k_max, dtype=torch.float64) / k_max))
            rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                                        torch.arange(w, dtype=torch.float64), indexing="ij")
            angles = torch.cat([rows[..., None] * theta, cols[..., None] * theta], dim=-1)  # [h, w, dim/2]
            self._cache[key] = (angles.cos().to(device, dtype), angles.sin().to(device, dtype))
        return self._cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., h, w, dim] -> same shape, each channel pair rotated by its position's angle."""
        h, w = x.shape[-3], x.shape[-2]
        cos, sin = self._cos_sin(h, w, x.device, x.dtype)
        pairs = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
        re, im = pairs[..., 0], pairs[..., 1]
        return torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1).flatten(-2)


def window_partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """[N, H, W, C] -> [N * nWindows, wh, ww, C]."""
    n, H, W, C = x.shape
    x = x.reshape(n, H // wh, wh, W // ww, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n * (H // wh) * (W // ww), wh, ww, C)


def window_reverse(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    nb, wh, ww, C = x.shape
    n = nb // ((H // wh) * (W // ww))
    x = x.reshape(n, H // wh, W // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, H, W, C)


def resolve_window(window_size, H: int, W: int) -> tuple[int, int]:
    if window_size is None:
        return H, W
    wh, ww = to_2tuple(window_size)
    wh, ww = min(wh, H), min(ww, W)
    if H % wh or W % ww:
        raise InputError(
            f"window_size {to_2tuple(window_size)} must divide the token map {H}x{W}; "
            f"choose a divisor of both or window_size=None for global attention"
        )
    return wh, ww


class SpikingWindowLinearAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int = 8, window_size=None, qkv_bias: bool = True,
                 spiking: bool = True, neuron: dict | None = None):
        super().__init__()
        if dim % num_heads:
            raise InputError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.window_size = dim, num_heads, window_size
        self.qk = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.qk_bn = ChannelLastBatchNorm(2 * dim)
        self.qk_lif = build_neuron(spiking, **(neuron or {}))
        self.rope = RoPE2d(dim)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_rank(x, 5, "attention input", "[T, B, H, W, C]")
        check_channels(x, -1, self.dim, "attention input", "[T, B, H, W, C]")
        T, B, H, W, C = x.shape
        wh, ww = resolve_window(self.window_size, H, W)
        q, k = (F.elu(t) + 1.0 for t in self.qk_lif(self.qk_bn(self.qk(x))).chunk(2, dim=-1))
        v = x.reshape(T * B, H, W, C)
        qw, kw, vw = (window_partition(t.reshape(T * B, H, W, C), wh, ww) for t in (q, k, v))
        q_rope, k_rope = self.rope(qw), self.rope(kw)
        n, hd = wh * ww, C // self.num_heads

        def heads(t):  # [nb, wh, ww, C] -> [nb, heads, n, hd]
            return t.reshape(t.shape[0], n, self.num_heads, hd).transpose(1, 2)

        qw, kw, vw, q_rope, k_rope = map(heads, (qw, kw, vw, q_rope, k_rope))
        z = 1.0 / (qw @ kw.mean(dim=-2, keepdim=True).transpose(-2, -1) + 1e-6)
        kv = (k_rope.transpose(-2, -1) * n**-0.5) @ (vw * n**-0.5)
        out = (q_rope @ kv) * z  # [nb, heads, n, hd]
        out = window_reverse(out.transpose(1, 2).reshape(out.shape[0], wh, ww, C), H, W)
        out = out + self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return out.reshape(T, B, H, W, C)


def _dwconv(dim: int) -> nn.Conv2d:
    return nn.Conv2d(dim, dim, 3, padding=1, groups=dim)


def _apply_map_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Run a 2-D conv over channels-last ``[T, B, H, W, C]`` frames."""
    T, B, H, W, C = x.shape
    y = conv(x.reshape(T * B, H, W, C).permute(0, 3, 1, 2))
    return y.permute(0, 2, 3, 1).reshape(T, B, H, W, y.shape[1])


class SLABlock(nn.Module):
    """MLLA-style block around :class:`SpikingWindowLinearAttention`.

    x += CPE(x); y = SiLU(dwconv(Linear(LN(x)))); y = attention(y) * SiLU(Linear(LN(x)));
    x += out_proj(y); x += CPE(x); x += MLP(LN(x)).

    ``bidirectional=True`` (the published ``bisla`` variants) also attends over the reversed
    token order (the map rotated by 180 degrees, so RoPE/LePE/conv see reversed positions) with
    shared weights, and fuses the two directions with ``Linear(2C, C)`` over channels. The
    published code fuses with a ``Linear(2N, N)`` over the *token* axis, which fixes N to 256
    tokens; the channel fusion has the same parameter count at the published size and works
    for any resolution.
    """

    def __init__(self, dim: int, num_heads: int = 8, window_size=None, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, drop_path: float = 0.0,
                 bidirectional: bool = False, spiking: bool = True, neuron: dict | None = None):
        super().__init__()
        self.dim, self.bidirectional = dim, bidirectional
        self.cpe1 = _dwconv(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.act_proj = nn.Linear(dim, dim)
        self.in_proj = nn.Linear(dim, dim)
        self.dwc = _dwconv(dim)
        self.attn = SpikingWindowLinearAttention(dim, num_heads, window_size, qkv_bias, spiking, neuron)
        self.out_proj = nn.Linear(dim, dim)
        self.fuse = nn.Linear(2 * dim, dim) if bidirectional else None
        self.drop_path = DropPath(drop_path, batch_dim=1)  # [T, B, ...]: drop per sample
        self.cpe2 = _dwconv(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_rank(x, 5, "SLABlock input", "[T, B, H, W, C]")
        check_channels(x, -1, self.dim, "SLABlock input", "[T, B, H, W, C]")
        x = x + _apply_map_conv(self.cpe1, x)
        shortcut = x
        x = self.norm1(x)
        gate = F.silu(self.act_proj(x))
        y = F.silu(_apply_map_conv(self.dwc, self.in_proj(x)))
        if self.bidirectional:
            B = y.shape[1]
            # both directions in one call so the neurons see two independent samples per clip
            both = self.attn(torch.cat([y, y.flip(2, 3)], dim=1))
            y_f, y_b = both[:, :B], both[:, B:].flip(2, 3)
            y = self.fuse(torch.cat([self.out_proj(y_f * gate), self.out_proj(y_b * gate)], dim=-1))
        else:
            y = self.out_proj(self.attn(y) * gate)
        x = shortcut + self.drop_path(y)
        x = x + _apply_map_conv(self.cpe2, x)
        return x + self.drop_path(self.mlp(self.norm2(x)))
