"""The model a config describes; training, ``test``, ``predict`` and checkpoint loading all build it here."""
from __future__ import annotations

from torch import nn

from ..errors import InputError
from ..models.factory import build_from_config
from .config import TrainConfig


class UnknownModelArgument(InputError):
    """A config passes the model an argument it does not take (``model_overrides``)."""


def model_config(cfg: TrainConfig, num_classes: int, in_chans: int = 2, img_size: int | None = None,
                 num_frames: int | None = None) -> dict:
    """What builds ``cfg.model.name`` for this data, in the form a weights folder's ``config.json``
    stores (``model``, ``kwargs``, ``adaptive``): for inputs of ``in_chans`` channels and
    ``num_frames`` steps. With ``representation: adaptive`` the inputs are fine frames: the model
    is the adaptive sampler followed by ``cfg.model.name`` on ``num_frames / adaptive_fine_steps``
    sampled steps."""
    extra = {"patch_size": cfg.model.patch_size} if cfg.model.patch_size else {}  # 0: the model's own default
    num_frames = num_frames or cfg.data.frames
    adaptive = None
    if cfg.data.representation == "adaptive":
        a = cfg.data.adaptive
        adaptive = {"in_chans": in_chans, "channels": a.channels, "fine_steps": a.fine_steps, "sat": a.sat,
                    "rpd": a.rpd}
        in_chans, num_frames = cfg.data.adaptive.channels, num_frames // cfg.data.adaptive.fine_steps
    kwargs = {"num_classes": num_classes, "in_chans": in_chans, "img_size": img_size or cfg.data.synth.sensor_size,
              "num_frames": num_frames, **extra, **cfg.model.overrides}
    return {"model": cfg.model.name, "kwargs": kwargs, "adaptive": adaptive}


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int = 2, img_size: int | None = None,
                num_frames: int | None = None, pretrained: bool = True) -> nn.Module:
    """The model :func:`model_config` describes. ``pretrained=False`` reads no initial-weight file
    (ReSpike's ``ann_weights``): a model about to receive a checkpoint's state must not need, or
    read, the file it was first initialised from (it may not exist on the machine that predicts)."""
    spec = model_config(cfg, num_classes, in_chans, img_size, num_frames)
    try:
        return build_from_config(spec, initial_weights=pretrained)
    except TypeError as err:  # an override the model does not take
        raise UnknownModelArgument(f"model {cfg.model.name!r} does not take these arguments: {err}; check "
                                   f"model.overrides "
                                   f"{dict(cfg.model.overrides)!r} (see the factory's docstring)") from None
