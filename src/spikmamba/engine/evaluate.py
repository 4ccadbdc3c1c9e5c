"""``spikmamba test`` and ``spikmamba predict``: use a trained checkpoint.

``run_test`` rebuilds the test set the checkpoint's config names (optionally with changed data
keys, e.g. ``test_root`` on another machine) and writes ``metrics.json``, ``per_class.csv``,
``confusion.csv`` and ``confusion.png``. ``predict_files`` reads event files of any supported
format, turns each into the tensor the model was trained on (the representation is stored in
the checkpoint) and returns class probabilities.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, stored_config
from .config import TrainConfig, apply_overrides, load_config, validate_config
from .data import geometry_of, load_input_file, load_split, representation_from_dict
from .train import evaluate, resolve_device


def test_config(checkpoint: str, ckpt: dict, config_file: "str | None", overrides: "list[str]") -> TrainConfig:
    cfg = stored_config(ckpt, checkpoint)
    if config_file:
        cfg = load_config(config_file, base=cfg)
    return validate_config(apply_overrides(cfg, overrides), f"the config of {checkpoint} with the given overrides")


def run_test(checkpoint: str, config_file: "str | None" = None, overrides: "list[str] | None" = None,
             out_dir: "str | None" = None, progress: bool = True) -> dict:
    """Evaluate ``checkpoint`` on its test set; returns the metrics dict (also written as JSON)."""
    ckpt = load_checkpoint(checkpoint)
    cfg = dataclasses.replace(test_config(checkpoint, ckpt, config_file, overrides or []), progress=progress)
    model, _ = model_from_checkpoint(checkpoint, ckpt)
    split = load_split(cfg, "test")
    if split is None:
        raise ValueError(f"the config of {checkpoint} has no test set: pass test_root=<folder> "
                         f"(see `spikmamba datasets {cfg.data_name}`)")
    x, y, classes, rep = split
    if list(classes) != list(ckpt["classes"]):
        raise ValueError(f"the test set's classes {list(classes)[:5]}... differ from the checkpoint's "
                         f"{list(ckpt['classes'])[:5]}...; point test_root at the same dataset")
    want = ckpt["geometry"]
    got = geometry_of(x, rep)
    if got != {k: int(want[k]) for k in got}:
        raise ValueError(f"the test data has geometry {got} but the model was trained on {dict(want)}; keep the "
                         f"representation, frames and resolution of training")
    device = resolve_device(cfg.device)
    model.to(device)
    metrics = evaluate(model, x, y, cfg.batch_size, len(classes), device=device, amp=cfg.amp, progress=progress,
                       groups=split.groups)
    per_video = None
    if split.groups is not None:
        metrics, per_video = metrics
    out = Path(out_dir) if out_dir else Path(checkpoint).parent / f"test-{Path(checkpoint).stem}"
    out.mkdir(parents=True, exist_ok=True)
    result = {"checkpoint": str(checkpoint), "model": ckpt["model_name"], "data": cfg.data_name, **metrics.summary(classes)}
    if per_video is not None:  # the published ReSpike code reports per clip; both are given, and named
        result["level"] = "clip"
        result["per_video"] = {"level": "video (mean of its clips' logits)", **per_video.summary(classes)}
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    with open(out / "per_class.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "accuracy", "samples"])
        for row in result["per_class"]:
            w.writerow([row["class"], "" if row["accuracy"] is None else f"{row['accuracy']:.6f}", row["samples"]])
    metrics.save_csv(out / "confusion.csv", classes)
    metrics.save_png(out / "confusion.png", classes, title=f"{ckpt['model_name']} on {cfg.data_name} test")
    result["out_dir"] = str(out)
    return result


def natural_key(path) -> tuple:
    """Sort key that orders numbers by value: ``2.bs2`` before ``10.bs2``, ``clip9`` before ``clip10``."""
    import re

    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", str(path)) if part)


def collect_input_files(paths, extensions: "tuple[str, ...] | None" = None, what: str = "event") -> "list[Path]":
    """Files named directly, plus every file with a known extension (event files by default) under named folders."""
    from ..events.io import EVENT_FILE_EXTENSIONS

    extensions = extensions or EVENT_FILE_EXTENSIONS
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted((f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(extensions)),
                           key=natural_key)
            if not found:
                raise FileNotFoundError(f"{p} holds no {what} files (extensions {', '.join(extensions)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return files


def _without_path(message: str, path) -> str:
    """The reason alone: the file is reported beside it, so a message that starts with the path
    (as reader errors do) would name it twice."""
    for prefix in (str(path), str(Path(path).resolve())):
        if message.startswith(prefix):
            return message[len(prefix):].lstrip(":").strip()
    return message


@torch.no_grad()
def predict_files(checkpoint: str, paths, topk: int = 5, batch_size: int = 16, device: str = "cpu",
                  class_names: "dict | None" = None) -> dict:
    """``{"predictions": [...], "errors": [...]}``: for each readable file the top-``topk`` classes with
    probabilities; a file that cannot be read or represented is listed under errors with the reason.
    Event checkpoints read event files, image checkpoints (SVMamba) image files, video checkpoints
    (ReSpike) video files, one prediction per video from the mean of its clips' logits. ``class_names``
    (class index -> name, e.g. from a class-index JSON) replaces the names stored in the checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    if "representation" not in ckpt:
        raise CheckpointError(f"{checkpoint} does not record how events became tensors; it cannot predict from files")
    model, _ = model_from_checkpoint(checkpoint, ckpt)
    dev = resolve_device(device)
    model.to(dev)
    rep = representation_from_dict(ckpt["representation"])
    classes = list(ckpt["classes"])
    if class_names:
        classes = [str(class_names.get(str(i), class_names.get(i, c))) for i, c in enumerate(classes)]
    k = min(topk, len(classes))
    predictions, errors, batch, names = [], [], [], []

    def flush():
        if batch:
            report(model(torch.stack(batch).to(dev)).float().softmax(1).cpu())

    def flush_logits():
        report(torch.stack(batch).softmax(1))

    def report(probs):
        for name, p in zip(names, probs):
            top = p.topk(k)
            predictions.append({"file": str(name), "prediction": classes[int(top.indices[0])],
                                "probability": float(top.values[0]),
                                "top": [{"class": classes[int(i)], "probability": float(v)}
                                        for v, i in zip(top.values, top.indices)]})
        batch.clear()
        names.clear()

    from ..data.images import IMAGE_EXTENSIONS, ImageRepresentation
    from ..data.video import VIDEO_EXTENSIONS, VideoRepresentation

    is_video = isinstance(rep, VideoRepresentation)
    kinds = {ImageRepresentation: (IMAGE_EXTENSIONS, "image"), VideoRepresentation: (VIDEO_EXTENSIONS, "video")}
    files = collect_input_files(paths, *kinds.get(type(rep), (None, "event")))
    for f in files:
        try:
            x = load_input_file(f, rep)
        except (ValueError, OSError, ImportError) as err:
            errors.append({"file": str(f), "error": _without_path(str(err), f)})
            continue
        if is_video:  # one prediction per video: the mean of its clips' logits
            batch.append(torch.cat([model(x[i:i + batch_size].to(dev)).float().cpu()
                                    for i in range(0, len(x), batch_size)]).mean(0))
            names.append(f)
            flush_logits()
            continue
        batch.append(x)
        names.append(f)
        if len(batch) == batch_size:
            flush()
    flush()
    return {"checkpoint": str(checkpoint), "model": ckpt["model_name"], "predictions": predictions, "errors": errors}
