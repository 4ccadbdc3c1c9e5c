"""``train()``: the entry behind ``spikmamba train`` (reproducible, resumable, data-parallel).

* **Reproducible**: the seed drives initialisation, and the data order and every random draw of
  a sample come from (seed, epoch, position) (:mod:`.loader`), whatever ``num_workers`` is.
  ``reset_net`` happens inside the model's ``forward``.
* **Resumable**: ``last.pt`` holds model, optimizer, scheduler, grad-scaler and RNG states, plus
  the :class:`~.state.TrainState` (where in the epoch training stopped). It is written at the end
  of every epoch, every ``checkpoint_every`` steps, at ``max_steps`` and when the process
  receives SIGTERM/SIGINT (it finishes the current step, saves, and exits).
  ``train(cfg, resume=path)`` continues from it and reaches the same weights as a run that was
  never interrupted.
* **Data-parallel** under ``torchrun`` (see :mod:`.distributed`): each process reads its share of
  every global batch; the same steps as one process with the same global ``batch_size``;
  metrics are summed across processes; only rank 0 writes.
* **Its own folder** (:mod:`.run_dir`): never another run's, never shared by two processes.
* Outputs in ``out_dir``: ``config.yaml`` (resolved), ``last.pt``, ``best.pt`` (best validation
  accuracy, when ``val_fraction > 0``), ``log.csv``, ``training_curves.png``, ``tensorboard/``,
  ``summary.json``, and ``skipped.csv`` when samples were left out (``skip_unreadable``).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import distributed as D
from .checkpoint import load_checkpoint, stored_config
from .config import TrainConfig, validate_config
from .device import autocast, resolve_device  # noqa: F401  (re-exported: the engine's public names)
from .evaluate import evaluate  # noqa: F401
from .hooks import Hook
from .inputs import load_data
from .run_dir import RunDirBusy, claim_run_dir, holds_run
from .task import ClassificationTask, Task  # noqa: F401  (ClassificationTask: re-exported)
from .trainer import Interrupted, NonFiniteLoss, TooManySkipped, Trainer, lr_factor, make_optimizer, param_groups  # noqa: F401


def train(cfg: TrainConfig, resume: str | None = None, task: Task | None = None, hooks: Sequence[Hook] = ()) -> dict:
    """Train ``cfg.model.name`` on ``cfg``'s data; returns a summary dict (also written to summary.json).

    With ``resume``, continue from that ``last.pt`` (its weights, optimizer, schedule, RNG and
    position); ``cfg`` should be the checkpoint's config, possibly with changed ``epochs``.
    ``task``: what a step computes (:mod:`.task`; default: classification with ``cfg``'s label
    smoothing). ``hooks``: code run at points of the loop (:mod:`.hooks`, e.g. ``EarlyStopping``)."""
    validate_config(cfg)
    ckpt = load_checkpoint(resume, resume=True) if resume else None
    device = resolve_device(cfg.device.name)
    env = D.init(device.type)
    if device.type == "cuda" and env.enabled:
        device = resolve_device(cfg.device.name, env)
        torch.cuda.set_device(device)
    try:
        lock, failure = None, None
        try:
            lock = _claim_run_folder(cfg, resume, ckpt, env)
        except RunDirBusy as err:
            failure = err
        finished = False
        try:
            cfg = cfg.replace({"run.out_dir": str(_shared_folder(lock, failure, env))})
            summary = _train(cfg, ckpt, resume, device, env, task, hooks)
            # rank 0 is still writing summary.json when the others finish: tearing the gloo group
            # down under it aborted a process now and then ("terminate called without an active
            # exception", SIGABRT); wait for every rank first
            D.barrier(env)
            finished = True
        finally:
            if lock is not None:
                lock.release(remove_if_unused=not finished)
        return summary
    finally:
        D.shutdown(env)


def _claim_run_folder(cfg: TrainConfig, resume: str | None, ckpt: dict | None, env: D.DistEnv):
    """Rank 0 locks the folder this run writes (see :mod:`.run_dir`): a resumed run its own folder,
    a new run one that holds no other run's files (or ``out_dir`` itself with ``overwrite``)."""
    if not env.is_main:
        return None
    out = Path(cfg.run.out_dir)
    if resume is not None and cfg.run.out_dir == stored_config(ckpt, resume).run.out_dir:
        lock = claim_run_dir(Path(resume).parent, "resume")  # its own folder, wherever the command starts
    else:
        lock = claim_run_dir(out, "overwrite" if cfg.run.overwrite else "new")
    if lock.note:
        print(f"note: {lock.note}", file=sys.stderr)
    if lock.removed:
        print(f"run.overwrite=true: removed {', '.join(lock.removed)} of the previous run in {out}", file=sys.stderr)
    elif resume is None and lock.folder != out:
        print(f"{out} holds another run ({', '.join(holds_run(out))}); this run writes to {lock.folder} "
              f"(set run.out_dir=<folder>, or run.overwrite=true to replace that run)", file=sys.stderr)
    return lock


def _shared_folder(lock, failure: Exception | None, env: D.DistEnv) -> Path:
    """Rank 0's folder, known to every process; rank 0's failure to claim one stops them all."""
    choice = [str(lock.folder) if lock is not None else None, str(failure) if failure else None]
    if env.enabled:
        torch.distributed.broadcast_object_list(choice, src=0)
    if choice[1] is not None:
        raise RunDirBusy(choice[1])
    return Path(choice[0])


def _train(cfg, ckpt, resume, device, env, task, hooks) -> dict:
    import random
    import time

    started = time.perf_counter()
    torch.manual_seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    random.seed(cfg.run.seed)
    data = load_data(cfg, progress=cfg.run.progress and env.is_main, env=env, device=device)
    return Trainer(cfg, data, env, device, ckpt, resume, started, task, hooks).fit()


def resume_config(path: str, overrides: list[str]) -> TrainConfig:
    """The config stored in ``path`` with command-line overrides applied on top."""
    from .config import apply_overrides

    return apply_overrides(stored_config(load_checkpoint(path), path), overrides)
