"""ReSpike (Xiao et al., arXiv 2409.01564): RGB action recognition, ANN on key frames, SNN on residuals.

Data flow (``x: [B, F, 3, H, W]`` clip, uint8 or normalised -> logits ``[B, num_classes]``)::

    groups         F frames cut into G = F / stride groups; frame 0 of a group is its key frame,
                   frames 1..stride-1 minus the key frame are its residual frames
    ANN            ResNet-50 on the G key frames (batch B*G), features at its four stages
    SNN            spiking pre-activation ResNet-18 on the residual frames, multi-step over the
                   stride-1 residual frames of each group (analog input at every step)
    fusion         after each SNN stage: a transformer block whose queries are the SNN features
                   (mean over time) and whose keys / values are the ANN features of that stage:
                   self-attention, cross-attention, GEGLU feed-forward, and a zero-initialised
                   output projection added back to every time step (at initialisation the SNN
                   runs as if there were no fusion). Stages larger than ``pool_to`` x ``pool_to``
                   are average-pooled to it first and the result upsampled back (published option)
    head           [ANN stage-4 features, SNN stage-4 rate] pooled, concatenated, Linear;
                   logits averaged over the G groups

ImageNet weights for the ANN come only from a local file (``ann_weights=path/to/resnet50.pth``,
torchvision's layout); nothing is downloaded. Frame differencing here is plain RGB subtraction
of normalised frames; the DVS simulator (``events/simulator.py``) works on log intensity with
per-pixel contrast thresholds, a different operation, so the two do not share code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..nn.functional import reset_net
from ..nn.layers import PixelNormalize
from .registry import register_model
from .resnet import ResNet50Features, SpikingResNet18, load_torchvision_weights

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def split_key_and_residual(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, F, C, H, W]`` -> key frames ``[B, G, C, H, W]`` and residual frames
    ``[B, G, stride-1, C, H, W]`` (each frame minus its group's key frame), ``G = F / stride``."""
    B, Fr = x.shape[:2]
    if stride < 2 or Fr % stride:
        raise InputError(f"a clip of {Fr} frames does not split into groups of stride {stride} (need stride >= 2 "
                         f"dividing the frame count)")
    groups = x.unflatten(1, (Fr // stride, stride))
    key = groups[:, :, 0]
    return key, groups[:, :, 1:] - key.unsqueeze(2)


class GEGLU(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * dim * mult)
        self.out = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate))


class CrossFusion(nn.Module):
    """SNN queries attend to ANN keys/values; the result is added to the SNN stream (zero at init)."""

    def __init__(self, dim: int, ann_dim: int, heads: int = 4, pool_to: int = 14):
        super().__init__()
        heads = heads if dim % heads == 0 else 1
        self.pool_to = pool_to
        self.ann_proj = nn.Linear(ann_dim, dim)
        self.norm1, self.self_attn = nn.LayerNorm(dim), nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm3, self.ffn = nn.LayerNorm(dim), GEGLU(dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.pool_to and (h > self.pool_to or w > self.pool_to):
            x = F.adaptive_avg_pool2d(x, (min(h, self.pool_to), min(w, self.pool_to)))
        return x

    def forward(self, snn: torch.Tensor, ann: torch.Tensor) -> torch.Tensor:
        """snn ``[T, N, C, h, w]``, ann ``[N, Ca, ha, wa]`` -> snn with the fused features added."""
        h, w = snn.shape[-2:]
        q = self._pool(snn.mean(0))
        qh, qw = q.shape[-2:]
        x = q.flatten(2).transpose(1, 2)                                    # [N, qh*qw, C]
        kv = self.norm_kv(self.ann_proj(self._pool(ann).flatten(2).transpose(1, 2)))
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y, need_weights=False)[0]
        x = x + self.cross_attn(self.norm2(x), kv, kv, need_weights=False)[0]
        x = x + self.ffn(self.norm3(x))
        fused = self.out(x).transpose(1, 2).reshape(x.shape[0], -1, qh, qw)
        if (qh, qw) != (h, w):
            fused = F.interpolate(fused, size=(h, w), mode="bilinear", align_corners=False)
        return snn + fused.unsqueeze(0)


class ReSpike(nn.Module):
    """See the module docstring. ``img_size`` is accepted for the common factory signature; any
    size works. There is no ``spiking=False`` twin: the energy report splits ANN and SNN paths
    inside this one model instead."""

    def __init__(self, num_classes: int = 101, in_chans: int = 3, img_size: int | None = None, num_frames: int = 16,
                 stride: int = 4, ann_base: int = 64, ann_depths=(3, 4, 6, 3), snn_base: int = 64,
                 snn_depths=(2, 2, 2, 2), heads: int = 4, pool_to: int = 14, neuron: dict | None = None):
        super().__init__()
        if in_chans != 3:
            raise InputError(f"ReSpike takes RGB clips (in_chans=3), got in_chans={in_chans}")
        if num_frames % stride:
            raise InputError(f"num_frames={num_frames} must be a multiple of stride={stride}")
        self.num_frames, self.stride, self.num_classes = num_frames, stride, num_classes
        self.ann = ResNet50Features(ann_base, ann_depths)
        self.snn = SpikingResNet18(snn_base, snn_depths, neuron)
        self.fusions = nn.ModuleList(
            CrossFusion(c, ca, heads, pool_to) for c, ca in zip(self.snn.channels, self.ann.channels)
        )
        self.head = nn.Linear(self.ann.channels[-1] + self.snn.channels[-1], num_classes)
        self.normalise = PixelNormalize(IMAGENET_MEAN, IMAGENET_STD)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, F, 3, H, W]`` -> per-group features ``[B, G, Ca + Cs]`` (the ANN's last stage pooled
        over space, the SNN's over time and space), before the average over groups."""
        reset_net(self)  # every clip starts from rest: no membrane state leaks from an earlier call
        if x.dim() != 5 or x.shape[2] != 3:
            raise InputError(f"ReSpike expects clips [B, F, 3, H, W], got {tuple(x.shape)}")
        B = x.shape[0]
        key, residual = split_key_and_residual(self.normalise(x), self.stride)
        G = key.shape[1]
        ann_feats = self.ann(key.flatten(0, 1))                              # 4 x [B*G, Ca, h, w]
        s = self.snn.stem_forward(residual.flatten(0, 1).transpose(0, 1))    # [T=stride-1, B*G, C, h, w]
        for stage, fusion, a in zip(self.snn.stages, self.fusions, ann_feats):
            s = fusion(stage(s), a)
        return torch.cat([ann_feats[-1].mean((2, 3)), s.mean((0, 3, 4))], dim=1).unflatten(0, (B, G))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits averaged over the groups (= the head of the averaged features: it is linear)."""
        return features.mean(1) if pre_logits else self.head(features).mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_VIDEO_CFG = {"input": {"channels": 3, "frames": 16, "size": 112, "representation": "video",
                        "normalisation": "uint8 RGB, normalised inside the model (ImageNet mean and std)"},
              "num_classes": 101}


def _with_ann_weights(model: ReSpike, ann_weights: str) -> ReSpike:
    """ImageNet weights for the ANN trunk from a local torchvision ``resnet50`` file (never downloaded)."""
    if ann_weights:
        load_torchvision_weights(model.ann, ann_weights)
    return model


@register_model(default_cfg=_VIDEO_CFG)
def respike_r50_r18(ann_weights: str = "", **overrides) -> ReSpike:
    """ReSpike: ResNet-50 on key frames + spiking ResNet-18 on residual frames, cross-attention
    fusion; 16 frames, stride 4.

    ``ann_weights``: a local torchvision ResNet-50 ``.pth`` to start the ANN from (read here, by the
    factory, not by the model: a model restored from a checkpoint never needs that file)."""
    return _with_ann_weights(ReSpike(**overrides), ann_weights)


@register_model(default_cfg=_VIDEO_CFG)
def respike_tiny(ann_weights: str = "", **overrides) -> ReSpike:
    """ReSpike tiny: the same structure at widths 8 (ANN) / 8 (SNN), one block per stage; for CPU tests."""
    return _with_ann_weights(ReSpike(**{"ann_base": 8, "ann_depths": (1, 1, 1, 1), "snn_base": 8,
                                        "snn_depths": (1, 1, 1, 1), "heads": 2, **overrides}), ann_weights)
