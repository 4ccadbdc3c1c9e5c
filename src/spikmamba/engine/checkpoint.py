"""Checkpoints: written atomically, checked on load, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts only (the RNG states
are tensors or lists, never pickled objects), so loading never runs code from the file.
Keys: ``format`` (version), ``model_name``, ``model`` (state dict), ``config`` (resolved
TrainConfig as a dict), ``classes``, ``geometry`` (``in_chans``, ``img_size``,
``num_frames``), ``representation`` (how events became tensors, so ``predict`` can repeat it),
``digest`` (sha256 of everything else, so a damaged file is refused instead of loading changed
weights), and, for resuming, ``optimizer``, ``scheduler``, ``scaler``, ``rng``, ``progress``.

Every field is checked on load (types, shapes, the geometry's bounds, the keys resume needs);
a problem is a :class:`CheckpointError` naming the file and the field. Writing goes through
memory to a temporary file in the same folder, then a rename: a full disk or a read-only
folder ends with one message (which file, how much space it needed) and the previous
checkpoint intact.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch
from torch import nn

from ..files import FileWriteError, atomic_write_bytes
from ..models.weights import WeightsError, geometry_problem, load_state_checked, load_torch_file
from .config import config_from_dict
from .model import build_model

FORMAT = 2
REQUIRED = ("model_name", "model", "config", "classes", "geometry")
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "progress")


class CheckpointError(WeightsError):
    """A checkpoint file that cannot be used: unreadable, incomplete, damaged, or for another model."""


#: a checkpoint that could not be written (disk full, read-only folder); the previous one is intact
CheckpointWriteError = FileWriteError


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Serialise with a digest, then write atomically (see :func:`atomic_write_bytes`)."""
    body = {"format": FORMAT, **payload}
    body["digest"] = payload_digest(body)
    buf = io.BytesIO()
    torch.save(body, buf)
    atomic_write_bytes(path, buf.getvalue())


def payload_digest(ckpt: dict) -> str:
    """sha256 over every field but ``digest``: tensors by their bytes, dtype and shape, other
    values by their repr, in the stored order."""
    h = hashlib.sha256()

    def walk(value):
        if torch.is_tensor(value):
            t = value.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            h.update(b"{")
            for k, v in value.items():
                h.update(repr(k).encode())
                walk(v)
            h.update(b"}")
        elif isinstance(value, (list, tuple)):
            h.update(b"[")
            for v in value:
                walk(v)
            h.update(b"]")
        else:
            h.update(repr(value).encode())

    walk({k: v for k, v in ckpt.items() if k != "digest"})
    return h.hexdigest()


def state_digest(state: dict) -> str:
    """sha256 over a state dict's names and tensor bytes: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, value in state.items():
        h.update(name.encode())
        if torch.is_tensor(value):
            h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_checkpoint_file(path: str | os.PathLike, what: str = "weights file"):
    """``torch.load(weights_only=True)`` with one clear CheckpointError for a missing or unusable
    file (see :func:`spikmamba.models.weights.load_torch_file`); never runs pickled code."""
    return load_torch_file(path, what, error=CheckpointError)


def load_checkpoint(path: str | os.PathLike, resume: bool = False) -> dict:
    """Read and check a checkpoint (``weights_only=True``); a CheckpointError naming the file and
    the field for anything unusable. ``resume=True`` also requires the training state."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (training writes best.pt and last.pt in its "
                              f"run.out_dir)")
    ckpt = load_checkpoint_file(path, "spikmamba checkpoint")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a spikmamba checkpoint dict")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        hint = " (a bare state_dict? load it with model.load_state_dict instead)" if "model" not in ckpt else ""
        raise CheckpointError(f"{path} lacks the checkpoint keys {', '.join(missing)}{hint}")
    fmt = ckpt.get("format", 0)
    if not isinstance(fmt, int) or fmt > FORMAT:
        raise CheckpointError(f"{path} was written by a newer spikmamba (format {fmt!r} > {FORMAT}); upgrade spikmamba")
    if "digest" in ckpt and ckpt["digest"] != payload_digest(ckpt):
        raise CheckpointError(f"{path} is damaged: its contents do not match the digest stored when it was written "
                              f"(a changed byte, a bad copy or disk); use another copy or an earlier checkpoint")
    check_fields(ckpt, path)
    if resume:
        check_resume_fields(ckpt, path)
    return ckpt


def _field_error(path, field: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: field {field!r} {problem}")


def check_fields(ckpt: dict, path) -> None:
    """Types and bounds of the fields every use of a checkpoint reads."""
    if not isinstance(ckpt["model_name"], str):
        raise _field_error(path, "model_name", f"must be a string, is {type(ckpt['model_name']).__name__}")
    if not isinstance(ckpt["config"], dict):
        raise _field_error(path, "config", f"must be a mapping of config keys, is {type(ckpt['config']).__name__}")
    classes = ckpt["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _field_error(path, "classes", "must be a non-empty list of class names")
    problem = geometry_problem(ckpt["geometry"])
    if problem is not None:
        raise _field_error(path, *problem)
    model = ckpt["model"]
    if not isinstance(model, dict) or not model:
        raise _field_error(path, "model", "must be a non-empty state dict (parameter name -> tensor)")
    for name, value in model.items():
        if not isinstance(name, str) or not torch.is_tensor(value):
            raise _field_error(path, f"model[{name!r}]", f"must be a tensor, is {type(value).__name__}")
    rep = ckpt.get("representation")
    if rep is not None and not isinstance(rep, dict):
        raise _field_error(path, "representation", f"must be a mapping, is {type(rep).__name__}")


def check_resume_fields(ckpt: dict, path) -> None:
    """The training state a resume reads: present, and of the right kinds."""
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} has no training state to resume from (lacks {', '.join(missing)}); resume from "
                              f"a last.pt, or start a new run initialised from this file")
    for key in ("optimizer", "scheduler", "scaler", "progress", "rng"):
        if not isinstance(ckpt[key], dict):
            raise _field_error(path, key, f"must be a mapping, is {type(ckpt[key]).__name__}")
    rng = ckpt["rng"].get("per_rank")
    if not isinstance(rng, list) or not rng or not all(isinstance(r, dict) and torch.is_tensor(r.get("torch"))
                                                       for r in rng):
        raise _field_error(path, "rng.per_rank", "must be a list of per-process RNG states")
    progress = ckpt["progress"]
    for key in ("epoch", "batch", "step"):
        v = progress.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _field_error(path, f"progress.{key}", f"is {v!r}; it must be a non-negative integer")


def load_model_state(model: nn.Module, state: dict, source: str) -> None:
    """``load_state_dict`` with an error that lists what does not match, instead of a wall of keys."""
    load_state_checked(model, state, source, error=CheckpointError)


def stored_config(ckpt: dict, path: str | os.PathLike):
    """The TrainConfig saved in a checkpoint, validated like any config (errors name the checkpoint)."""
    return config_from_dict(ckpt["config"], f"in the config stored in {path}", note_old_keys=False)


def model_from_checkpoint(path: str | os.PathLike, ckpt: dict | None = None):
    """(model in eval mode, checkpoint dict): the model the checkpoint's config describes, with its weights."""
    ckpt = ckpt if ckpt is not None else load_checkpoint(path)
    cfg = stored_config(ckpt, path)
    if cfg.model.name != ckpt["model_name"]:
        raise CheckpointError(
            f"{path}: config names model {cfg.model.name!r} but the weights are for {ckpt['model_name']!r}"
        )
    model = build_model(cfg, len(ckpt["classes"]), **ckpt["geometry"], pretrained=False)
    load_model_state(model, ckpt["model"], str(path))
    return model.eval(), ckpt
