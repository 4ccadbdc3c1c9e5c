"""The model a config describes; training, ``test``, ``predict`` and checkpoint loading all build it here."""
from __future__ import annotations

from torch import nn

from ..models import create_model
from .config import TrainConfig


class UnknownModelArgument(ValueError):
    """A config passes the model an argument it does not take (``model_overrides``)."""


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int = 2, img_size: "int | None" = None,
                num_frames: "int | None" = None, pretrained: bool = True) -> nn.Module:
    """``cfg.model`` for inputs of ``in_chans`` channels and ``num_frames`` steps. With
    ``representation: adaptive`` the inputs are fine frames: the model is the adaptive sampler
    followed by ``cfg.model`` on ``num_frames / adaptive_fine_steps`` sampled steps.

    ``pretrained=False`` drops the overrides that name initial-weight files (``*_weights``, e.g.
    ReSpike's ``ann_weights``): a model about to receive a checkpoint's state must not need, or
    read, the file it was first initialised from (it may not exist on the machine that predicts)."""
    overrides = dict(cfg.model_overrides)
    if not pretrained:
        overrides = {k: v for k, v in overrides.items() if not k.endswith("_weights")}
    extra = {"patch_size": cfg.patch_size} if cfg.patch_size else {}  # 0: the model's own default
    num_frames = num_frames or cfg.frames
    sampler = None
    if cfg.representation == "adaptive":
        from ..models.adaptive import AdaptiveFrontEnd
        from ..nn.adaptive_sampler import AdaptiveSampler

        sampler = AdaptiveSampler(in_chans, cfg.adaptive_channels, cfg.adaptive_fine_steps, sat=cfg.adaptive_sat,
                                  rpd=cfg.adaptive_rpd)
        in_chans, num_frames = cfg.adaptive_channels, num_frames // cfg.adaptive_fine_steps
    try:
        model = create_model(cfg.model, num_classes=num_classes, in_chans=in_chans,
                             img_size=img_size or cfg.sensor_size, num_frames=num_frames, **extra, **overrides)
    except TypeError as err:  # an override the model does not take
        raise UnknownModelArgument(f"model {cfg.model!r} does not take these arguments: {err}; check model_overrides "
                         f"{dict(cfg.model_overrides)!r} (see the factory's docstring)") from None
    return model if sampler is None else AdaptiveFrontEnd(sampler, model)
