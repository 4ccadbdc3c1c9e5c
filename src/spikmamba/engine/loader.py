"""From datasets to batches: one DataLoader path for training, validation, test and energy.

Why this shape:

* **Streaming.** A dataset is a list of samples; each sample is read, transformed and
  represented when its batch is asked for, in ``num_workers`` worker processes. Memory does
  not grow with the number of recordings, and the first step comes after one batch, not
  after a pass over the data.
* **Reproducible whatever ``num_workers`` is.** The batch samplers hand out keys
  ``(epoch, position)``; every random draw of a sample (event transforms, translation, image
  augmentation) comes from generators seeded by ``(seed, epoch, position)``
  (:func:`sample_generators`), and the order of an epoch from ``(seed, epoch)``. So a run is
  the same with 0, 1 or 8 workers, and a resume from any step continues exactly: nothing but
  the position has to be saved.
* **Data-parallel.** Each process reads only its contiguous share of every global batch of
  ``batch_size`` (:class:`ShuffledBatches`), as :mod:`.distributed` expects. A share may be
  empty (the last global batch of an epoch can be smaller than the number of processes).
* **Unreadable samples.** A sample that fails raises :class:`~spikmamba.data.SampleError` (named
  by index and file, also from worker processes); with ``skip_unreadable`` it becomes a
  :class:`Skipped` record instead, dropped from its batch and reported by the trainer.
"""
from __future__ import annotations

import math
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data import SampleError
from . import distributed as D
from .device_inputs import collate as collate_deferred
from .device_inputs import is_deferred


@dataclass(frozen=True)
class Skipped:
    """A sample left out because it could not be read (``skip_unreadable``)."""
    position: int
    source: str
    reason: str
    empty: bool = False  # an event file without events: no error, nothing to classify


class Batch(NamedTuple):
    """``x`` (None when every sample of this process's share was skipped or the share is empty),
    labels, the samples' positions in their view, and the :class:`Skipped` records."""
    x: torch.Tensor | None
    y: torch.Tensor
    position: torch.Tensor
    skipped: list


def sample_generators(seed: int, epoch: int, position: int) -> tuple[np.random.Generator, torch.Generator]:
    """Independent generators for one sample's event transforms (NumPy) and tensor augmentation (torch)."""
    events, tensor = np.random.SeedSequence([seed, epoch, position]).spawn(2)
    gen = torch.Generator().manual_seed(int(tensor.generate_state(1, np.uint64)[0]) & (2**63 - 1))
    return np.random.default_rng(events), gen


def epoch_order(n: int, seed: int, epoch: int, stream: int = 0) -> torch.Tensor:
    """The shuffled order of epoch ``epoch``: a function of ``(seed, epoch)`` only (``stream`` 1 is
    the fixed order a capped validation takes its subset from)."""
    entropy = np.random.SeedSequence([seed, epoch, stream, 0x5EED]).generate_state(1, np.uint64)[0]
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(entropy) & (2**63 - 1)))


class SampleView(Dataset):
    """The samples ``indices`` of ``dataset`` (all when None), as a loader reads them.

    Item ``(epoch, position)`` -> ``(x, label, position)``; ``epoch=None`` reads without any
    randomness (evaluation). ``augment(x, generator)`` runs on the tensor of a training sample."""

    def __init__(self, dataset, indices: Sequence[int] | None = None, seed: int = 0,
                 augment: Callable | None = None, skip_unreadable: bool = False):
        self.dataset = dataset
        self.indices = None if indices is None else [int(i) for i in indices]
        self.seed, self.augment, self.skip_unreadable = seed, augment, skip_unreadable

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)

    def index(self, position: int) -> int:
        return position if self.indices is None else self.indices[position]

    @property
    def targets(self) -> list[int]:
        t = self.dataset.targets
        return list(t) if self.indices is None else [t[i] for i in self.indices]

    @property
    def groups(self) -> list[int] | None:
        g = getattr(self.dataset, "groups", None)
        if g is None:
            return None
        return list(g) if self.indices is None else [g[i] for i in self.indices]

    def __getitem__(self, key):
        epoch, position = key if isinstance(key, tuple) else (None, key)
        index = self.index(position)
        rng = gen = None
        if epoch is not None:
            rng, gen = sample_generators(self.seed, epoch, position)
        try:
            x, y = sample_of(self.dataset, index, rng)
        except SampleError as err:
            if not self.skip_unreadable:
                raise
            return Skipped(position, source_of(self.dataset, index), str(err))
        if self.augment is not None and gen is not None:
            x = self.augment(x, gen)
        return x, y, position


def sample_of(dataset, index: int, rng=None):
    """``dataset.sample(index, rng)`` when the dataset draws random numbers, else ``dataset[index]``."""
    f = getattr(dataset, "sample", None)
    return f(index, rng) if f is not None else dataset[index]


def source_of(dataset, index: int) -> str:
    f = getattr(dataset, "source", None)
    return f(index) if f is not None else f"sample {index}"


def _stack(xs: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``; in a worker process straight into shared memory, as torch's default collate
    does, so the batch crosses to the main process without another copy."""
    if torch.utils.data.get_worker_info() is not None:
        storage = xs[0]._typed_storage()._new_shared(sum(x.numel() for x in xs), device=xs[0].device)
        out = xs[0].new(storage).resize_(len(xs), *xs[0].shape)
        return torch.stack(xs, out=out)
    return torch.stack(xs)


def collate(items: list) -> Batch:
    ok = [it for it in items if not isinstance(it, Skipped)]
    skipped = [it for it in items if isinstance(it, Skipped)]
    if ok and is_deferred(ok[0][0]):  # events, for frames built on the model's device
        x = collate_deferred([it[0] for it in ok])
    else:
        x = _stack([torch.as_tensor(it[0]) for it in ok]) if ok else None
    y = torch.tensor([int(it[1]) for it in ok], dtype=torch.long)
    return Batch(x, y, torch.tensor([it[2] for it in ok], dtype=torch.long), skipped)


class ShuffledBatches(Sampler):
    """This process's share of each global batch of an epoch: keys ``(epoch, position)``.

    ``set_epoch(epoch, start)`` picks the epoch and the global batch to start from (resume)."""

    def __init__(self, n: int, batch_size: int, seed: int, env: D.DistEnv | None = None):
        self.n, self.batch_size, self.seed, self.env = n, batch_size, seed, env or D.DistEnv()
        self.epoch, self.start = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(self.steps_per_epoch - self.start, 0)

    def __iter__(self):
        order = epoch_order(self.n, self.seed, self.epoch)
        for b in range(self.start, self.steps_per_epoch):
            share = D.shard(order[b * self.batch_size:(b + 1) * self.batch_size], self.env)
            yield [(self.epoch, int(i)) for i in share]


class SequentialBatches(Sampler):
    """Evaluation: this process's contiguous share of the samples, in batches of ``batch_size``.
    With ``limit`` > 0 only that many batches per process, drawn from a fixed seeded shuffle (so a
    capped validation is the same subset every time, and not just the first classes)."""

    def __init__(self, n: int, batch_size: int, env: D.DistEnv | None = None, limit: int = 0, seed: int = 0):
        order = torch.arange(n)
        if limit > 0:
            env_ = env or D.DistEnv()
            order = epoch_order(n, seed, 0, stream=1)[:limit * batch_size * env_.world_size].sort().values
        self.share = D.shard(order, env or D.DistEnv()).tolist()
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.share) / self.batch_size)

    def __iter__(self):
        for i in range(0, len(self.share), self.batch_size):
            yield [(None, p) for p in self.share[i:i + self.batch_size]]


def _worker_init(_: int) -> None:
    # Ctrl-C reaches every process of the terminal's group: the main process finishes its step
    # and saves; workers must not die first with a KeyboardInterrupt of their own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def make_loader(view: SampleView, batch_sampler: Sampler, num_workers: int, device: torch.device | None = None,
                prefetch_factor: int = 2) -> DataLoader:
    """A DataLoader over ``view``: persistent workers (spawned once, kept across epochs), prefetching,
    pinned memory when batches go to a GPU."""
    return DataLoader(view, batch_sampler=batch_sampler, collate_fn=collate, num_workers=num_workers,
                      persistent_workers=num_workers > 0, prefetch_factor=prefetch_factor if num_workers > 0 else None,
                      pin_memory=device is not None and device.type == "cuda", worker_init_fn=_worker_init)


#: with the model on the CPU, workers take cores from its own threads, so their number stays
#: small. 4 is a judgement, not a measurement: the development machine has 2 cores, where the
#: share (1) is below it; measure on a larger CPU before changing it
CPU_MODEL_MAX_WORKERS = 4


def default_num_workers(in_memory: bool, env: D.DistEnv | None = None, device="cpu") -> int:
    """Workers per process when ``num_workers=-1``: none for data already in memory; else the CPUs
    this process may use, shared among the processes on this machine, less one for the process
    itself. With the model on the CPU at most :data:`CPU_MODEL_MAX_WORKERS` (its threads need the
    rest); with the model on a GPU no cap, since the CPUs have nothing else to do than feed it."""
    import os

    from ..threads import usable_cpus

    if in_memory:
        return 0
    env = env or D.DistEnv()
    local = max(1, min(int(os.environ.get("LOCAL_WORLD_SIZE", env.world_size)), usable_cpus()))
    share = max(0, usable_cpus() // local - 1)
    return share if getattr(device, "type", device) == "cuda" else min(CPU_MODEL_MAX_WORKERS, share)
