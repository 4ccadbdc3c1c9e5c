"""A compact, honest training loop for the built-in dataset: train, evaluate, save.

``TrainConfig`` is a plain dataclass; a YAML file (``--config``) and the command line
(``key=value``, dotted keys allowed: ``data.root=...`` sets ``data_root``) override its fields,
both validated: an unknown key or a wrong type is an error naming the key and the source.
Data: the built-in ``SynthActions`` (``data_name=synth``) or any recorded dataset in
``spikmamba.data.DATASETS`` read from ``data_root``, with a seeded stratified validation split
(``val_fraction``) on which the best epoch is chosen; a test set is never used for selection.
The loop: AdamW, linear warm-up then cosine decay, label smoothing, gradient clipping,
a tqdm progress bar (loss, accuracy, samples/s), test accuracy at the end, and a checkpoint
(``state_dict`` + resolved config) written atomically (temp file, then rename).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.synthetic import SynthActions
from ..events.representations import ToFrame
from ..models import create_model


@dataclass
class TrainConfig:
    model: str = "spikmamba_tiny"
    data_name: str = "synth"
    data_root: str = ""
    test_root: str = ""
    val_fraction: float = 0.0
    representation: str = "frames"
    split_by: str = "time"
    resolution: int = 0
    sensor_size: int = 32
    frames: int = 8
    patch_size: int = 8
    num_train: int = 2000
    num_test: int = 500
    batch_size: int = 32
    epochs: int = 15
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    clip_grad: float = 1.0
    seed: int = 0
    out_dir: str = "runs/synth"
    progress: bool = True
    model_overrides: dict = field(default_factory=dict)


def _coerce(key: str, value, current, source: str):
    """``value`` as the type of the field's default, or a ValueError naming key and source."""
    kind = type(current)
    if isinstance(value, str) and kind is not str:
        raw = value
        try:
            if kind is bool:
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return raw.lower() in ("true", "1", "yes")
            return kind(raw)
        except ValueError:
            raise ValueError(f"config key {key!r} expects {kind.__name__}, got {raw!r} ({source})") from None
    ok = (isinstance(value, kind) and not (kind is int and isinstance(value, bool))) or \
         (kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise ValueError(f"config key {key!r} expects {kind.__name__}, got {value!r} of type {type(value).__name__} ({source})")
    return kind(value) if kind is float else value


def _set(cfg: TrainConfig, pairs, source: str) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(cfg)} - {"model_overrides"}
    updates = {}
    for key, value in pairs:
        name = key.replace(".", "_")
        if name not in fields:
            raise ValueError(f"unknown config key {key!r} ({source}); valid keys: {', '.join(sorted(fields))}")
        updates[name] = _coerce(key, value, getattr(cfg, name), source)
    return dataclasses.replace(cfg, **updates)


def apply_overrides(cfg: TrainConfig, items: "list[str]") -> TrainConfig:
    """Apply ``key=value`` strings; unknown keys and bad values raise ValueError naming the key."""
    pairs = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. epochs=5)")
        pairs.append(tuple(item.split("=", 1)))
    return _set(cfg, pairs, "command line")


def load_config(path: "str | os.PathLike", base: "TrainConfig | None" = None) -> TrainConfig:
    """Read a YAML config (safe loader). Nested sections flatten with ``_``: ``data: {root: x}``
    sets ``data_root``. Unknown keys and wrong types are errors naming the key and the file."""
    import yaml

    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a config file must be a mapping of keys to values")

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    return _set(base or TrainConfig(), list(flat(doc)), f"in {path}")


def _frames_dataset(split: str, n: int, cfg: TrainConfig):
    size = (cfg.sensor_size, cfg.sensor_size)
    ds = SynthActions(split, num_samples=n, sensor_size=size, seed=cfg.seed, cache=False,
                      transform=ToFrame(size, cfg.frames))
    x = np.stack([ds[i][0] for i in tqdm(range(n), desc=f"simulating {split} events", disable=not cfg.progress,
                                          leave=False)])
    # log-scaled counts: robust to the event rate of a clip
    return torch.from_numpy(np.log1p(x)), torch.tensor(ds.targets), ds.classes


def _recorded_dataset(cfg: TrainConfig, root: str, split: str):
    from ..data import DATASETS, EventRepresentation

    if cfg.data_name not in DATASETS:
        raise ValueError(f"unknown data_name {cfg.data_name!r}; choose 'synth' or one of {', '.join(DATASETS)}")
    if not root:
        raise ValueError(f"data_name={cfg.data_name!r} needs data_root=<folder> (see `spikmamba datasets {cfg.data_name}`)")
    cls = DATASETS[cfg.data_name]
    import inspect

    probe = cls(root, split) if "split" in inspect.signature(cls).parameters else cls(root)
    W, H = probe.sensor_size
    res = (cfg.resolution, cfg.resolution) if cfg.resolution else (W, H)
    if res[0] != res[1]:
        raise ValueError(f"{cfg.data_name} has a {W}x{H} sensor; the models take square input: set resolution=<pixels>")
    probe.representation = EventRepresentation((W, H), kind=cfg.representation, frames=cfg.frames, split_by=cfg.split_by,
                                               resolution=res)
    x = torch.stack([probe[i][0] for i in tqdm(range(len(probe)), desc=f"reading {cfg.data_name} {split}",
                                                disable=not cfg.progress, leave=False)])
    return x, torch.tensor(probe.targets), probe.classes, probe.representation


def load_data(cfg: TrainConfig) -> dict:
    """Tensors for train / val (carved from train, stratified, seeded) / test, plus the input geometry."""
    if cfg.data_name == "synth":
        x_tr, y_tr, classes = _frames_dataset("train", cfg.num_train, cfg)
        x_te, y_te, _ = _frames_dataset("test", cfg.num_test, cfg)
        geometry = dict(in_chans=2, img_size=cfg.sensor_size, num_frames=cfg.frames)
    else:
        x_tr, y_tr, classes, rep = _recorded_dataset(cfg, cfg.data_root, "train")
        x_te = y_te = None
        if cfg.test_root:
            x_te, y_te, _, _ = _recorded_dataset(cfg, cfg.test_root, "test")
        geometry = dict(in_chans=rep.channels, img_size=x_tr.shape[-1], num_frames=rep.time_steps)
    data = dict(classes=list(classes), geometry=geometry, test=(x_te, y_te) if x_te is not None else None)
    if cfg.val_fraction > 0:
        from ..data import stratified_split

        tr, va = stratified_split(y_tr.tolist(), cfg.val_fraction, cfg.seed)
        data["train"], data["val"] = (x_tr[tr], y_tr[tr]), (x_tr[va], y_tr[va])
    else:
        data["train"], data["val"] = (x_tr, y_tr), None
    return data


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int = 2, img_size: "int | None" = None,
                num_frames: "int | None" = None) -> nn.Module:
    """The model a config describes; training and checkpoint loading both build it here."""
    return create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, img_size=img_size or cfg.sensor_size,
                        num_frames=num_frames or cfg.frames, patch_size=cfg.patch_size, **cfg.model_overrides)


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig) -> dict:
    """Train ``cfg.model`` on SynthActions; returns a summary dict (also written as JSON)."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    data = load_data(cfg)
    x_tr, y_tr = data["train"]
    classes, geometry = data["classes"], data["geometry"]
    model = build_model(cfg, len(classes), **geometry)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    n_train = len(y_tr)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    total, warmup = steps_per_epoch * cfg.epochs, int(cfg.warmup_epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    best = {"val_acc": -1.0, "epoch": 0}

    def payload(epoch):
        return {"model": model.state_dict(), "config": dataclasses.asdict(cfg), "classes": list(classes),
                "geometry": geometry, "epoch": epoch}

    step, history = 0, []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n_train, generator=gen)
        seen = correct = 0
        loss_sum = 0.0
        start = time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress)
        for b in bar:
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb, yb = x_tr[idx], y_tr[idx]
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, warmup, cfg.lr)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at epoch {epoch + 1}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            step += 1
            seen += len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            loss_sum += loss.item() * len(yb)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            sps=f"{seen / (time.perf_counter() - start):.0f}")
        record = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen}
        if data["val"] is not None:
            record["val_acc"] = evaluate(model, *data["val"], cfg.batch_size)
            if record["val_acc"] > best["val_acc"]:
                best = {"val_acc": record["val_acc"], "epoch": epoch + 1}
                save_checkpoint(out / "best.pt", payload(epoch + 1))
            if cfg.progress:
                print(f"epoch {epoch + 1}: val acc {record['val_acc']:.4f} (best {best['val_acc']:.4f} at epoch {best['epoch']})")
        history.append(record)
    summary = {"history": history, "classes": list(classes), "config": dataclasses.asdict(cfg), "geometry": geometry}
    if data["val"] is not None:
        summary.update(final_val_acc=history[-1]["val_acc"], best_val_acc=best["val_acc"], best_epoch=best["epoch"])
    if data["test"] is not None:
        summary["test_acc"] = evaluate(model, *data["test"], cfg.batch_size)  # the final model: never selected on test
    save_checkpoint(out / "last.pt", payload(cfg.epochs))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
