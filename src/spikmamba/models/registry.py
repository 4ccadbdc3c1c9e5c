"""One registry for every model: ``create_model("spikmamba_bissm_bisla_t16", num_classes=10)``."""
from __future__ import annotations

from typing import Callable

from torch import nn

_MODELS: "dict[str, Callable[..., nn.Module]]" = {}


def register_model(fn: "Callable[..., nn.Module]") -> "Callable[..., nn.Module]":
    """Decorator: register a factory under its function name (first docstring line = description)."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "") -> "list[str]":
    return sorted(name for name in _MODELS if pattern in name)


def model_description(name: str) -> str:
    """The first paragraph of the factory's docstring, on one line (never cut mid-sentence)."""
    doc = (_MODELS[name].__doc__ or "").strip()
    return " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; keyword ``overrides`` replace the variant's defaults."""
    try:
        factory = _MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(list_models())} (see `spikmamba models`)"
        ) from None
    return factory(**overrides)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_model_parameters(name: str, **overrides) -> int:
    """Parameters of a registered model, built on the ``meta`` device: shapes only, no memory, no
    initialisation, so listing every model (a 43.7 M-parameter one included) takes moments."""
    import torch

    with torch.device("meta"):
        return count_parameters(create_model(name, **overrides))
