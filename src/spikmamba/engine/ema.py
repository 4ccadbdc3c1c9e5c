"""Exponential moving average of a model's weights (the published SVMamba recipe evaluates it).

``shadow = decay * shadow + (1 - decay) * weights`` after every optimizer step, for floating
parameters and buffers; integer buffers (BatchNorm's step counter) are copied. Evaluation swaps
the averaged weights in and back out (:meth:`EMA.swapped_in`), so training state is untouched.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import InputError


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise InputError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.is_floating_point():
                s.lerp_(v.detach(), 1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise KeyError(f"EMA state does not match the model: {sorted(missing)[:4]}")
        for k, v in state.items():
            self.shadow[k].copy_(v)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module):
        """Run the block with the averaged weights loaded into ``model``, then restore the trained ones."""
        trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(trained)
