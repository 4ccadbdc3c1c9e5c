"""Spiking patch stems: turn ``[T, B, C, H, W]`` frames into spike token maps ``[T, B, E, h, w]``.

* :class:`TubeletEmbed` - SpikMamba's spiking 3-D patch embedding: a conv with kernel/stride
  ``(1, p, p)`` (one token per p x p patch per frame), BatchNorm over channels, LIF.
* :class:`SpikingPatchSplitting` - Spikformer's SPS: conv-BN-LIF stages with max-pool
  downsampling (one per factor of 2 in the patch size) and a relative-position conv branch.

Both accept any ``H, W`` that the patch size divides and any channel count; nothing about the
batch size or resolution is stored.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from .layers import check_channels, check_rank, to_2tuple
from .neurons import build_neuron


def _check_frames(x: torch.Tensor, in_chans: int, patch: tuple[int, int], name: str) -> None:
    check_rank(x, 5, f"{name} input", "[T, B, C, H, W]")
    check_channels(x, 2, in_chans, f"{name} input", "[T, B, C, H, W]")
    H, W = x.shape[-2:]
    if H % patch[0] or W % patch[1]:
        raise InputError(
            f"{name}: input size {H}x{W} is not divisible by the patch size {patch[0]}x{patch[1]}; "
            "resize or crop the frames to a multiple of the patch size"
        )


class TubeletEmbed(nn.Module):
    """Conv (kernel = stride = patch, per frame) -> BatchNorm2d -> multi-step LIF.

    Equivalent to the published ``Conv3d(kernel=(1, p, p), stride=(1, p, p))`` (same weights
    and parameter count) but run as a 2-D conv over ``T*B`` frames, which is faster on CPU.
    """

    def __init__(self, in_chans: int = 2, embed_dim: int = 256, patch_size=8, drop: float = 0.0,
                 spiking: bool = True, neuron: dict | None = None):
        super().__init__()
        self.in_chans, self.embed_dim = in_chans, embed_dim
        self.patch_size = to_2tuple(patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, self.patch_size, stride=self.patch_size)
        self.drop = nn.Dropout(drop)
        self.bn = nn.BatchNorm2d(embed_dim)
        self.lif = build_neuron(spiking, **(neuron or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_frames(x, self.in_chans, self.patch_size, "TubeletEmbed")
        T, B = x.shape[:2]
        y = self.bn(self.drop(self.proj(x.flatten(0, 1))))
        return self.lif(y.reshape(T, -1, *y.shape[1:]))


class _ConvBNLIF(nn.Module):
    def __init__(self, cin: int, cout: int, spiking: bool, neuron: dict | None, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.lif = build_neuron(spiking, **(neuron or {}))
        self.pool = nn.MaxPool2d(3, 2, 1) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, C, H, W]
        T, B = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1)))
        y = self.lif(y.reshape(T, -1, *y.shape[1:])).flatten(0, 1)
        y = self.pool(y)
        return y.reshape(T, -1, *y.shape[1:])


class SpikingPatchSplitting(nn.Module):
    """Spikformer's SPS stem: 4 conv-BN-LIF stages (E/8, E/4, E/2, E) + a conv-BN-LIF RPE branch.

    ``patch_size`` must be a power of two from 1 to 16; its log2 gives the number of 2x
    max-pool downsamplings, placed on the last stages.
    """

    def __init__(self, in_chans: int = 2, embed_dim: int = 256, patch_size: int = 4,
                 spiking: bool = True, neuron: dict | None = None):
        super().__init__()
        n_down = math.log2(patch_size) if patch_size > 0 else -1
        if n_down != int(n_down) or not 0 <= n_down <= 4:
            raise InputError(f"SPS patch_size must be a power of two in [1, 16], got {patch_size}")
        if embed_dim % 8:
            raise InputError(f"SPS embed_dim must be divisible by 8, got {embed_dim}")
        self.in_chans, self.embed_dim, self.patch_size = in_chans, embed_dim, to_2tuple(patch_size)
        widths = [embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim]
        pools = [i >= 4 - int(n_down) for i in range(4)]
        cins = [in_chans] + widths[:-1]
        self.stages = nn.Sequential(*[_ConvBNLIF(ci, co, spiking, neuron, p) for ci, co, p in zip(cins, widths, pools)])
        self.rpe = _ConvBNLIF(embed_dim, embed_dim, spiking, neuron, pool=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_frames(x, self.in_chans, self.patch_size, "SpikingPatchSplitting")
        x = self.stages(x)
        return x + self.rpe(x)
