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
import math
import os
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import SpikmambaError
from ..text import shown
from .registry import list_models, suggest

WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "README.md"
FOLDER_FORMAT = 1
#: the largest config.json read (a shipped one is about 1 kB)
CONFIG_LIMIT = 1 << 20
#: largest geometry a checkpoint or weights folder may ask for (a crafted img_size would otherwise allocate terabytes)
GEOMETRY_BOUNDS = {"in_chans": (1, 64), "img_size": (1, 4096), "num_frames": (1, 1024)}
#: config.json keys also written into model.safetensors' header: an edit of one without the other is refused
RECORDED = ("model", "kwargs", "adaptive", "classes", "representation", "transforms", "geometry")
TENSOR_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


class WeightsError(SpikmambaError, ValueError):
    """A weights file or folder that cannot be used: unreadable, damaged, or for another model."""


def load_torch_file(path: str | os.PathLike, what: str = "weights file", error=WeightsError):
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


def load_state_checked(
    model: nn.Module, state: dict, source: str, error=WeightsError, check_only: bool = False
) -> None:
    """``load_state_dict`` with an error that names what does not fit, the first mismatch first
    (``check_only``: names and shapes only, nothing loaded)."""
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
    if not check_only:
        model.load_state_dict(state)


def save_pretrained(model: nn.Module, folder: str | os.PathLike, config: dict, card: str | None = None) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` (and ``README.md``, the model card).

    ``config`` must name the registered ``model`` and its ``kwargs``; it usually also holds
    ``classes``, ``representation``, ``transforms`` and, for the EAS-SNN front-end, ``adaptive``.
    The same fields are recorded in the weights file's header, so that ``config.json`` edited
    apart from its weights (another frame count, binary frames, other classes) is refused."""
    from safetensors.torch import save_file

    if config.get("model") not in list_models():
        raise WeightsError(f"config names unknown model {shown(config.get('model'))}")
    config = {"format": FOLDER_FORMAT, **config}
    check_config(config, "config")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    recorded = json.dumps({k: config.get(k) for k in RECORDED}, sort_keys=True)
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "spikmamba": recorded})
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    if card is not None:
        (folder / CARD_FILE).write_text(card)
    return folder


def key_error(path, key: str, problem: str) -> WeightsError:
    return WeightsError(f"{path}: key {key!r} {problem}")


def _json_value(value, depth: int = 0) -> bool:
    """A model argument: a number, string, bool or None, or a short list of them."""
    if value is None or isinstance(value, (bool, int, str)):
        return not isinstance(value, str) or len(value) <= 1000
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return depth < 2 and len(value) <= 64 and all(_json_value(v, depth + 1) for v in value)
    return False


def check_config(cfg: dict, path) -> None:
    """Every field of a weights folder's config: its type, and its bounds where it has them."""
    unknown = sorted(set(cfg) - {"format", *RECORDED})
    if unknown:
        raise WeightsError(f"{path}: unknown keys {shown(unknown)}; a weights folder's config holds "
                           f"{', '.join(('format',) + RECORDED)}")
    fmt = cfg.get("format", 0)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 0:
        raise key_error(path, "format", f"is {shown(fmt)}; it must be a non-negative integer")
    if fmt > FOLDER_FORMAT:
        raise WeightsError(f"{path} was written by a newer spikmamba (format {fmt}); upgrade spikmamba")
    model = cfg.get("model")
    if not isinstance(model, str) or model not in list_models():
        raise key_error(path, "model", f"names {shown(model)}, which is not registered; "
                                        f"{suggest(model)}(`spikmamba models` lists them)")
    kwargs = cfg.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise key_error(path, "kwargs", f"must be a mapping of model arguments, is {type(kwargs).__name__}")
    for k, v in kwargs.items():
        if not k.isidentifier() or len(k) > 64 or not _json_value(v):
            raise key_error(path, f"kwargs.{k[:64]}", f"is {shown(v)}; model arguments are numbers, strings, booleans "
                                                       f"or short lists of them")
        problem = _geometry_value_problem(k, v) if k in GEOMETRY_BOUNDS else None
        if problem is not None:
            raise key_error(path, f"kwargs.{k}", problem)
    classes = cfg.get("classes")
    if classes is not None and not (isinstance(classes, list) and 0 < len(classes) <= 100_000
                                    and all(isinstance(c, str) and 0 < len(c) <= 200 for c in classes)):
        raise key_error(path, "classes", "must be a non-empty list of class names (strings of 1 to 200 characters)")
    for key, kind in (("representation", dict), ("adaptive", dict), ("transforms", list), ("geometry", dict)):
        if cfg.get(key) is not None and not isinstance(cfg[key], kind):
            raise key_error(
                path, key, f"must be a {'mapping' if kind is dict else 'list'}, is {type(cfg[key]).__name__}"
            )
    problem = geometry_problem(cfg["geometry"]) if cfg.get("geometry") is not None else None
    if problem is not None:
        raise key_error(path, *problem)


def geometry_problem(geometry) -> tuple[str, str] | None:
    """``(field, what is wrong)`` with a model's input geometry (``in_chans``, ``img_size``,
    ``num_frames``, each an integer within :data:`GEOMETRY_BOUNDS`), or None when it is right.
    Checkpoints and weights folders both check theirs with it."""
    if not isinstance(geometry, dict) or set(geometry) != set(GEOMETRY_BOUNDS):
        found = sorted(map(str, geometry)) if isinstance(geometry, dict) else geometry
        return "geometry", f"must have exactly the keys {', '.join(GEOMETRY_BOUNDS)}, has {shown(found)}"
    for key in GEOMETRY_BOUNDS:
        problem = _geometry_value_problem(key, geometry[key])
        if problem is not None:
            return f"geometry.{key}", problem
    return None


def _geometry_value_problem(key: str, v) -> str | None:
    """What is wrong with ``v`` as geometry ``key`` (an integer within :data:`GEOMETRY_BOUNDS`)."""
    lo, hi = GEOMETRY_BOUNDS[key]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        return f"is {shown(v)}; it must be an integer in [{lo}, {hi}]"
    return None


def read_config(folder: str | os.PathLike) -> dict:
    """``config.json`` of a weights folder, size-capped and checked field by field (:func:`check_config`)."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise WeightsError(f"weights folder {shown(str(folder))} does not exist")
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise WeightsError(f"{folder} is not a weights folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    size = path.stat().st_size
    if size > CONFIG_LIMIT:
        raise WeightsError(f"{path} is {size:,} bytes; a weights folder's config is a few kB (at most "
                           f"{CONFIG_LIMIT:,} bytes are read)")
    try:
        cfg = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise WeightsError(f"{path} is not valid JSON ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(cfg, dict):
        raise WeightsError(f"{path} must hold a JSON object")
    check_config(cfg, path)
    return cfg


def _first_difference(a, b, where: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}")
    return f"{where} is {shown(a, 60)} in it but {shown(b, 60)} in the weights file"


def read_header(path: Path) -> tuple[dict, dict]:
    """(metadata, {name: (shape, dtype)}) of a safetensors file, from its header alone."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {}
            for k in f.keys():
                sl = f.get_slice(k)
                tensors[k] = (tuple(sl.get_shape()), sl.get_dtype())
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path} is not a readable safetensors file (truncated or damaged?): {err}") from None
    return meta, tensors


def check_recorded(cfg: dict, meta: dict, folder: Path) -> None:
    """``config.json`` against the fields recorded in the weights file when it was saved."""
    if "spikmamba" not in meta:
        return  # written before the fields were recorded: the structural checks still apply
    try:
        recorded = json.loads(meta["spikmamba"])
    except json.JSONDecodeError:
        raise WeightsError(f"{folder / WEIGHTS_FILE}: its header's record is damaged") from None
    for key in RECORDED:
        if isinstance(recorded, dict) and cfg.get(key) != recorded.get(key):
            raise WeightsError(f"{folder / CONFIG_FILE} does not match the weights it sits beside: "
                               f"{_first_difference(cfg.get(key), recorded.get(key), key)}; the model would run with "
                               f"the wrong input or classes. Restore config.json, or export the folder again")


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (its header is checked against the file size by the
    safetensors library; nothing in it can run code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path} is not a readable safetensors file (truncated or damaged?): {err}") from None
