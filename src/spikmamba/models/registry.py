"""One registry for every model: ``create_model("spikmamba_bissm_bisla_t16", num_classes=10)``.

Every registered model answers the interface the field knows from timm: ``forward_features(x)``
(features before pooling), ``forward_head(features, pre_logits=False)``, and ``default_cfg``
(what input it expects: channels, time steps, size, representation, normalisation). Models are
built here alone, weights included: ``create_model(name, pretrained=...)`` with a weights folder,
a tag of the small zoo shipped in the package (``spikmamba_tiny_sps.nmnist``), or ``False`` to
read no file at all (the state will come from a checkpoint).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from torch import nn

_MODELS: "dict[str, Callable[..., nn.Module]]" = {}
_DEFAULT_CFGS: "dict[str, dict]" = {}
#: the small model zoo shipped inside the package: ``zoo/<model>.<tag>/`` weights folders
ZOO = Path(__file__).resolve().parent / "zoo"


def register_model(fn: "Callable[..., nn.Module] | None" = None, *, default_cfg: "dict | None" = None):
    """Decorator: register a factory under its function name (first docstring paragraph = description),
    with the model's default input (``default_cfg``)."""
    def add(f):
        if f.__name__ in _MODELS:
            raise ValueError(f"model {f.__name__!r} is registered twice")
        _MODELS[f.__name__] = f
        _DEFAULT_CFGS[f.__name__] = dict(default_cfg or {})
        return f
    return add(fn) if fn is not None else add


def list_models(pattern: str = "") -> "list[str]":
    return sorted(name for name in _MODELS if pattern in name)


def model_description(name: str) -> str:
    """The first paragraph of the factory's docstring, on one line (never cut mid-sentence)."""
    doc = (_MODELS[name].__doc__ or "").strip()
    return " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())


def default_cfg(name: str) -> dict:
    """What ``name`` takes by default: ``input`` (channels, frames, size, representation,
    normalisation) and ``num_classes``."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())} (see `spikmamba models`)")
    return {k: dict(v) if isinstance(v, dict) else v for k, v in _DEFAULT_CFGS[name].items()}


def pretrained_tags(name: str) -> "list[str]":
    """Tags of the zoo weights shipped for ``name`` (``spikmamba_tiny_sps`` -> ``['nmnist', 'synth']``)."""
    if not ZOO.is_dir():
        return []
    return sorted(d.name.split(".", 1)[1] for d in ZOO.iterdir() if d.is_dir() and d.name.startswith(name + "."))


def resolve_pretrained(name: str, pretrained) -> "Path | None":
    """The weights folder ``pretrained`` names for model ``name`` (a folder path, or a zoo tag)."""
    if pretrained in (None, False):
        return None
    if pretrained is True:
        tags = pretrained_tags(name)
        if not tags:
            raise ValueError(f"model {name!r} has no shipped weights; pass a weights folder as pretrained=")
        pretrained = tags[0]
    folder = Path(pretrained)
    if folder.is_dir():
        return folder
    zoo = ZOO / f"{name}.{pretrained}"
    if zoo.is_dir():
        return zoo
    tags = pretrained_tags(name)
    raise ValueError(f"pretrained={pretrained!r} is neither a weights folder nor a shipped tag of {name!r} "
                     f"(shipped: {', '.join(tags) or 'none'})")


def create_model(name: str, pretrained=None, **overrides) -> nn.Module:
    """Build a registered model; keyword ``overrides`` replace the variant's defaults.

    ``name`` may carry a zoo tag (``"spikmamba_tiny_sps.nmnist"``, same as ``pretrained="nmnist"``).
    ``pretrained``: None builds with random weights (initial-weight arguments such as ReSpike's
    ``ann_weights`` are honoured); a weights folder or zoo tag loads it (its ``config.json``
    supplies the arguments, ``overrides`` on top); ``False`` reads no file at all, for a model
    whose state comes next from a checkpoint."""
    if "." in name and name.split(".", 1)[0] in _MODELS and pretrained in (None, True):
        name, pretrained = name.split(".", 1)
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())} (see `spikmamba models`)")
    folder = resolve_pretrained(name, pretrained)
    if folder is not None:
        from .weights import load_state_checked, read_config, read_safetensors, WEIGHTS_FILE

        cfg = read_config(folder)
        if cfg["model"] != name:
            raise ValueError(f"{folder} holds weights for {cfg['model']!r}, not {name!r}")
        model = build_from_config({**cfg, "kwargs": {**cfg.get("kwargs", {}), **overrides}})
        load_state_checked(model, read_safetensors(folder / WEIGHTS_FILE), str(folder / WEIGHTS_FILE))
        model.pretrained_cfg = cfg
        return model
    if pretrained is False:  # the state comes from elsewhere: read no initial-weight file
        overrides = {k: v for k, v in overrides.items() if not k.endswith("_weights")}
    model = _MODELS[name](**overrides)
    model.default_cfg = default_cfg(name)
    return model


def build_from_config(cfg: dict, initial_weights: bool = False) -> nn.Module:
    """The (untrained) model a weights folder's config describes: ``model`` with ``kwargs``, behind
    the EAS-SNN sampler when ``adaptive`` is set. ``initial_weights`` honours arguments that name
    initial-weight files (ReSpike's ``ann_weights``): for a new training run, not for a model
    whose state is loaded next."""
    model = create_model(cfg["model"], pretrained=None if initial_weights else False, **cfg.get("kwargs", {}))
    adaptive = cfg.get("adaptive")
    if adaptive:
        from .adaptive import adaptive_front_end

        model = adaptive_front_end(model, **adaptive)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_model_parameters(name: str, **overrides) -> int:
    """Parameters of a registered model, built on the ``meta`` device: shapes only, no memory, no
    initialisation, so listing every model (a 43.7 M-parameter one included) takes moments."""
    import torch

    with torch.device("meta"):
        return count_parameters(create_model(name, pretrained=False, **overrides))
