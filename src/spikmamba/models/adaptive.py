"""Any frame model behind EAS-SNN's adaptive sampler (``representation: adaptive`` in a config).

``[B, S, 2, H, W]`` fine polarity-count frames -> :class:`~spikmamba.nn.AdaptiveSampler` ->
``[B, T, C, H, W]`` (``T = S / fine_steps``) -> the backbone. Sampler and backbone train end to
end; the backbone is built exactly as for fixed frames, with ``in_chans = C`` and ``T`` steps.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.adaptive_sampler import AdaptiveSampler


class AdaptiveFrontEnd(nn.Module):
    def __init__(self, sampler: AdaptiveSampler, backbone: nn.Module):
        super().__init__()
        self.sampler, self.backbone = sampler, backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.sampler(x))
