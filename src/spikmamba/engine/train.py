"""A compact, honest training loop for the built-in dataset: train, evaluate, save.

``TrainConfig`` is a plain dataclass; the command line overrides fields with ``key=value``.
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


def apply_overrides(cfg: TrainConfig, items: "list[str]") -> TrainConfig:
    """Apply ``key=value`` strings; unknown keys and bad values raise ValueError naming the key."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    updates = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. epochs=5)")
        key, raw = item.split("=", 1)
        if key not in fields or key == "model_overrides":
            raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(k for k in fields if k != 'model_overrides')}")
        current = getattr(cfg, key)
        try:
            if isinstance(current, bool):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = raw.lower() in ("true", "1", "yes")
            else:
                value = type(current)(raw)
        except ValueError:
            raise ValueError(f"config key {key!r} expects {type(current).__name__}, got {raw!r}") from None
        updates[key] = value
    return dataclasses.replace(cfg, **updates)


def _frames_dataset(split: str, n: int, cfg: TrainConfig):
    size = (cfg.sensor_size, cfg.sensor_size)
    ds = SynthActions(split, num_samples=n, sensor_size=size, seed=cfg.seed, cache=False,
                      transform=ToFrame(size, cfg.frames))
    x = np.stack([ds[i][0] for i in tqdm(range(n), desc=f"simulating {split} events", disable=not cfg.progress,
                                          leave=False)])
    # log-scaled counts: robust to the event rate of a clip
    return torch.from_numpy(np.log1p(x)), torch.tensor(ds.targets), ds.classes


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model a config describes; training and checkpoint loading both build it here."""
    return create_model(cfg.model, num_classes=num_classes, in_chans=2, img_size=cfg.sensor_size,
                        num_frames=cfg.frames, patch_size=cfg.patch_size, **cfg.model_overrides)


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
    x_tr, y_tr, classes = _frames_dataset("train", cfg.num_train, cfg)
    x_te, y_te, _ = _frames_dataset("test", cfg.num_test, cfg)
    model = build_model(cfg, len(classes))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    steps_per_epoch = math.ceil(cfg.num_train / cfg.batch_size)
    total, warmup = steps_per_epoch * cfg.epochs, int(cfg.warmup_epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, history = 0, []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(cfg.num_train, generator=gen)
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
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen})
    test_acc = evaluate(model, x_te, y_te, cfg.batch_size)
    out = Path(cfg.out_dir)
    summary = {"test_acc": test_acc, "history": history, "classes": list(classes), "config": dataclasses.asdict(cfg)}
    save_checkpoint(out / "last.pt", {"model": model.state_dict(), "config": dataclasses.asdict(cfg),
                                      "classes": list(classes), "epoch": cfg.epochs})
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
