"""The model a config describes; training, ``test``, ``predict`` and checkpoint loading all build it here."""
from __future__ import annotations

from torch import nn

from ..models import create_model
from .config import TrainConfig


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int = 2, img_size: "int | None" = None,
                num_frames: "int | None" = None) -> nn.Module:
    extra = {"patch_size": cfg.patch_size} if cfg.patch_size else {}  # 0: the model's own default
    return create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, img_size=img_size or cfg.sensor_size,
                        num_frames=num_frames or cfg.frames, **extra, **cfg.model_overrides)
