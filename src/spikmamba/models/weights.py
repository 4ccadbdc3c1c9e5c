"""Weights on disk: read safely, write in the field's convention, check before loading.

* :func:`load_torch_file` reads a ``.pt``/``.pth`` with ``torch.load(weights_only=True)`` (a
  pickle's code never runs) and says in our words why a file is refused; it never suggests
  ``weights_only=False``. Checkpoints (``engine/checkpoint.py``) and initial weights (ReSpike's
  torchvision ResNet-50) both read through it.
* A *weights folder* is what the Hugging Face Hub stores: ``model.safetensors`` (tensors only,
  no code, checked header) and ``config.json`` (which registered model, its arguments, the class
  names, and how events become its input). :func:`save_pretrained` writes one,
  :func:`load_pretrained` reads one back into a model; nothing needs network.
* :func:`load_state_checked` loads a state dict and, on any mismatch, names the first tensor
  that does not fit (missing, unexpected, other shape).
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "README.md"
FOLDER_FORMAT = 1


class WeightsError(ValueError):
    """A weights file or folder that cannot be used: unreadable, damaged, or for another model."""


def load_torch_file(path: "str | os.PathLike", what: str = "weights file", error=WeightsError):
    """``torch.load(weights_only=True)`` with one clear error (of type ``error``) for a missing or
    unusable file; never runs pickled code."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, disallowed globals
        raise error(f"{path} is not a readable {what}: {_load_failure(path, err)}") from None


def _load_failure(path: Path, err: Exception) -> str:
    """Why ``torch.load`` refused a file, in our words. Never torch's own advice, which suggests
    reloading with ``weights_only=False``: that would run whatever code the file's pickle holds."""
    text = str(err)
    if "Weights only load failed" in text or isinstance(err, __import__("pickle").UnpicklingError):
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" (such as {found.group(1)})" if found else ""
        return (f"it stores pickled Python objects{what}, which spikmamba does not load because unpickling them can "
                f"run code; a spikmamba checkpoint or weights file holds only tensors, numbers, strings, lists and "
                f"dicts (a whole saved nn.Module is not one: save its state_dict)")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(8)
        size = path.stat().st_size
        if size == 0:
            return "the file is empty"
        return (f"not a PyTorch file: torch.save writes a zip archive, and this one ({size} bytes, starting "
                f"{head!r}) is not one; truncated, or another kind of file?")
    first = text.splitlines()[0] if text else "no detail"
    return f"the zip archive is damaged or incomplete ({type(err).__name__}: {first})"


def load_state_checked(model: nn.Module, state: dict, source: str, error=WeightsError) -> None:
    """``load_state_dict`` with an error that names what does not fit, the first mismatch first."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        def few(items):
            return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")
        parts = [f"missing {few(missing)}" if missing else "", f"unexpected {few(unexpected)}" if unexpected else "",
                 f"shape mismatch {few(shapes)}" if shapes else ""]
        raise error(f"{source} does not fit model {type(model).__name__}: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state)


def save_pretrained(model: nn.Module, folder: "str | os.PathLike", config: dict, card: "str | None" = None) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` (and ``README.md``, the model card).

    ``config`` must name the registered ``model`` and its ``kwargs``; it usually also holds
    ``classes``, ``representation``, ``transforms`` and, for the EAS-SNN front-end, ``adaptive``."""
    from safetensors.torch import save_file

    from .registry import list_models

    if config.get("model") not in list_models():
        raise WeightsError(f"config names unknown model {config.get('model')!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / CONFIG_FILE).write_text(json.dumps({"format": FOLDER_FORMAT, **config}, indent=2) + "\n")
    if card is not None:
        (folder / CARD_FILE).write_text(card)
    return folder


def read_config(folder: "str | os.PathLike") -> dict:
    """``config.json`` of a weights folder, checked: a known model and a mapping of arguments."""
    from .registry import list_models

    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise WeightsError(f"weights folder {folder} does not exist")
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise WeightsError(f"{folder} is not a weights folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WeightsError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(cfg, dict):
        raise WeightsError(f"{path} must hold a JSON object")
    if cfg.get("format", 0) > FOLDER_FORMAT:
        raise WeightsError(f"{path} was written by a newer spikmamba (format {cfg['format']}); upgrade spikmamba")
    if cfg.get("model") not in list_models():
        raise WeightsError(f"{path} names model {cfg.get('model')!r}, which is not registered (`spikmamba models` "
                           f"lists them)")
    if not isinstance(cfg.get("kwargs", {}), dict):
        raise WeightsError(f"{path}: 'kwargs' must be a mapping of model arguments")
    return cfg


def read_safetensors(path: "str | os.PathLike") -> "dict[str, torch.Tensor]":
    """The tensors of a ``.safetensors`` file (its header is checked against the file size by the
    safetensors library; nothing in it can run code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path} is not a readable safetensors file (truncated or damaged?): {err}") from None


def load_pretrained(folder: "str | os.PathLike") -> "tuple[nn.Module, dict]":
    """``(model in eval mode, config)`` from a weights folder (see :func:`save_pretrained`)."""
    from .registry import build_from_config

    folder = Path(folder)
    cfg = read_config(folder)
    try:
        model = build_from_config(cfg)
    except (TypeError, ValueError) as err:
        raise WeightsError(f"{folder / CONFIG_FILE}: the model cannot be built from it ({err})") from None
    state = read_safetensors(folder / WEIGHTS_FILE)
    load_state_checked(model, state, str(folder / WEIGHTS_FILE))
    return model.eval(), cfg
