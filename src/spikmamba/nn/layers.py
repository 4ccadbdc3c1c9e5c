"""Small shared layers: stochastic depth, MLP, channel-last BatchNorm, shape checks."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError


def to_2tuple(v: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise InputError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def drop_path_rates(rate: float, n: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over ``n`` blocks (as ViT/timm).
    Plain Python, so a model can be built on the ``meta`` device (``spikmamba models`` does)."""
    return [rate * i / (n - 1) if n > 1 else 0.0 for i in range(max(n, 1))]


def check_rank(x: torch.Tensor, rank: int, name: str, layout: str) -> None:
    """Raise a ValueError naming ``name`` and the expected ``layout`` when ``x`` has the wrong rank."""
    if x.dim() != rank:
        raise InputError(f"{name} must be {rank}-D {layout}, got shape {tuple(x.shape)}")


def check_channels(x: torch.Tensor, dim: int, expected: int, name: str, layout: str) -> None:
    if x.shape[dim] != expected:
        raise InputError(f"{name} must have {expected} channels in {layout}, got shape {tuple(x.shape)}")


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p``."""

    def __init__(self, p: float = 0.0, batch_dim: int = 0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise InputError(f"drop_path must be in [0, 1), got {p}")
        self.p, self.batch_dim = p, batch_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = [1] * x.dim()
        shape[self.batch_dim] = x.shape[self.batch_dim]
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout, on the last dimension."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, act: type = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class ChannelLastBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last (channel) axis of any ``[..., C]`` tensor.

    The published code sizes a BatchNorm to the token count (1024 = (128/4)^2), which ties the
    model to one resolution; normalising over channels works for any number of tokens.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


def init_transformer_weights(m: nn.Module) -> None:
    """``model.apply(...)``: truncated-normal (std 0.02) Linear weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class PixelNormalize(nn.Module):
    """uint8 pixels -> ``(x / 255 - mean) / std`` per channel (channel axis -3); float input is
    taken as already normalised and passed through. Image and video models keep their data
    uint8 in memory (4x less than float) and normalise here, so training, ``test`` and
    ``predict`` share one preprocessing. The statistics are not saved in state dicts."""

    def __init__(self, mean, std):
        super().__init__()
        if len(mean) != len(std):
            raise InputError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            return x
        return (x.float() / 255 - self.mean) / self.std
