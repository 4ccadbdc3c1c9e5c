"""Evaluation and ``spikmamba test``: a trained model on a labelled test set.

``evaluate`` runs a model over a loader and returns one :class:`EvalResult` (per-sample metrics,
and per-video metrics for video data). ``run_test`` rebuilds the test set the checkpoint's
config names (optionally with changed data keys, e.g. ``test_root`` on another machine) and
writes ``metrics.json``, ``per_class.csv``, ``confusion.csv`` and ``confusion.png``.
Predicting on unlabelled files is :mod:`.predict`.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..errors import InputError
from . import distributed as D
from .checkpoint import load_checkpoint, model_from_checkpoint, stored_config
from .config import TrainConfig, apply_overrides, load_config, validate_config
from .device import autocast, resolve_device
from .device_inputs import model_input
from .inputs import (
    build_dataset,
    eval_view,
    geometry_of,
    load_data,
)
from .loader import SequentialBatches, make_loader
from .metrics import ClassificationMetrics, per_group_metrics


@dataclass
class EvalResult:
    """Metrics of one evaluation: per sample (clip), per video when the data has videos, and the
    samples left out as unreadable (``skip_unreadable``)."""
    metrics: ClassificationMetrics
    per_group: ClassificationMetrics | None = None
    skipped: list = field(default_factory=list)

    @property
    def top1(self) -> float:
        return self.metrics.top1

    @property
    def topk_acc(self) -> float:
        return self.metrics.topk_acc


@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int, env: D.DistEnv | None = None,
             device: torch.device | str = "cpu", amp: str = "none", groups=None, progress: bool = False,
             representation=None) -> EvalResult:
    """Metrics of ``model`` over a loader of :class:`~.loader.Batch` es. Under DDP each process
    evaluates its share and the counts are summed, so every process returns the metrics of the
    whole set. With ``groups`` (the video of each sample of the view) a video's prediction is the
    mean of its clips' logits. ``representation`` builds batches of events sent for the device
    (see :mod:`.device_inputs`)."""
    env = env or D.DistEnv()
    device = torch.device(device)
    model.eval()
    metrics = ClassificationMetrics(num_classes)
    n = len(loader.dataset)
    logits_all = torch.zeros(n, num_classes, dtype=torch.float64) if groups is not None else None
    seen = torch.zeros(n, dtype=torch.bool) if groups is not None else None
    skipped = []
    for batch in tqdm(loader, desc="evaluating", disable=not progress, leave=False):
        skipped += batch.skipped
        if batch.x is None:
            continue
        with autocast(device, amp):
            logits = model(model_input(batch.x, representation, device))
        metrics.update(logits, batch.y)
        if logits_all is not None:
            logits_all[batch.position] = logits.detach().double().cpu()
            seen[batch.position] = True
    per_group = None
    if env.enabled:
        D.all_reduce_sum(metrics.confusion, env)
        D.all_reduce_sum(metrics.topk_correct, env)
        if logits_all is not None:
            D.all_reduce_sum(logits_all, env)
            counts = seen.to(torch.int64)
            D.all_reduce_sum(counts, env)
            seen = counts > 0
        gathered = [None] * env.world_size
        torch.distributed.all_gather_object(gathered, skipped)
        skipped = [s for part in gathered for s in part]
    if logits_all is not None:
        targets = torch.as_tensor(loader.dataset.targets)
        groups = torch.as_tensor(groups)
        per_group = per_group_metrics(logits_all[seen], targets[seen], groups[seen], num_classes)
    return EvalResult(metrics, per_group, skipped)


def test_config(checkpoint: str, ckpt: dict, config_file: str | None, overrides: list[str]) -> TrainConfig:
    cfg = stored_config(ckpt, checkpoint)
    if config_file:
        cfg = load_config(config_file, base=cfg)
    return validate_config(apply_overrides(cfg, overrides), f"the config of {checkpoint} with the given overrides")


def overlap_with_training(cfg: TrainConfig, test_view) -> tuple[int, int] | None:
    """(test samples whose file is also a training file, test samples), when any are shared;
    ``test_view`` is the test set already made, whose sample list is compared, not listed again."""
    import os

    if cfg.data.name == "synth" or not cfg.data.test_root:
        return None
    test = getattr(test_view.dataset, "samples", None)
    try:
        train = getattr(build_dataset(cfg, "train"), "samples", None)
    except (ValueError, OSError):
        return None
    if not train or not test:
        return None
    seen = {os.path.realpath(getattr(s, "path", "")) for s in train}
    shared = sum(os.path.realpath(getattr(s, "path", "")) in seen for s in test)
    return (shared, len(test)) if shared else None


def run_test(checkpoint: str, config_file: str | None = None, overrides: list[str] | None = None,
             out_dir: str | None = None, progress: bool = True) -> dict:
    """Evaluate ``checkpoint`` on its test set; returns the metrics dict (also written as JSON)."""
    ckpt = load_checkpoint(checkpoint)
    cfg = test_config(checkpoint, ckpt, config_file, overrides or []).replace({"run.progress": progress})
    model, _ = model_from_checkpoint(checkpoint, ckpt)
    split, notes = "test", []
    if cfg.data.name != "synth" and not cfg.data.test_root:
        if not cfg.data.val_fraction > 0:
            raise InputError(f"the config of {checkpoint} has no test set and no validation split: pass "
                             f"data.test_root=<folder> (see `spikmamba datasets {cfg.data.name}`)")
        data = load_data(cfg)
        view, classes, rep, split = data.val, data.classes, data.representation, "validation"
        notes.append(f"the run's config has no test set (data.test_root): evaluated on its validation split instead "
                     f"({len(view)} samples held out of training by data.val_fraction={cfg.data.val_fraction:g}, seed "
                     f"{cfg.run.seed}); pass data.test_root=<folder> for a test set")
    else:
        try:
            view, classes, rep = eval_view(cfg, "test")
        except FileNotFoundError as err:  # DatasetLayoutError: no test split where test_root points
            data = cfg.data
            same = data.test_root and data.root and Path(data.test_root).resolve() == Path(data.root).resolve()
            if not same:
                raise
            raise InputError(f"data.test_root is the training folder ({cfg.data.root}), which holds no test "
                             f"split:\n{err}\nGive data.test_root a test set's folder, or leave it out: without a "
                             f"test set, `spikmamba test` evaluates the run's validation split") from None
        shared = overlap_with_training(cfg, view)
        if shared:
            notes.append(
                f"{shared[0]} of the {shared[1]} test samples are files of the training set ({cfg.data.root}): "
                f"this accuracy is not a held-out result"
            )
    if list(classes) != list(ckpt["classes"]):
        raise InputError(f"the test set's classes {list(classes)[:5]}... differ from the checkpoint's "
                         f"{list(ckpt['classes'])[:5]}...; point data.test_root at the same dataset")
    want = ckpt["geometry"]
    got = geometry_of(rep)
    if got != {k: int(want[k]) for k in got}:
        raise InputError(f"the test data has geometry {got} but the model was trained on {dict(want)}; keep the "
                         f"representation, frames and resolution of training")
    device = resolve_device(cfg.device.name)
    model.to(device)
    from .loader import default_num_workers

    workers = cfg.data.num_workers
    workers = workers if workers >= 0 else default_num_workers(cfg.data.name == "synth", device=device)
    loader = make_loader(view, SequentialBatches(len(view), cfg.data.batch_size), workers, device)
    result_ = evaluate(model, loader, len(classes), device=device, amp=cfg.device.amp, progress=progress,
                       groups=view.groups)
    metrics, per_video = result_.metrics, result_.per_group
    out = Path(out_dir) if out_dir else Path(checkpoint).parent / f"test-{Path(checkpoint).stem}"
    out.mkdir(parents=True, exist_ok=True)
    result = {"checkpoint": str(checkpoint), "model": ckpt["model_name"], "data": cfg.data.name, "split": split,
              "notes": notes, **metrics.summary(classes)}
    if per_video is not None:  # the published ReSpike code reports per clip; both are given, and named
        result["level"] = "clip"
        result["per_video"] = {"level": "video (mean of its clips' logits)", **per_video.summary(classes)}
    if result_.skipped:
        result["skipped"] = [{"source": s.source, "reason": s.reason} for s in result_.skipped]
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    with open(out / "per_class.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "accuracy", "samples"])
        for row in result["per_class"]:
            w.writerow([row["class"], "" if row["accuracy"] is None else f"{row['accuracy']:.6f}", row["samples"]])
    metrics.save_csv(out / "confusion.csv", classes)
    metrics.save_png(out / "confusion.png", classes, title=f"{ckpt['model_name']} on {cfg.data.name} {split}")
    result["out_dir"] = str(out)
    return result
