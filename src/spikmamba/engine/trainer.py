"""The training loop: a small :class:`Trainer` over a :class:`~.state.TrainState`.

One step: a batch from the loader, forward, loss, backward, clip, a finite-check that every
process agrees on, the optimizer step. One epoch: steps until the loader is done, then a log
record, validation every ``eval_every`` epochs, ``best.pt`` and ``last.pt``. The run ends after
``epochs`` epochs, or at ``max_steps`` optimizer steps (``last.pt`` then holds the position, and
a longer run resumed from it continues exactly), with a test evaluation when there is a test set.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import random
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import InputError, SpikmambaError
from . import distributed as D
from .checkpoint import CheckpointError, load_model_state, save_checkpoint, state_digest
from .config import TrainConfig
from .device import autocast
from .device_inputs import model_input
from .ema import EMA
from .evaluate import EvalResult, evaluate
from .hooks import Hook, RunLog
from .inputs import Data, input_spec, representation_to_dict
from .loader import SequentialBatches, ShuffledBatches, default_num_workers, make_loader
from .logs import RunLogger
from .model import build_model
from .state import STATE_FORMAT, TrainState
from .stop import Interrupted, StopFlag  # noqa: F401  (Interrupted: re-exported)
from .task import ClassificationTask, Task


class NonFiniteLoss(SpikmambaError, FloatingPointError):
    """The loss or gradient became NaN/inf more often than ``skip_nonfinite`` allows."""


class TooManySkipped(InputError):
    """More samples were unreadable than ``max_skipped_fraction`` allows."""


def lr_factor(cfg: TrainConfig, steps_per_epoch: int):
    """Multiplier of ``cfg.optim.lr`` at optimizer step ``s``: linear warm-up, then cosine / step / constant."""
    total = steps_per_epoch * cfg.schedule.epochs
    warmup = int(cfg.schedule.warmup_epochs * steps_per_epoch)

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        if cfg.schedule.name == "cosine":
            floor = cfg.schedule.min_lr / cfg.optim.lr if cfg.optim.lr > 0 else 0.0
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(total - warmup, 1)))
        if cfg.schedule.name == "step":
            return cfg.schedule.step_gamma ** (s // (cfg.schedule.step_epochs * steps_per_epoch))
        return 1.0
    return factor


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only: not on biases and norm scales (1-D), nor
    on parameters marked ``_no_weight_decay`` (Mamba's ``A_log`` and ``D``, the adaptive
    sampler's gains), whose values have a physical meaning that decay toward 0 would erase."""
    decay, keep = [], []
    for p in model.parameters():
        if p.requires_grad:
            (keep if p.ndim < 2 or getattr(p, "_no_weight_decay", False) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.optim.weight_decay)
    if cfg.optim.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum)
    if cfg.optim.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.optim.lr)
    return torch.optim.AdamW(groups, lr=cfg.optim.lr)


def rng_state(env: D.DistEnv) -> dict:
    """Every process's global RNG states (dropout, drop-path); the data draw from (seed, epoch, position)."""
    np_state = np.random.get_state()
    own = {"torch": torch.get_rng_state(), "python": random.getstate(),
           "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[float(v) for v in np_state[2:]]],
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    per_rank = [own]
    if env.enabled:
        per_rank = [None] * env.world_size
        torch.distributed.all_gather_object(per_rank, own)
    return {"per_rank": per_rank}


def set_rng_state(state: dict, env: D.DistEnv) -> None:
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


class Trainer:
    """Trains ``cfg.model.name`` on ``data`` (see the module docstring); :meth:`fit` returns the summary."""

    def __init__(self, cfg: TrainConfig, data: Data, env: D.DistEnv, device: torch.device,
                 ckpt: dict | None = None, resume: str | None = None, started: float | None = None,
                 task: Task | None = None, hooks: Sequence[Hook] = ()):
        self.cfg, self.data, self.env, self.device = cfg, data, env, device
        self.hooks = [RunLog(), *hooks]
        self.stop_reason: str | None = None  # set by request_stop
        self.task = task if task is not None else ClassificationTask(cfg.optim.label_smoothing)
        self.started = time.perf_counter() if started is None else started  # for the time to the first step
        self.first_step_s: float | None = None
        self.main = env.is_main
        self.show = cfg.run.progress and self.main
        self.out = Path(cfg.run.out_dir)
        self.classes = list(data.classes)
        self.geometry = data.geometry
        self.model = build_model(cfg, len(self.classes), **self.geometry, pretrained=ckpt is None)
        if ckpt is not None:  # with EMA, "model" holds the average and "train_model" the trained weights
            load_model_state(self.model, ckpt.get("train_model", ckpt["model"]), str(resume))
        if env.enabled:
            D.convert_batchnorm(self.model)
        self.model.to(device)
        self.net = self.model
        if env.enabled:
            # depthwise-conv gradients come out in another memory layout than DDP's buckets: a
            # copy, not an error; keep the console readable
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.eval_net = self.model
        if cfg.device.compile:  # the same weights: checkpoints keep saving self.model's plain state dict
            ddp = self.net is not self.model
            self.net = torch.compile(self.net, mode=cfg.device.compile_mode)
            # one compiled module serves both when there is no DDP wrapper to keep out of evaluation
            self.eval_net = torch.compile(self.model, mode=cfg.device.compile_mode) if ddp else self.net
        self.opt = make_optimizer(cfg, self.model)
        self.ema = EMA(self.model, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
        self.sampler = ShuffledBatches(len(data.train), cfg.data.batch_size, cfg.run.seed, env)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_factor(cfg, self.steps_per_epoch))
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.device.amp == "fp16")
        self.state = TrainState()
        self.last_written = f"{self.out / 'last.pt'} from the earlier run" if ckpt is not None else "none written yet"
        if ckpt is not None:
            self._restore(ckpt, resume)
        workers = cfg.data.num_workers
        workers = workers if workers >= 0 else default_num_workers(data.in_memory, env, device)
        self.num_workers = workers
        self.train_loader = make_loader(data.train, self.sampler, workers, device)
        eval_loader = lambda view, limit: make_loader(  # noqa: E731
            view, SequentialBatches(len(view), cfg.data.batch_size, env, limit, cfg.run.seed), workers, device)
        self.val_loader = eval_loader(data.val, cfg.schedule.limit_val_batches) if data.val is not None else None
        self.test_loader = eval_loader(data.test, 0) if data.test is not None else None
        self.input_shape, self.input_dtype = input_spec(data.representation)
        self.rep_dict = representation_to_dict(data.representation)
        self.skipped_here: list = []  # this process's unreadable samples not yet written to skipped.csv
        self.logger = None
        self.last_val: EvalResult | None = None

    # ---- checkpoints ----
    def _restore(self, ckpt: dict, resume: str) -> None:
        progress = ckpt["progress"]
        if not isinstance(progress, dict) or progress.get("format") != STATE_FORMAT:
            raise CheckpointError(
                f"{resume} holds the training state of an earlier spikmamba (before streaming data: the data order "
                f"and augmentation were drawn differently), so it cannot be continued exactly; test or predict with "
                f"it, or start a new run")
        try:
            self.opt.load_state_dict(ckpt["optimizer"])
        except Exception as err:  # e.g. parameter groups of an older spikmamba, or a damaged state
            raise CheckpointError(
                f"{resume}: field 'optimizer' does not fit this model's optimizer "
                f"({type(err).__name__}: {err}); start a new run initialised from it instead"
            ) from None
        for field, target in (("scheduler", self.sched), ("scaler", self.scaler)):
            try:
                target.load_state_dict(ckpt[field])
            except Exception as err:
                raise CheckpointError(f"{resume}: field {field!r} cannot be restored ({type(err).__name__}: "
                                      f"{err})") from None
        try:
            self.state = TrainState.from_dict(progress)
        except TypeError as err:
            raise CheckpointError(f"{resume}: field 'progress' is malformed ({err})") from None
        s = self.state
        if s.batch > self.steps_per_epoch or s.step != s.epoch * self.steps_per_epoch + s.batch:
            raise CheckpointError(
                f"{resume}: field 'progress' (epoch {s.epoch}, batch {s.batch}, step {s.step}) does not fit this data "
                f"({self.steps_per_epoch} steps per epoch): the checkpoint belongs to another dataset or "
                f"data.batch_size, or is damaged")
        try:
            set_rng_state(ckpt["rng"], self.env)
        except Exception as err:
            raise CheckpointError(f"{resume}: field 'rng' cannot be restored ({type(err).__name__}: {err})") from None
        if self.ema is not None:
            if "train_model" not in ckpt:
                raise CheckpointError(f"{resume} was trained without optim.ema_decay; resume with optim.ema_decay=0")
            self.ema.load_state_dict(ckpt["model"])
        if self.main:
            s = self.state
            where = f"epoch {s.epoch + 1}, step {s.batch + 1}/{self.steps_per_epoch}"
            print(f"resuming from {resume} at {where}" if not self._finished() else
                  f"{resume} has finished its {'steps' if self._max_steps_reached() else 'epochs'}; evaluating it")

    def _evaluation_weights(self):
        """Validation and test use the moving average when there is one."""
        return self.ema.swapped_in(self.model) if self.ema is not None else contextlib.nullcontext()

    def payload(self) -> dict:
        """What best.pt holds: enough to evaluate, predict and fine-tune, not to resume. With
        ``ema_decay`` its weights are the moving average, the ones that were evaluated."""
        weights = self.ema.state_dict() if self.ema is not None else self.model.state_dict()
        return {"model_name": self.cfg.model.name, "model": weights, "config": dataclasses.asdict(self.cfg),
                "classes": self.classes, "geometry": self.geometry, "representation": self.rep_dict,
                "epoch": self.state.epoch}

    def write_last(self) -> None:
        stop = getattr(self, "stop", None)
        if stop is not None:
            stop.saving = True  # a Ctrl-C now waits for the save to finish
        try:
            self._write_last()
        finally:
            if stop is not None:
                stop.saving = False
                if stop.hurry:
                    raise KeyboardInterrupt

    def _write_last(self) -> None:
        rng = rng_state(self.env)  # collective under DDP: every rank calls it
        self.last_written = f"{self.out / 'last.pt'} (epoch {self.state.epoch + 1}, step {self.state.batch})"
        if self.main:
            extra = {"train_model": self.model.state_dict()} if self.ema is not None else {}  # "model" is the average
            save_checkpoint(self.out / "last.pt", {**self.payload(), **extra, "optimizer": self.opt.state_dict(),
                                                   "scheduler": self.sched.state_dict(),
                                                   "scaler": self.scaler.state_dict(),
                                                   "progress": self.state.to_dict(), "rng": rng})
            self._hooks("on_checkpoint", self.out / "last.pt")

    # ---- the loop ----
    def _max_steps_reached(self) -> bool:
        return bool(self.cfg.schedule.max_steps) and self.state.step >= self.cfg.schedule.max_steps

    def _finished(self) -> bool:
        return self.state.epoch >= self.cfg.schedule.epochs or self._max_steps_reached() or \
            self.stop_reason is not None

    def request_stop(self, reason: str) -> None:
        """End the run after the current epoch, as if it were the last (a hook's call, e.g. :class:`EarlyStopping`)."""
        self.stop_reason = reason

    def _hooks(self, point: str, *args) -> None:
        for hook in self.hooks:
            getattr(hook, point)(self, *args)

    def fit(self) -> dict:
        cfg, state = self.cfg, self.state
        if self.main:
            from .config import save_config

            save_config(cfg, self.out / "config.yaml")
            self.logger = RunLogger(self.out, cfg.run.tensorboard, resume_epoch=state.epoch if state.step else 0,
                                    quiet=not cfg.run.progress, history=state.history)
        self.bar = tqdm(total=self.steps_per_epoch, disable=not self.show, dynamic_ncols=True)  # reset every epoch
        if self.show and (cfg.device.compile or self.device.type == "cuda"):
            what = f"torch.compile (mode {cfg.device.compile_mode}) compiles the model" if cfg.device.compile else \
                "the GPU kernels compile (Triton keeps them in its cache for later runs)"
            tqdm.write(f"the first step takes longer: {what}")
        validated_at = -1
        self._hooks("on_fit_start")
        try:
            with StopFlag(self.out if self.main else None) as stop:
                self.stop = stop
                while not self._finished():
                    record = self._train_epoch(stop)
                    if record is None:  # max_steps reached inside the epoch
                        break
                    if self.data.val is not None and (state.epoch % cfg.schedule.eval_every == 0 or self._finished()):
                        self._validate(record)
                        validated_at = state.step
                    state.history = state.history + [record]
                    self._write_skipped()
                    self.write_last()
                    self._hooks("on_epoch_end", record)  # the run's log first (RunLog)
                    self._check_skipped()
        finally:
            self.bar.close()
        if self._max_steps_reached() and state.batch:  # stopped inside an epoch: keep its position
            if self.data.val is not None and validated_at != state.step:
                self._validate({})
            self._write_skipped()
            self.write_last()
        return self._finish()

    def _train_epoch(self, stop: StopFlag) -> dict | None:
        cfg, state = self.cfg, self.state
        epoch = state.epoch
        if state.batch == 0:
            state.running = type(state.running)()
        self.sampler.set_epoch(epoch, state.batch)
        self.net.train()
        # the bar counts this epoch's steps (its label says "epoch k/N"; it once counted the whole run's)
        left = cfg.schedule.max_steps - state.step + state.batch if cfg.schedule.max_steps else self.steps_per_epoch
        self.bar.reset(total=min(self.steps_per_epoch, left))
        self.bar.update(state.batch)
        self.bar.set_description(f"epoch {epoch + 1}/{cfg.schedule.epochs}")
        start, seen_here, resumed_at = time.perf_counter(), 0, state.batch
        for batch in self.train_loader:
            n = self._step(batch, stop)
            seen_here += n
            if stop.raised_everywhere:
                self.write_last()
                raise Interrupted(f"stopped by a signal at epoch {epoch + 1}, step {state.batch}; state saved to "
                                  f"{self.out / 'last.pt'}. Continue with: spikmamba train --resume "
                                  f"{self.out / 'last.pt'}")
            if self._max_steps_reached():
                if state.batch < self.steps_per_epoch:
                    return None
                break
            every = cfg.run.checkpoint_every
            if every and state.step % every == 0 and state.batch < self.steps_per_epoch:
                self.write_last()
        elapsed = max(time.perf_counter() - start, 1e-9)
        run = state.running
        record = {"epoch": epoch + 1, "step": state.step, "lr": self.opt.param_groups[0]["lr"],
                  "train_loss": run.loss, "train_acc": run.acc, "samples_per_s": seen_here / elapsed,
                  "epoch_s": elapsed}
        if resumed_at:
            record["resumed_at_step"] = resumed_at
        state.epoch, state.batch = epoch + 1, 0
        return record

    def _step(self, batch, stop: StopFlag) -> int:
        """One optimizer step on this process's share of a global batch; returns the global sample count."""
        cfg, state, env = self.cfg, self.state, self.env
        self.skipped_here += [(state.epoch + 1, "train", s.source, s.reason) for s in batch.skipped]
        xb = batch.x if batch.x is not None else torch.zeros((0, *self.input_shape), dtype=self.input_dtype)
        yb = batch.y.to(self.device, non_blocking=True)
        counts = torch.tensor([len(yb), len(batch.skipped), float(stop.raised)], dtype=torch.float64)
        D.all_reduce_sum(counts, env)  # samples in the global batch: the loss is a mean over them
        n_global, skipped = int(counts[0]), int(counts[1])
        stop.raised_everywhere = counts[2].item() > 0
        state.samples_read += n_global + skipped
        state.samples_skipped += skipped
        finite, stats = True, None
        self.opt.zero_grad(set_to_none=True)
        grad_norm = None
        if n_global:
            with autocast(self.device, cfg.device.amp):
                logits = self.net(model_input(xb, self.data.representation, self.device))
                # sum over this share / global batch, times world size: DDP's average then equals
                # the mean loss over the global batch
                loss = self.task.loss(logits, yb) * (env.world_size / n_global)
            self.scaler.scale(loss).backward()
            if cfg.optim.clip_grad > 0:
                self.scaler.unscale_(self.opt)
                grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad)
            # one device->host copy a step for the loss, the correct count and the gradient norm
            # (each .item() would stall the device on its own)
            norm = grad_norm.float() if grad_norm is not None else loss.new_zeros(())
            right = self.task.correct(logits, yb).float()
            here = torch.stack([loss.detach().float(), right, norm]).cpu().double()
            stats = torch.stack([here[0] * n_global / env.world_size, here[1], here.new_tensor(len(yb))])
            D.all_reduce_sum(stats, env)  # before the step: a non-finite loss on any rank stops all of them
            # fp16's grad scaler skips overflowing steps itself; otherwise an inf/NaN gradient is bad too
            finite = math.isfinite(stats[0].item()) and (
                grad_norm is None or cfg.device.amp == "fp16" or math.isfinite(here[2].item()))
        if n_global and finite:
            self.scaler.step(self.opt)
            if self.ema is not None:
                self.ema.update(self.model)
            state.running.add(stats[0].item(), stats[1].item(), stats[2].item())
        elif n_global:
            state.nonfinite_steps += 1
            where = f"epoch {state.epoch + 1}, step {state.batch + 1} (global step {state.step + 1})"
            if state.nonfinite_steps > cfg.optim.skip_nonfinite:
                raise NonFiniteLoss(
                    f"non-finite loss or gradient at {where}; weights were not updated with it. "
                    f"Last good checkpoint: {self.last_written}. Lower optim.lr, set optim.clip_grad, check the input "
                    f"data, or allow skipping such steps with optim.skip_nonfinite=<count>")
            self.opt.zero_grad(set_to_none=True)
            if self.scaler.is_enabled() and grad_norm is None:
                self.scaler.unscale_(self.opt)  # the scaler's update() needs this step's inf check
            if self.show:
                tqdm.write(
                    f"skipped a non-finite step at {where} ({state.nonfinite_steps}/{cfg.optim.skip_nonfinite} allowed)"
                )
        if n_global and self.scaler.is_enabled():
            self.scaler.update()
        self.sched.step()
        state.batch += 1
        state.step += 1
        if self.first_step_s is None:
            self.first_step_s = time.perf_counter() - self.started
        self.bar.update(1)
        run = state.running
        self.bar.set_postfix(loss=f"{run.loss:.3f}", acc=f"{run.acc:.3f}", refresh=False)
        self._hooks("on_step_end")
        return n_global

    def _validate(self, record: dict) -> None:
        with self._evaluation_weights():
            r = evaluate(self.eval_net, self.val_loader, len(self.classes), self.env, self.device, self.cfg.device.amp,
                         representation=self.data.representation)
        self.skipped_here += [(self.state.epoch, "val", s.source, s.reason) for s in r.skipped] if self.main else []
        record.update(val_acc=r.top1, val_top5=r.topk_acc, val_samples=r.metrics.count)
        if r.top1 > self.state.best_val_acc:
            self.state.best_val_acc, self.state.best_epoch = r.top1, self.state.epoch
            if self.main:
                save_checkpoint(self.out / "best.pt", self.payload())
                self._hooks("on_checkpoint", self.out / "best.pt")
        self.last_val = r

    def epoch_line(self, record: dict) -> str:
        s = self.state
        val = (f", val acc {record['val_acc']:.4f} (best {s.best_val_acc:.4f} at epoch {s.best_epoch})"
               if "val_acc" in record else "")
        rate = f"{record['samples_per_s']:.0f} samples/s"
        if "resumed_at_step" in record:
            rate += f" (over steps {record['resumed_at_step'] + 1}-{self.steps_per_epoch}, run after the resume)"
        return (f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, train acc {record['train_acc']:.4f}, "
                f"{rate}{val}")

    # ---- unreadable samples ----
    def _write_skipped(self) -> None:
        rows = self.skipped_here
        if self.env.enabled:
            gathered = [None] * self.env.world_size
            torch.distributed.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
        self.skipped_here = []
        if self.main and rows:
            path = self.out / "skipped.csv"
            new = not path.exists()
            with open(path, "a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(["epoch", "split", "sample", "reason"])
                w.writerows(rows)

    def _check_skipped(self) -> None:
        s, cfg = self.state, self.cfg
        if s.samples_skipped and s.samples_skipped > cfg.data.max_skipped_fraction * max(s.samples_read, 1):
            raise TooManySkipped(
                f"{s.samples_skipped} of {s.samples_read} training samples read so far could not be read "
                f"({s.samples_skipped / max(s.samples_read, 1):.1%}, above data.max_skipped_fraction="
                f"{cfg.data.max_skipped_fraction}); they are listed in {self.out / 'skipped.csv'}. Fix or remove "
                f"them, or "
                f"raise data.max_skipped_fraction; {self.out / 'last.pt'} holds the run so far")

    # ---- the end ----
    def _finish(self) -> dict:
        cfg, state, env = self.cfg, self.state, self.env
        digests = [state_digest(self.model.state_dict())]
        if env.enabled:  # every process's weights, so drift between processes would show
            digests = [None] * env.world_size
            torch.distributed.all_gather_object(digests, state_digest(self.model.state_dict()))
        summary = {"out_dir": str(self.out), "history": state.history, "classes": self.classes,
                   "config": dataclasses.asdict(cfg), "geometry": self.geometry, "world_size": env.world_size,
                   "steps": state.step, "weights_sha256_per_rank": digests, "num_workers": self.num_workers,
                   "first_step_s": self.first_step_s, "train_s": time.perf_counter() - self.started}
        if self._max_steps_reached() and state.epoch < cfg.schedule.epochs:
            summary["stopped_at_max_steps"] = cfg.schedule.max_steps
        if self.stop_reason is not None:
            summary["stopped_early"] = self.stop_reason
        if state.samples_skipped:
            summary["skipped_samples"] = state.samples_skipped
        if self.data.val is not None:
            summary.update(final_val_acc=self.last_val.top1 if self.last_val is not None else None,
                           best_val_acc=state.best_val_acc, best_epoch=state.best_epoch)
        if self.test_loader is not None:  # the final model: a test set never selects anything
            with self._evaluation_weights():
                r: EvalResult = evaluate(self.eval_net, self.test_loader, len(self.classes), env, self.device,
                                         cfg.device.amp, groups=self.data.test.groups, progress=self.show,
                                         representation=self.data.representation)
            if r.per_group is not None:  # clip-level (as published code measures) and video-level
                summary.update(test_video_acc=r.per_group.top1, test_video_top5=r.per_group.topk_acc)
            summary.update(test_acc=r.top1, test_top5=r.topk_acc)
            if r.skipped:
                summary["test_skipped"] = len(r.skipped)
                self.skipped_here += [(state.epoch, "test", s.source, s.reason) for s in r.skipped] if self.main else []
        self._write_skipped()
        def run_files():  # the run's own files: not the lock (.lock) or other hidden files
            return sorted(p.name for p in self.out.iterdir() if not p.name.startswith("."))

        summary["files"] = run_files() if self.main else []
        self._hooks("on_fit_end", summary)
        if self.main:
            import json

            self.logger.close()
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
            summary["files"] = run_files()
        return summary
