"""Building models: ``create_model`` (random weights, a shipped tag or a weights folder),
``build_from_config`` (the model a weights folder or checkpoint describes) and the checked
folder loader. The layers run one way: registry (names, defaults, the zoo) -> weights (files)
-> factory (models)."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..text import shown
from .registry import (
    check_registered,
    count_parameters,
    default_cfg,
    model_factory,
    resolve_pretrained,
    split_zoo_name,
    zoo_folder,
)
from .weights import (
    CONFIG_FILE,
    TENSOR_DTYPES,
    WEIGHTS_FILE,
    WeightsError,
    check_recorded,
    key_error,
    load_state_checked,
    read_config,
    read_header,
    read_safetensors,
)


def create_model(name: str, pretrained=None, **overrides) -> nn.Module:
    """Build a registered model; keyword ``overrides`` replace the variant's defaults.

    ``name`` may carry a zoo tag (``"spikmamba_tiny_sps.nmnist"``, same as ``pretrained="nmnist"``).
    ``pretrained``: None builds with random weights (initial-weight arguments such as ReSpike's
    ``ann_weights`` are honoured); a weights folder or zoo tag loads it (its ``config.json``
    supplies the arguments, ``overrides`` on top); ``False`` reads no file at all, for a model
    whose state comes next from a checkpoint."""
    zoo = split_zoo_name(name) if pretrained in (None, True) else None
    if zoo is not None:
        name, folder = zoo[0], zoo_folder(zoo[0], zoo[1], name)
    else:
        check_registered(name)
        folder = resolve_pretrained(name, pretrained)
    if folder is not None:
        return load_folder(folder, overrides, model=name)[0].train()
    if pretrained is False:  # the state comes from elsewhere: read no initial-weight file
        overrides = {k: v for k, v in overrides.items() if not k.endswith("_weights")}
    model = model_factory(name)(**overrides)
    model.model_cfg = default_cfg(name).built(model)
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


def load_folder(folder: str | os.PathLike, overrides: dict | None = None,
                model: str | None = None) -> tuple[nn.Module, dict]:
    """``(model in eval mode, config)`` of a weights folder, checked before anything large is made:
    the config's fields (and that it holds ``model``, when given), the config against the record in
    the weights file, the model built on the ``meta`` device against the file's tensor names,
    shapes and dtypes; then the tensors' values (finite) and the classes against the head. Every
    failure is a :class:`WeightsError`."""
    folder = Path(folder)
    cfg = read_config(folder)
    if model is not None and cfg["model"] != model:
        raise WeightsError(f"{folder} holds weights for {cfg['model']!r}, not {model!r}")
    meta, header = read_header(folder / WEIGHTS_FILE)
    check_recorded(cfg, meta, folder)
    build = {**cfg, "kwargs": {**cfg.get("kwargs", {}), **(overrides or {})}}
    try:
        with torch.device("meta"):
            shape_only = build_from_config(build)
    except (TypeError, ValueError, AttributeError, IndexError, KeyError, RuntimeError, ZeroDivisionError,
            OverflowError, AssertionError) as err:
        raise WeightsError(f"{folder / CONFIG_FILE}: the model cannot be built from its kwargs "
                           f"({type(err).__name__}: {str(err)[:300]})") from None
    own = shape_only.state_dict()
    load_state_checked(shape_only, {k: torch.empty(shape, device="meta") for k, (shape, _) in header.items()},
                       str(folder / WEIGHTS_FILE), check_only=True)
    for k, (_, dtype) in header.items():
        if TENSOR_DTYPES.get(dtype) != own[k].dtype:
            raise WeightsError(f"{folder / WEIGHTS_FILE}: tensor {shown(k)} is {dtype}; the model holds "
                               f"{str(own[k].dtype).replace('torch.', '')} there")
    classes = cfg.get("classes")
    heads = getattr(shape_only, "num_classes", None)
    if classes is not None and isinstance(heads, int) and len(classes) != heads:
        raise key_error(folder / CONFIG_FILE, "classes", f"lists {len(classes)} names; the model's head has {heads} "
                                                          f"outputs")
    state = read_safetensors(folder / WEIGHTS_FILE)
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise WeightsError(f"{folder / WEIGHTS_FILE}: tensor {shown(k)} holds NaN or infinite values")
    model = build_from_config(build)
    load_state_checked(model, state, str(folder / WEIGHTS_FILE))
    model.model_cfg = model.model_cfg.with_weights(folder, cfg)
    return model.eval(), cfg


def load_pretrained(folder: str | os.PathLike) -> tuple[nn.Module, dict]:
    """``(model in eval mode, config)`` from a weights folder (see :func:`save_pretrained`)."""
    return load_folder(folder)


def count_model_parameters(name: str, **overrides) -> int:
    """Parameters of a registered model, built on the ``meta`` device: shapes only, no memory, no
    initialisation, so listing every model (a 43.7 M-parameter one included) takes moments."""
    with torch.device("meta"):
        return count_parameters(create_model(name, pretrained=False, **overrides))
