"""One registry for every model: ``create_model("spikmamba_bissm_bisla_t16", num_classes=10)``.

Every registered model answers the interface the field knows from timm: ``forward_features(x)``
(features before pooling), ``forward_head(features, pre_logits=False)``, and ``model_cfg`` (a
:class:`~.model_cfg.ModelCfg`: the input it expects, its classes, where its weights came from). Models are
built here alone, weights included: ``create_model(name, pretrained=...)`` with a weights folder,
a tag of the small zoo shipped in the package (``spikmamba_tiny_sps.nmnist``), or ``False`` to
read no file at all (the state will come from a checkpoint).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..errors import InputError
from ..text import shown
from .model_cfg import ModelCfg

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DEFAULT_CFGS: dict[str, ModelCfg] = {}
#: the small model zoo shipped inside the package: ``zoo/<model>.<tag>/`` weights folders
ZOO = Path(__file__).resolve().parent / "zoo"


def register_model(fn: Callable[..., nn.Module] | None = None, *, default_cfg: dict | None = None):
    """Decorator: register a factory under its function name (first docstring paragraph = description),
    with the model's default input and classes (``default_cfg``: ``{"input": {...}, "num_classes": N}``,
    kept as a :class:`ModelCfg`)."""
    def add(f):
        if f.__name__ in _MODELS:
            raise InputError(f"model {f.__name__!r} is registered twice")
        _MODELS[f.__name__] = f
        _DEFAULT_CFGS[f.__name__] = ModelCfg.registered(f.__name__, default_cfg or {})
        return f
    return add(fn) if fn is not None else add


def list_models(pattern: str = "") -> list[str]:
    return sorted(name for name in _MODELS if pattern in name)


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The registered function that builds ``name`` (use ``create_model``, which also loads weights)."""
    return _MODELS[name]


def model_description(name: str) -> str:
    """The first paragraph of the factory's docstring, on one line (never cut mid-sentence)."""
    doc = (_MODELS[name].__doc__ or "").strip()
    return " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())


def suggest(name) -> str:
    """``"did you mean 'x'? "`` for the registered names closest to ``name``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(str(name)[:200], list(_MODELS), n=2, cutoff=0.6) if isinstance(name, str) else []
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


def check_registered(name) -> None:
    """ValueError naming ``name`` (cut), the closest registered names and all of them, unless registered."""
    if name not in _MODELS:
        raise InputError(f"unknown model {shown(name)}; {suggest(name)}available: {', '.join(list_models())} "
                         f"(see `spikmamba models`)")


def default_cfg(name: str) -> ModelCfg:
    """What ``name`` takes by default (before any argument): its input (channels, frames, size,
    representation, normalisation) and ``num_classes``."""
    check_registered(name)
    return _DEFAULT_CFGS[name]


def pretrained_tags(name: str) -> list[str]:
    """Tags of the zoo weights shipped for ``name`` (``spikmamba_tiny_sps`` -> ``['nmnist', 'synth']``)."""
    if not ZOO.is_dir():
        return []
    return sorted(d.name.split(".", 1)[1] for d in ZOO.iterdir() if d.is_dir() and d.name.startswith(name + "."))


#: a zoo tag is a plain name: never a path, never ``..``
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def split_zoo_name(text: str) -> tuple[str, str] | None:
    """``(model, tag)`` when ``text`` reads as ``NAME.TAG`` of a registered model, else None.
    The tag must be a plain name (letters, digits, ``_``, ``-``): ``NAME./abs/path`` and
    ``NAME.tag/../..`` are refused, not read as folders."""
    if not isinstance(text, str) or "." not in text or text.split(".", 1)[0] not in _MODELS:
        return None
    name, tag = text.split(".", 1)
    if not _TAG.fullmatch(tag):
        raise InputError(f"{shown(text)}: a shipped tag after {name}. is a plain name (letters, digits, _ and -); "
                         f"give a weights folder as a path of its own, not after the model name")
    return name, tag


def zoo_folder(name: str, tag: str, asked: str) -> Path:
    """The shipped folder of ``name.tag``; an error naming the shipped tags when there is none, and
    one naming both readings when ``asked`` is also a folder here."""
    zoo = ZOO / f"{name}.{tag}"
    if not zoo.is_dir():
        tags = pretrained_tags(name)
        folder = " (a folder of that name is given as a path: ./" + asked + ")" if Path(asked).is_dir() else ""
        raise InputError(f"{shown(asked)}: {name} has no shipped weights tagged {tag!r} (shipped: "
                         f"{', '.join(tags) or 'none'}){folder}")
    if Path(asked).exists():
        raise InputError(
            f"{asked!r} is ambiguous: it names the shipped weights {name}.{tag} and also {Path(asked).resolve()} "
            f"here; write ./{asked} for the folder, or run from another folder for the shipped weights"
        )
    return zoo


def resolve_pretrained(name: str, pretrained) -> Path | None:
    """The weights folder ``pretrained`` names for model ``name``: ``True`` (the first shipped
    tag), a shipped tag (a plain name), or a folder given as a path (a ``Path``, or a string that
    is not a shipped tag). A plain name that is both a shipped tag and a folder here is refused."""
    if pretrained in (None, False):
        return None
    if pretrained is True:
        tags = pretrained_tags(name)
        if not tags:
            raise InputError(f"model {name!r} has no shipped weights; pass a weights folder as pretrained=")
        pretrained = tags[0]
    if isinstance(pretrained, str) and _TAG.fullmatch(pretrained) and (ZOO / f"{name}.{pretrained}").is_dir():
        return zoo_folder(name, pretrained, pretrained)
    folder = Path(pretrained)
    if folder.is_dir():
        return folder
    tags = pretrained_tags(name)
    raise InputError(f"pretrained={shown(str(pretrained))} is neither a weights folder nor a shipped tag of {name!r} "
                     f"(shipped: {', '.join(tags) or 'none'})")


def resolve_model_source(text: str) -> tuple[str, Path]:
    """``(model name or None, folder)`` of a ``--model`` argument: ``NAME.TAG`` means the shipped
    zoo only (never a folder of the tag's name here); anything else is a weights folder's path."""
    zoo = split_zoo_name(text)
    if zoo is not None:
        return zoo[0], zoo_folder(zoo[0], zoo[1], text)
    if Path(text).is_dir():
        return None, Path(text)
    raise InputError(f"--model {shown(text)} is neither a weights folder nor a shipped model such as "
                     f"spikmamba_tiny_sps.nmnist (`spikmamba models` marks the shipped weights)")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
