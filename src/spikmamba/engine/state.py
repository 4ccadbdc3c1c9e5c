"""Where a run stands: the one object a checkpoint stores to resume training exactly.

The data order and every random draw of a sample are functions of (seed, epoch, position)
(:mod:`.loader`), so the position (epoch, batch) is all the data pipeline needs; the model,
optimizer, schedule and per-process RNG states are stored beside this in ``last.pt``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

#: the layout of ``progress`` in a checkpoint; a last.pt of another layout can be evaluated but not resumed
STATE_FORMAT = 2


@dataclass
class Running:
    """Sums over the current epoch's steps (finite ones): loss x samples, correct, samples."""
    loss_sum: float = 0.0
    correct: float = 0.0
    samples: float = 0.0

    def add(self, loss_sum: float, correct: float, samples: float) -> None:
        self.loss_sum += loss_sum
        self.correct += correct
        self.samples += samples

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.samples, 1)

    @property
    def acc(self) -> float:
        return self.correct / max(self.samples, 1)


@dataclass
class TrainState:
    epoch: int = 0               # epochs finished
    batch: int = 0               # batches done in the current epoch
    step: int = 0                # optimizer steps taken (a skipped non-finite step counts)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    nonfinite_steps: int = 0     # steps skipped for a NaN/inf loss or gradient
    samples_read: int = 0        # training samples asked for, all processes
    samples_skipped: int = 0     # of them, left out as unreadable (skip_unreadable)
    running: Running = field(default_factory=Running)
    history: list = field(default_factory=list)  # one record per finished epoch

    def to_dict(self) -> dict:
        return {"format": STATE_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        d = dict(d)
        d.pop("format", None)
        running = Running(**d.pop("running", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(running=running, **{k: v for k, v in d.items() if k in known})
