"""The training loop behind ``spikmamba train``: reproducible, resumable, data-parallel.

* **Reproducible**: one seed drives data generation, initialisation, shuffling (its own
  generator) and augmentation (another). ``reset_net`` happens inside the model's ``forward``.
* **Resumable**: ``last.pt`` holds model, optimizer, scheduler, grad-scaler and every RNG state,
  plus where in the epoch training stopped. It is written at the end of every epoch, every
  ``checkpoint_every`` steps, and when the process receives SIGTERM/SIGINT (it finishes the
  current step, saves, and exits). ``train(cfg, resume=path)`` continues from it and reaches the
  same weights as a run that was never interrupted.
* **Data-parallel** under ``torchrun`` (see :mod:`.distributed`): the same steps as one process
  with the same global ``batch_size``; metrics are summed across processes; only rank 0 writes.
* Outputs in ``out_dir``: ``config.yaml`` (resolved), ``last.pt``, ``best.pt`` (best validation
  accuracy, when ``val_fraction > 0``), ``log.csv``, ``tensorboard/``, ``summary.json``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed as D
from .augment import augment_batch
from .checkpoint import (CheckpointError, load_checkpoint, load_model_state, save_checkpoint, state_digest,
                         stored_config)
from .config import TrainConfig, save_config, validate_config
from .data import load_data, representation_to_dict
from .ema import EMA
from .logs import RunLogger
from .metrics import ClassificationMetrics, per_group_metrics
from .model import build_model
from .run_dir import RunDirBusy, claim_run_dir, holds_run


def lr_factor(cfg: TrainConfig, steps_per_epoch: int):
    """Multiplier of ``cfg.lr`` at optimizer step ``s``: linear warm-up, then cosine / step / constant."""
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        if cfg.schedule == "cosine":
            floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(total - warmup, 1)))
        if cfg.schedule == "step":
            return cfg.step_gamma ** (s // (cfg.step_epochs * steps_per_epoch))
        return 1.0
    return factor


def resolve_device(name: str, env: "D.DistEnv | None" = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but CUDA is not available here; use device=cpu")
        if name == "cuda" and env is not None and env.enabled:
            name = f"cuda:{env.local_rank}"
    return torch.device(name)


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp=fp16 needs a CUDA device; on the CPU use amp=bf16")
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def param_groups(model: nn.Module, weight_decay: float) -> "list[dict]":
    """Weight decay on weight matrices and kernels only: not on biases and norm scales (1-D), nor
    on parameters marked ``_no_weight_decay`` (Mamba's ``A_log`` and ``D``, the adaptive
    sampler's gains), whose values have a physical meaning that decay toward 0 would erase."""
    decay, keep = [], []
    for p in model.parameters():
        if p.requires_grad:
            (keep if p.ndim < 2 or getattr(p, "_no_weight_decay", False) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, num_classes: "int | None" = None,
             env: "D.DistEnv | None" = None, device: "torch.device | str" = "cpu", amp: str = "none",
             progress: bool = False, groups: "torch.Tensor | None" = None):
    """Confusion-matrix metrics of ``model`` on ``(x, y)``; under DDP each process takes a shard and
    the counts are summed, so every process returns the metrics of the whole set. With ``groups``
    (the video of each clip) returns ``(per-clip metrics, per-video metrics)``: a video's
    prediction is the mean of its clips' logits."""
    env = env or D.DistEnv()
    device = torch.device(device)
    model.eval()
    num_classes = num_classes or int(y.max()) + 1
    metrics = ClassificationMetrics(num_classes)
    all_logits = torch.zeros(len(y), num_classes, dtype=torch.float64) if groups is not None else None
    part = D.shard(torch.arange(len(y)), env)
    for i in tqdm(range(0, len(part), batch_size), desc="evaluating", disable=not progress, leave=False):
        idx = part[i:i + batch_size]
        with autocast(device, amp):
            logits = model(x[idx].to(device))
        metrics.update(logits, y[idx])
        if all_logits is not None:
            all_logits[idx] = logits.detach().double().cpu()
    if env.enabled:
        D.all_reduce_sum(metrics.confusion, env)
        D.all_reduce_sum(metrics.topk_correct, env)
        if all_logits is not None:
            D.all_reduce_sum(all_logits, env)
    if groups is None:
        return metrics
    return metrics, per_group_metrics(all_logits, y, groups, num_classes)


class _StopFlag:
    """Turns SIGTERM / SIGINT into a flag checked between steps (a checkpoint, then a clean exit)."""

    def __init__(self):
        self.raised = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def _handle(self, signum, frame):
        if self.raised:  # a second signal: stop now
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class NonFiniteLoss(FloatingPointError):
    """The loss or gradient became NaN/inf more often than ``skip_nonfinite`` allows."""


class Interrupted(Exception):
    """Training stopped on a signal after writing ``last.pt``; resume with ``--resume``."""


def _rng_state(gen: torch.Generator, gen_epoch_start: torch.Tensor, aug_gen: torch.Generator, env: D.DistEnv) -> dict:
    np_state = np.random.get_state()
    own = {"torch": torch.get_rng_state(), "python": random.getstate(),
           "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[float(v) for v in np_state[2:]]],
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    per_rank = [own]
    if env.enabled:
        per_rank = [None] * env.world_size
        torch.distributed.all_gather_object(per_rank, own)
    return {"per_rank": per_rank, "data": gen.get_state(), "data_epoch_start": gen_epoch_start,
            "augment": aug_gen.get_state()}


def _set_rng_state(state: dict, gen: torch.Generator, aug_gen: torch.Generator, env: D.DistEnv) -> None:
    per_rank = state["per_rank"]
    if len(per_rank) != env.world_size:
        print(f"note: the checkpoint was written by {len(per_rank)} process(es), this run has {env.world_size}; "
              "RNG streams restart from rank 0's state", file=sys.stderr)
    own = per_rank[env.rank] if env.rank < len(per_rank) else per_rank[0]
    torch.set_rng_state(own["torch"])
    random.setstate(tuple(tuple(v) if isinstance(v, list) else v for v in own["python"]))
    kind, key, pos, has_gauss, cached = own["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if own["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(own["cuda"])
    gen.set_state(state["data"])
    aug_gen.set_state(state["augment"])


def train(cfg: TrainConfig, resume: "str | None" = None) -> dict:
    """Train ``cfg.model`` on ``cfg``'s data; returns a summary dict (also written to summary.json).

    With ``resume``, continue from that ``last.pt`` (its weights, optimizer, schedule, RNG and
    position); ``cfg`` should be the checkpoint's config, possibly with changed ``epochs``."""
    validate_config(cfg)
    ckpt = load_checkpoint(resume) if resume else None
    if ckpt is not None and "progress" not in ckpt:
        raise CheckpointError(f"{resume} has no training state (optimizer, RNG, position); resume from a last.pt")
    device = resolve_device(cfg.device)
    env = D.init(device.type)
    if device.type == "cuda" and env.enabled:
        device = resolve_device(cfg.device, env)
        torch.cuda.set_device(device)
    try:
        lock, failure = None, None
        try:
            lock = _claim_run_folder(cfg, resume, ckpt, env)
        except RunDirBusy as err:
            failure = err
        try:
            cfg = dataclasses.replace(cfg, out_dir=str(_shared_folder(lock, failure, env)))
            summary = _train(cfg, ckpt, resume, device, env)
            # rank 0 is still writing summary.json when the others finish: tearing the gloo group
            # down under it aborted a process now and then ("terminate called without an active
            # exception", SIGABRT); wait for every rank first
            D.barrier(env)
        finally:
            if lock is not None:
                lock.release()
        return summary
    finally:
        D.shutdown(env)


def _claim_run_folder(cfg: TrainConfig, resume: "str | None", ckpt: "dict | None", env: D.DistEnv):
    """Rank 0 locks the folder this run writes (see :mod:`.run_dir`): a resumed run its own folder,
    a new run one that holds no other run's files (or ``out_dir`` itself with ``overwrite``)."""
    if not env.is_main:
        return None
    out = Path(cfg.out_dir)
    if resume is not None and cfg.out_dir == str(ckpt["config"].get("out_dir", cfg.out_dir)):
        lock = claim_run_dir(Path(resume).parent, "resume")  # its own folder, wherever the command starts
    else:
        lock = claim_run_dir(out, "overwrite" if cfg.overwrite else "new")
    if lock.note:
        print(f"note: {lock.note}", file=sys.stderr)
    if lock.removed:
        print(f"overwrite=true: removed {', '.join(lock.removed)} of the previous run in {out}", file=sys.stderr)
    elif resume is None and lock.folder != out:
        print(f"{out} holds another run ({', '.join(holds_run(out))}); this run writes to {lock.folder} "
              f"(set out_dir=<folder>, or overwrite=true to replace that run)", file=sys.stderr)
    return lock


def _shared_folder(lock, failure: "Exception | None", env: D.DistEnv) -> Path:
    """Rank 0's folder, known to every process; rank 0's failure to claim one stops them all."""
    choice = [str(lock.folder) if lock is not None else None, str(failure) if failure else None]
    if env.enabled:
        torch.distributed.broadcast_object_list(choice, src=0)
    if choice[1] is not None:
        raise RunDirBusy(choice[1])
    return Path(choice[0])


def _train(cfg, ckpt, resume, device, env) -> dict:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    out = Path(cfg.out_dir)
    main = env.is_main
    show = cfg.progress and main
    data = load_data(cfg if show else dataclasses.replace(cfg, progress=False))
    x_tr, y_tr = data["train"]
    classes, geometry = data["classes"], data["geometry"]
    model = build_model(cfg, len(classes), **geometry, pretrained=ckpt is None)
    if ckpt is not None:  # with EMA, "model" holds the average and "train_model" the trained weights
        load_model_state(model, ckpt.get("train_model", ckpt["model"]), str(resume))
    if env.enabled:
        D.convert_batchnorm(model)
    model.to(device)
    net = model
    if env.enabled:
        # depthwise-conv gradients come out in another memory layout than DDP's buckets: a
        # copy, not an error; keep the console readable
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(cfg, model)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    n_train = len(y_tr)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg, steps_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, reduction="sum")
    gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
    progress = {"epoch": 0, "batch": 0, "step": 0, "running": [0.0, 0.0, 0.0], "best_val_acc": -1.0, "best_epoch": 0,
                "history": []}
    gen_epoch_start = gen.get_state()
    if ckpt is not None:
        try:
            opt.load_state_dict(ckpt["optimizer"])
        except ValueError as err:  # e.g. parameter groups of an older spikmamba (before decay groups)
            raise CheckpointError(f"{resume}: its optimizer state does not fit this version's optimizer ({err}); "
                                  f"start a new run initialised from it instead") from None
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        progress.update(ckpt["progress"])
        _set_rng_state(ckpt["rng"], gen, aug_gen, env)
        if ema is not None:
            if "train_model" not in ckpt:
                raise CheckpointError(f"{resume} was trained without ema_decay; resume with ema_decay=0")
            ema.load_state_dict(ckpt["model"])
        gen_epoch_start = ckpt["rng"]["data_epoch_start"]
        if main:
            where = f"epoch {progress['epoch'] + 1}, step {progress['batch'] + 1}/{steps_per_epoch}"
            print(f"resuming from {resume} at {where}" if progress["epoch"] < cfg.epochs
                  else f"{resume} has finished all {cfg.epochs} epochs; evaluating it")

    rep_dict = representation_to_dict(data["representation"])

    def evaluation_weights():
        """Validation and test use the moving average when there is one."""
        return ema.swapped_in(model) if ema is not None else contextlib.nullcontext()

    def payload() -> dict:
        """What best.pt holds: enough to evaluate, predict and fine-tune, not to resume. With
        ``ema_decay`` its weights are the moving average, the ones that were evaluated."""
        weights = ema.state_dict() if ema is not None else model.state_dict()
        return {"model_name": cfg.model, "model": weights, "config": dataclasses.asdict(cfg), "classes": list(classes),
                "geometry": geometry, "representation": rep_dict, "epoch": progress["epoch"]}

    last_written = [f"{out / 'last.pt'} from the earlier run" if ckpt is not None else "none written yet"]

    def write_last():
        rng = _rng_state(gen, gen_epoch_start, aug_gen, env)  # collective under DDP: every rank calls it
        last_written[0] = f"{out / 'last.pt'} (epoch {progress['epoch'] + 1}, step {progress['batch']})"
        if main:
            extra = {"train_model": model.state_dict()} if ema is not None else {}  # "model" is the average
            save_checkpoint(out / "last.pt", {**payload(), **extra, "optimizer": opt.state_dict(),
                                              "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                                              "progress": dict(progress), "rng": rng})

    logger = None
    if main:
        save_config(cfg, out / "config.yaml")
        logger = RunLogger(out, cfg.tensorboard, resume_epoch=progress["epoch"] if ckpt is not None else 0,
                           quiet=not cfg.progress)
    total_steps = steps_per_epoch * cfg.epochs

    def close_outputs():
        """Before leaving the loop on an error or a signal: end the progress bar, flush the logs."""
        bar.close()
        if logger:
            logger.close()

    bar = tqdm(total=total_steps, initial=min(progress["step"], total_steps), disable=not show, dynamic_ncols=True)
    with _StopFlag() as stop:
        while progress["epoch"] < cfg.epochs:
            epoch = progress["epoch"]
            if progress["batch"] == 0:
                gen_epoch_start = gen.get_state()
                progress["running"] = [0.0, 0.0, 0.0]
            gen.set_state(gen_epoch_start)
            order = torch.randperm(n_train, generator=gen)
            net.train()
            bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
            start, seen_here = time.perf_counter(), 0
            for b in range(progress["batch"], steps_per_epoch):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                # augment the whole global batch (the same random draws for any number of processes),
                # then keep this process's contiguous shard
                part = D.shard(torch.arange(len(idx)), env)
                xb = augment_batch(x_tr[idx], cfg.augment_shift, cfg.image_augment, aug_gen)[part].to(device)
                yb = y_tr[idx][part].to(device)
                with autocast(device, cfg.amp):
                    logits = net(xb)
                    # sum over this shard / global batch, times world size: DDP's average then
                    # equals the mean loss over the global batch
                    loss = loss_fn(logits.float(), yb) * (env.world_size / len(idx))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                grad_norm = None
                if cfg.clip_grad > 0:
                    scaler.unscale_(opt)
                    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                stats = torch.tensor([loss.item() * len(idx) / env.world_size,
                                      float((logits.argmax(1) == yb).sum()), float(len(yb)), float(stop.raised)],
                                     dtype=torch.float64)
                D.all_reduce_sum(stats, env)  # before the step: a non-finite loss on any rank stops all of them
                # fp16's grad scaler skips overflowing steps itself; otherwise an inf/NaN gradient is bad too
                finite = math.isfinite(stats[0].item()) and (
                    grad_norm is None or cfg.amp == "fp16" or math.isfinite(grad_norm.item()))
                if finite:
                    scaler.step(opt)
                    if ema is not None:
                        ema.update(model)
                else:
                    progress["nonfinite_steps"] = progress.get("nonfinite_steps", 0) + 1
                    where = f"epoch {epoch + 1}, step {b + 1} (global step {progress['step'] + 1})"
                    if progress["nonfinite_steps"] > cfg.skip_nonfinite:
                        close_outputs()
                        raise NonFiniteLoss(
                            f"non-finite loss or gradient at {where}; weights were not updated with it. "
                            f"Last good checkpoint: {last_written[0]}. Lower lr, set clip_grad, check the input "
                            f"data, or allow skipping such steps with skip_nonfinite=<count>")
                    opt.zero_grad(set_to_none=True)
                    if scaler.is_enabled() and grad_norm is None:
                        scaler.unscale_(opt)  # the scaler's update() needs this step's inf check
                    if show:
                        tqdm.write(f"skipped a non-finite step at {where} "
                                   f"({progress['nonfinite_steps']}/{cfg.skip_nonfinite} allowed)")
                scaler.update()
                sched.step()
                run = progress["running"]
                if finite:
                    run[0] += stats[0].item()
                    run[1] += stats[1].item()
                    run[2] += stats[2].item()
                progress["batch"] = b + 1
                progress["step"] += 1
                seen_here += len(idx)
                bar.update(1)
                bar.set_postfix(loss=f"{run[0] / max(run[2], 1):.3f}", acc=f"{run[1] / max(run[2], 1):.3f}",
                                sps=f"{seen_here / (time.perf_counter() - start):.0f}", refresh=False)
                if stats[3].item() > 0:
                    write_last()
                    close_outputs()
                    raise Interrupted(f"stopped by a signal at epoch {epoch + 1}, step {b + 1}; state saved to "
                                      f"{out / 'last.pt'}. Continue with: spikmamba train --resume {out / 'last.pt'}")
                if cfg.checkpoint_every and progress["step"] % cfg.checkpoint_every == 0 and b + 1 < steps_per_epoch:
                    write_last()
            run = progress["running"]
            record = {"epoch": epoch + 1, "step": progress["step"], "lr": opt.param_groups[0]["lr"],
                      "train_loss": run[0] / max(run[2], 1), "train_acc": run[1] / max(run[2], 1),
                      "samples_per_s": seen_here / max(time.perf_counter() - start, 1e-9),
                      "epoch_s": time.perf_counter() - start}
            progress["epoch"], progress["batch"] = epoch + 1, 0
            if data["val"] is not None:
                with evaluation_weights():
                    m = evaluate(model, *data["val"], cfg.batch_size, len(classes), env, device, cfg.amp)
                record.update(val_acc=m.top1, val_top5=m.topk_acc)
                if m.top1 > progress["best_val_acc"]:
                    progress["best_val_acc"], progress["best_epoch"] = m.top1, epoch + 1
                    if main:
                        save_checkpoint(out / "best.pt", payload())
            progress["history"] = progress["history"] + [record]
            write_last()
            if main:
                logger.log(record)
                if show:
                    val = (f", val acc {record['val_acc']:.4f} (best {progress['best_val_acc']:.4f} at epoch "
                           f"{progress['best_epoch']})") if "val_acc" in record else ""
                    tqdm.write(f"epoch {epoch + 1}: loss {record['train_loss']:.4f}, train acc {record['train_acc']:.4f}"
                               f", {record['samples_per_s']:.0f} samples/s{val}")
    bar.close()
    digests = [state_digest(model.state_dict())]
    if env.enabled:  # every process's weights, so drift between processes would show
        digests = [None] * env.world_size
        torch.distributed.all_gather_object(digests, state_digest(model.state_dict()))
    summary = {"out_dir": str(out), "history": progress["history"], "classes": list(classes), "config": dataclasses.asdict(cfg),
               "geometry": geometry, "world_size": env.world_size, "weights_sha256_per_rank": digests}
    if data["val"] is not None:
        summary.update(final_val_acc=progress["history"][-1]["val_acc"] if progress["history"] else None,
                       best_val_acc=progress["best_val_acc"], best_epoch=progress["best_epoch"])
    if data["test"] is not None:  # the final model: a test set never selects anything
        with evaluation_weights():
            m = evaluate(model, *data["test"], cfg.batch_size, len(classes), env, device, cfg.amp, progress=show,
                         groups=data["test_groups"])
        if data["test_groups"] is not None:  # clip-level (as published code measures) and video-level
            m, per_video = m
            summary.update(test_video_acc=per_video.top1, test_video_top5=per_video.topk_acc)
        summary.update(test_acc=m.top1, test_top5=m.topk_acc)
    if main:
        logger.close()
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def resume_config(path: str, overrides: "list[str]") -> TrainConfig:
    """The config stored in ``path`` with command-line overrides applied on top."""
    from .config import apply_overrides

    return apply_overrides(stored_config(load_checkpoint(path), path), overrides)
