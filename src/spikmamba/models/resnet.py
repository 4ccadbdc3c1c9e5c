"""The two ResNets of ReSpike: an ANN ResNet-50 and a spiking, pre-activation ResNet-18.

``ResNet50Features`` uses torchvision's parameter names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ...), so ImageNet weights saved by torchvision load from a local file
with :func:`load_torchvision_weights`, without torchvision installed. It returns the four stage
outputs (strides 4, 8, 16, 32).

``SpikingResNet18`` runs multi-step over ``[T, N, C, H, W]``: every conv sees all T steps at once
(T folded into the batch) and LIF neurons (tau 4/3, ATan surrogate, as ReSpike) integrate over
T. Blocks are pre-activation: BN -> LIF -> conv, twice, plus a shortcut (1x1 conv when the shape
changes), so the residual stream stays analog and every conv is fed by spikes.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..nn.neurons import build_neuron


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50Features(nn.Module):
    """ResNet-50 trunk (no ``fc``); ``base`` = 64 is the standard width, smaller for tests."""

    def __init__(self, base: int = 64, depths=(3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = base
        self.channels = []
        for i, depth in enumerate(depths):
            width = base * 2**i
            blocks = [Bottleneck(cin, width, stride=1 if i == 0 else 2)]
            cin = width * Bottleneck.expansion
            blocks += [Bottleneck(cin, width) for _ in range(depth - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.channels.append(cin)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            feats.append(x)
        return feats


def load_torchvision_weights(trunk: ResNet50Features, path: str) -> None:
    """Load a torchvision ``resnet50`` state dict saved to ``path`` (``fc.*`` ignored); never downloads."""
    from .weights import load_torch_file

    state = load_torch_file(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    own = trunk.state_dict()
    missing = [k for k in own if k not in state]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or shapes:
        raise InputError(f"{path} is not a torchvision ResNet-50 state dict for this trunk: missing "
                         f"{missing[:3]}{'...' if len(missing) > 3 else ''}, shape mismatch {shapes[:3]}")
    trunk.load_state_dict({k: state[k] for k in own})


def _multistep(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame module to ``[T, N, ...]`` with T folded into the batch."""
    T, N = x.shape[:2]
    return module(x.flatten(0, 1)).unflatten(0, (T, N))


class SpikingBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, neuron: dict):
        super().__init__()
        self.bn1, self.lif1 = nn.BatchNorm2d(cin), build_neuron(True, **neuron)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2, self.lif2 = nn.BatchNorm2d(cout), build_neuron(True, **neuron)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, N, C, H, W]
        s = self.lif1(_multistep(self.bn1, x))
        out = _multistep(self.conv1, s)
        out = _multistep(self.conv2, self.lif2(_multistep(self.bn2, out)))
        # the shortcut conv takes the spikes too, so it stays multiplication-free
        return out + (x if self.shortcut is None else _multistep(self.shortcut, s))


class SpikingResNet18(nn.Module):
    """Spiking pre-activation ResNet-18 trunk: stage outputs (strides 4, 8, 16, 32) over T steps."""

    def __init__(self, base: int = 64, depths=(2, 2, 2, 2), neuron: dict | None = None):
        super().__init__()
        neuron = {"tau": 4.0 / 3.0, "surrogate_function": "atan", "detach_reset": True, **(neuron or {})}
        self.stem = nn.Sequential(nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False), nn.MaxPool2d(3, 2, 1))
        self.stages = nn.ModuleList()
        self.channels = []
        cin = base
        for i, depth in enumerate(depths):
            cout = base * 2**i
            blocks = [SpikingBasicBlock(cin, cout, 1 if i == 0 else 2, neuron)]
            blocks += [SpikingBasicBlock(cout, cout, 1, neuron) for _ in range(depth - 1)]
            self.stages.append(nn.Sequential(*blocks))
            self.channels.append(cout)
            cin = cout

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return _multistep(self.stem, x)
