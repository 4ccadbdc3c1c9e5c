"""Any frame model behind EAS-SNN's adaptive sampler (``representation: adaptive`` in a config).

``[B, S, 2, H, W]`` fine polarity-count frames -> :class:`~spikmamba.nn.AdaptiveSampler` ->
``[B, T, C, H, W]`` (``T = S / fine_steps``) -> the backbone. Sampler and backbone train end to
end; the backbone is built exactly as for fixed frames, with ``in_chans = C`` and ``T`` steps.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..nn.adaptive_sampler import AdaptiveSampler


class AdaptiveFrontEnd(nn.Module):
    def __init__(self, sampler: AdaptiveSampler, backbone: nn.Module):
        super().__init__()
        self.sampler, self.backbone = sampler, backbone
        cfg = getattr(backbone, "model_cfg", None)  # None: a backbone built without the registry
        if cfg is not None:
            self.model_cfg = dataclasses.replace(cfg, input=dataclasses.replace(
                cfg.input, representation="adaptive", channels=sampler.in_chans))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(self.sampler(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.backbone.forward_head(features, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.sampler(x))


def adaptive_front_end(backbone: nn.Module, in_chans: int, channels: int, fine_steps: int, sat: bool = True,
                       rpd: bool = True) -> AdaptiveFrontEnd:
    """``backbone`` (built for ``channels`` input channels) behind a fresh sampler that turns
    ``in_chans``-channel fine frames into its input, ``fine_steps`` fine frames per step."""
    return AdaptiveFrontEnd(AdaptiveSampler(in_chans, channels, fine_steps, sat=sat, rpd=rpd), backbone)
