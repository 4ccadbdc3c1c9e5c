"""A small spiking CNN for event frames, made only of what NIR can express.

``[B, T, C, H, W]`` frames -> per time step: (conv 3x3 -> BatchNorm -> LIF -> 2x2 average pool)
x len(channels) -> flatten -> linear; logits = the mean over time of the linear output. Every
layer is one NIR node (BatchNorm is folded into the conv before export), so the network can
leave PyTorch for neuromorphic hardware and simulators (``spikmamba export --format nir``). It
is also the field's usual baseline for N-MNIST-sized data, trained by the same engine.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..nn.functional import reset_net
from ..nn.neurons import LIFNode
from .registry import register_model


class SpikingCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 2, img_size: int = 32, num_frames: int = 8,
                 channels=(16, 32), tau: float = 2.0, v_threshold: float = 1.0):
        super().__init__()
        if img_size % (2 ** len(channels)):
            raise InputError(f"img_size {img_size} must be divisible by {2 ** len(channels)} (one 2x2 pool per stage)")
        self.num_classes, self.in_chans, self.num_frames, self.img_size = num_classes, in_chans, num_frames, img_size
        layers, cin = [], in_chans
        for cout in channels:
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       LIFNode(tau=tau, v_threshold=v_threshold, v_reset=0.0, detach_reset=True, step_mode="m"),
                       nn.AvgPool2d(2)]
            cin = cout
        side = img_size // 2 ** len(channels)
        layers += [nn.Flatten(), nn.Linear(cin * side * side, num_classes)]
        self.layers = nn.Sequential(*layers)

    def nir_sequence(self) -> list[tuple[str, nn.Module]]:
        """The layers in the order the data passes them, one time step at a time (for NIR export)."""
        return [(f"layers.{i}", m) for i, m in enumerate(self.layers)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W]`` -> ``[B, T, F]``: the flattened spikes of the last stage, per step."""
        reset_net(self)
        if x.dim() != 5 or x.shape[2] != self.in_chans:
            raise InputError(f"SpikingCNN expects frames [B, T, {self.in_chans}, H, W], got {tuple(x.shape)}")
        B, T = x.shape[:2]
        h = x.transpose(0, 1)  # [T, B, C, H, W]
        for m in self.layers[:-1]:
            h = m(h) if isinstance(m, LIFNode) else m(h.flatten(0, 1)).unflatten(0, (T, B))
        return h.transpose(0, 1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The linear readout at every step, averaged over time (= the readout of the mean spikes)."""
        return features.mean(1) if pre_logits else self.layers[-1](features).mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(default_cfg={"input": {"channels": 2, "frames": 8, "size": 32, "representation": "frames",
                                       "normalisation": "log1p of event counts per polarity"}, "num_classes": 10})
def scnn_nmnist(**overrides) -> SpikingCNN:
    """Spiking CNN baseline for N-MNIST-sized event frames: 2 conv-BN-LIF-pool stages (16, 32
    channels) and a linear readout; exportable to NIR."""
    return SpikingCNN(**{"num_classes": 10, "in_chans": 2, "img_size": 32, "num_frames": 8, **overrides})
