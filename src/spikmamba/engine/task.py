"""What a training step computes, apart from how the loop runs it.

The loop (:class:`~.trainer.Trainer`) owns batches, devices, processes, the optimizer, the
schedule, checkpoints and logs. A task owns the rest: the loss of a batch and the one number
per batch the progress bar and the epoch log show beside it. Another objective (a regression
head, a distillation loss) is a new task passed to ``train(cfg, task=...)``, not an edit to the
loop. Evaluation (top-1/top-5, per class, confusion) is classification's.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class Task(Protocol):
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss *summed* over the batch's samples (the loop divides by the global batch size,
        so that N processes take the same step as one)."""

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """How many samples of the batch count as right (a 0-d tensor; the loop's accuracy)."""


class ClassificationTask:
    """Cross-entropy (with label smoothing) on the model's logits; right = the top class."""

    def __init__(self, label_smoothing: float = 0.0):
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction="sum")

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(outputs.float(), targets)

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(1) == targets).sum()
