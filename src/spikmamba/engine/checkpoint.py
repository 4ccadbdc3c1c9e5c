"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts only (the RNG states
are tensors or lists, never pickled objects), so loading never runs code from the file.
Keys: ``format`` (version), ``model_name``, ``model`` (state dict), ``config`` (resolved
TrainConfig as a dict), ``classes``, ``geometry`` (``in_chans``, ``img_size``,
``num_frames``), ``representation`` (how events became tensors, so ``predict`` can repeat it),
and, for resuming, ``optimizer``, ``scheduler``, ``scaler``, ``rng``, ``progress``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

FORMAT = 1
REQUIRED = ("model_name", "model", "config", "classes", "geometry")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, incomplete, or for another model."""


def atomic_write_bytes(path: "str | os.PathLike", data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checkpoint(path: "str | os.PathLike", payload: dict) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save({"format": FORMAT, **payload}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def state_digest(state: dict) -> str:
    """sha256 over a state dict's names and tensor bytes: equal digests mean bit-identical weights."""
    import hashlib

    h = hashlib.sha256()
    for name, value in state.items():
        h.update(name.encode())
        if torch.is_tensor(value):
            h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_checkpoint_file(path: "str | os.PathLike", what: str = "weights file"):
    """``torch.load(weights_only=True)`` with one clear CheckpointError for a missing or unusable file
    (also for pretrained weights such as a torchvision ResNet-50 ``.pth``); never runs pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, disallowed globals
        raise CheckpointError(f"{path} is not a readable {what}: {_load_failure(path, err)}") from None


def _load_failure(path: Path, err: Exception) -> str:
    """Why ``torch.load`` refused a file, in our words. Never torch's own advice, which suggests
    reloading with ``weights_only=False``: that would run whatever code the file's pickle holds."""
    import re
    import zipfile

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


def load_checkpoint(path: "str | os.PathLike") -> dict:
    """Read a checkpoint with ``weights_only=True``; a clear CheckpointError for anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (training writes best.pt and last.pt in its out_dir)")
    ckpt = load_checkpoint_file(path, "spikmamba checkpoint")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a spikmamba checkpoint dict")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        hint = " (a bare state_dict? load it with model.load_state_dict instead)" if "model" not in ckpt else ""
        raise CheckpointError(f"{path} lacks the checkpoint keys {', '.join(missing)}{hint}")
    if ckpt.get("format", 0) > FORMAT:
        raise CheckpointError(f"{path} was written by a newer spikmamba (format {ckpt['format']} > {FORMAT}); upgrade spikmamba")
    return ckpt


def load_model_state(model: nn.Module, state: dict, source: str) -> None:
    """``load_state_dict`` with an error that lists what does not match, instead of a wall of keys."""
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
        raise CheckpointError(f"{source} does not fit model {type(model).__name__}: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state)


def stored_config(ckpt: dict, path: "str | os.PathLike"):
    """The TrainConfig saved in a checkpoint, validated like any config (errors name the checkpoint)."""
    from .config import config_from_dict

    return config_from_dict(ckpt["config"], f"in the config stored in {path}")


def model_from_checkpoint(path: "str | os.PathLike", ckpt: "dict | None" = None):
    """(model in eval mode, checkpoint dict): the model the checkpoint's config describes, with its weights."""
    from .model import build_model

    ckpt = ckpt if ckpt is not None else load_checkpoint(path)
    cfg = stored_config(ckpt, path)
    if cfg.model != ckpt["model_name"]:
        raise CheckpointError(f"{path}: config names model {cfg.model!r} but the weights are for {ckpt['model_name']!r}")
    model = build_model(cfg, len(ckpt["classes"]), **ckpt["geometry"], pretrained=False)
    load_model_state(model, ckpt["model"], str(path))
    return model.eval(), ckpt
