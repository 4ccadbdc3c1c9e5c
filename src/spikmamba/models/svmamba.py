"""SVMamba: a spiking VMamba image classifier (direct encoding, SS2D, LIF spike gates).

Data flow (``x: [B, C, H, W]`` images, or ``[B, T, C, H, W]`` when the caller already has T
steps -> logits ``[B, num_classes]``)::

    conv stem      two (3x3 conv stride 2 -> LayerNorm -> GELU) blocks: patch 4, not spiking
    repeat T       direct encoding: the same features at every step (the stem runs once)
    stages         SV blocks; between stages 3x3 conv stride 2 -> LayerNorm (per time step)
    norm -> mean over T -> global average pool -> Linear

**SV block** (pre-norm residual, channels last ``[T, B, H, W, C]``)::

    h = LN(x);  a = Linear(h)                        analog features
    s = LIF(LN(a))                                   spikes over T
    g = LIF(LN(SS2D(SiLU(DWConv3x3(s)))))            spike gate
    x = x + DropPath(Linear(a * g))                  gate_form="figure" (default)
    x = x + DropPath(FFN(LN(x)))                     FFN: Linear 4x -> SiLU -> Linear

The published figure and code differ in which tensor the gate multiplies and where the skip is
taken. ``gate_form="figure"`` gates the branch's analog features ``a`` and adds to the block
input ``x`` (the figure). ``gate_form="code"`` gates the normalised input ``h`` and takes the
skip from ``h`` as well (the code's form as the issue describes it); it needs ``ssm_ratio=1``
so that ``h`` and the gate have the same width.

A LayerNorm sits in front of each LIF: with transformer initialisation (std 0.02) the Linear
outputs are ~0.02 and no neuron would ever fire, leaving the branch dead at the first step.

Neurons run over the time axis only: ``[T, B, ...]`` keeps batch and time apart, so membrane
state never flows from one sample to the next (the published code runs one LIF over a
flattened ``T*B`` axis, which does leak). State is reset at the start of every forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..nn.functional import reset_net
from ..nn.layers import DropPath, PixelNormalize, drop_path_rates, init_transformer_weights
from ..nn.neurons import build_neuron
from ..nn.ssm.ss2d import SS2D
from .registry import register_model

GATE_FORMS = ("figure", "code")


def _per_step(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 4-D channels-first op to ``[T, B, H, W, C]`` with T folded into the batch."""
    T, B = x.shape[:2]
    y = fn(x.flatten(0, 1).permute(0, 3, 1, 2))
    return y.permute(0, 2, 3, 1).unflatten(0, (T, B))


class SVBlock(nn.Module):
    def __init__(self, dim: int, d_state: int = 1, ssm_ratio: float = 1.0, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, gate_form: str = "figure", spiking: bool = True, neuron: dict | None = None):
        super().__init__()
        if gate_form not in GATE_FORMS:
            raise InputError(f"gate_form must be one of {GATE_FORMS}, got {gate_form!r}")
        inner = int(dim * ssm_ratio)
        if gate_form == "code" and inner != dim:
            raise InputError(f"gate_form='code' gates the normalised input, so it needs ssm_ratio=1 (got {ssm_ratio})")
        self.gate_form = gate_form
        neuron = dict(neuron or {})
        self.norm1 = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, inner)
        self.norm_in = nn.LayerNorm(inner)
        self.lif_in = build_neuron(spiking, **neuron)
        self.dwconv = nn.Conv2d(inner, inner, 3, padding=1, groups=inner)
        self.ss2d = SS2D(inner, d_state=d_state)
        self.norm_gate = nn.LayerNorm(inner)
        self.lif_gate = build_neuron(spiking, **neuron)
        self.out_proj = nn.Linear(inner, dim) if gate_form == "figure" else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path, batch_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, H, W, C]
        h = self.norm1(x)
        a = self.in_proj(h)
        s = self.lif_in(self.norm_in(a))
        c = _per_step(lambda t: F.silu(self.dwconv(t)), s)
        T, B = c.shape[:2]
        g = self.lif_gate(self.norm_gate(self.ss2d(c.flatten(0, 1)).unflatten(0, (T, B))))
        if self.gate_form == "figure":
            x = x + self.drop_path(self.out_proj(a * g))
        else:
            x = h + self.drop_path(h * g)
        return x + self.drop_path(self.ffn(self.norm2(x)))


class _ConvNormAct(nn.Module):
    """3x3 conv stride 2 -> LayerNorm over channels -> optional GELU, channels-first in and out."""

    def __init__(self, cin: int, cout: int, act: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(cout)
        self.act = nn.GELU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


class SVMamba(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 3, img_size: int | None = None, num_frames: int = 4,
                 patch_size: int = 4, depths=(1, 2, 4), dims=(96, 192, 384), d_state: int = 1, ssm_ratio: float = 1.0,
                 mlp_ratio: float = 4.0, drop_path_rate: float = 0.1, gate_form: str = "figure",
                 spiking: bool = True, neuron: dict | None = None, mean=(0.4914, 0.4822, 0.4465),
                 std=(0.2470, 0.2435, 0.2616)):
        super().__init__()
        if patch_size != 4:
            raise InputError(f"SVMamba's stem is two stride-2 convs, i.e. patch 4; got patch_size={patch_size}")
        if len(depths) != len(dims):
            raise InputError(f"depths {tuple(depths)} and dims {tuple(dims)} must have the same length")
        if num_frames < 1:
            raise InputError(f"num_frames (T) must be >= 1, got {num_frames}")
        self.num_frames, self.in_chans, self.num_classes = num_frames, in_chans, num_classes
        if len(mean) != in_chans or len(std) != in_chans:  # the CIFAR statistics fit RGB only
            mean, std = (0.5,) * in_chans, (0.5,) * in_chans
        self.normalise = PixelNormalize(mean, std)
        self.stem = nn.Sequential(
            _ConvNormAct(in_chans, dims[0] // 2, act=True), _ConvNormAct(dims[0] // 2, dims[0], act=True)
        )
        rates = drop_path_rates(drop_path_rate, sum(depths))
        self.stages, self.downsamples = nn.ModuleList(), nn.ModuleList()
        k = 0
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            self.stages.append(
                nn.ModuleList(
                    SVBlock(dim, d_state, ssm_ratio, mlp_ratio, rates[k + j], gate_form, spiking, neuron)
                    for j in range(depth)
                )
            )
            k += depth
            if i + 1 < len(dims):
                self.downsamples.append(_ConvNormAct(dim, dims[i + 1], act=False))
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)
        self.apply(init_transformer_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        reset_net(self)  # every clip starts from rest: no membrane state leaks from an earlier call
        x = self.normalise(x)
        if x.dim() == 4:  # direct encoding: the stem is not spiking, so run it once and repeat
            if x.shape[1] != self.in_chans:
                raise InputError(f"SVMamba expects [B, {self.in_chans}, H, W] images, got {tuple(x.shape)}")
            f = self.stem(x).permute(0, 2, 3, 1)
            f = f.unsqueeze(0).expand(self.num_frames, *f.shape)
        elif x.dim() == 5:
            if x.shape[2] != self.in_chans:
                raise InputError(f"SVMamba expects [B, T, {self.in_chans}, H, W], got {tuple(x.shape)}")
            f = _per_step(self.stem, x.transpose(0, 1).permute(0, 1, 3, 4, 2))
        else:
            raise InputError(f"SVMamba expects images [B, C, H, W] or frames [B, T, C, H, W], got {tuple(x.shape)}")
        for i, blocks in enumerate(self.stages):
            for block in blocks:
                f = block(f)
            if i < len(self.downsamples):
                f = _per_step(self.downsamples[i], f)
        return self.norm(f).permute(1, 0, 2, 3, 4)  # [B, T, h, w, C], not pooled

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = features.mean(1).mean((1, 2))  # over T, then over space
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_PUBLISHED = dict(depths=(1, 2, 4), dims=(96, 192, 384), d_state=1, ssm_ratio=1.0, mlp_ratio=4.0, num_frames=4,
                  in_chans=3, num_classes=10)


_IMAGE_CFG = {"input": {"channels": 3, "frames": 4, "size": 32, "representation": "image",
                        "normalisation": "uint8 RGB, normalised inside the model (CIFAR mean and std)"},
              "num_classes": 10}


@register_model(default_cfg=_IMAGE_CFG)
def svmamba_tiny(**overrides) -> SVMamba:
    """SVMamba tiny: depths 1/2/4, dims 96/192/384, SS2D state 1, T=4 direct encoding (published config)."""
    return SVMamba(**{**_PUBLISHED, **overrides})


@register_model(default_cfg=_IMAGE_CFG)
def svmamba_small(**overrides) -> SVMamba:
    """SVMamba small: depths 2/4/8, dims 96/192/384, SS2D state 1, T=4 (ours: the tiny model, deeper)."""
    return SVMamba(**{**_PUBLISHED, "depths": (2, 4, 8), **overrides})
