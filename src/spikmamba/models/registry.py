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
    doc = (_MODELS[name].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


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
