"""Points in the training loop where code of one's own runs, without an edit to the loop.

The loop (:class:`~.trainer.Trainer`) calls every hook passed to ``train(cfg, hooks=[...])`` at
each of these points, in order, on every process (``trainer.main`` is rank 0, the one that
writes files). What a hook sees is the same on every process: the epoch record holds the
global loss, accuracy and validation figures, so a decision made from it (stop now) is made
alike everywhere, and the processes stay in step.

The run's own log (log.csv, TensorBoard, the curves, the epoch line) is such a hook,
:class:`RunLog`, always first. :class:`EarlyStopping` is another, and an example.
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from ..errors import InputError
from .logs import save_training_curves


class Hook:
    """Override the points you need; the others do nothing. ``trainer`` is the running
    :class:`~.trainer.Trainer` (not imported here: the loop imports its hooks, not the reverse)."""

    def on_fit_start(self, trainer) -> None:
        """Before the first step (after a resume has restored the state)."""

    def on_step_end(self, trainer) -> None:
        """After each optimizer step: ``trainer.state`` (``step``, ``running.loss``, ``running.acc``)."""

    def on_epoch_end(self, trainer, record: dict) -> None:
        """After each epoch (and its validation, when it had one), before ``last.pt`` is written:
        ``record`` is the epoch's row of log.csv (``train_loss``, ``val_acc``, ...)."""

    def on_checkpoint(self, trainer, path: Path) -> None:
        """After ``last.pt`` or ``best.pt`` was written (on the process that wrote it)."""

    def on_fit_end(self, trainer, summary: dict) -> None:
        """After the final evaluation, with the run's summary (what summary.json holds)."""


class RunLog(Hook):
    """The run's own log: log.csv and TensorBoard (``trainer.logger``), training_curves.png and
    the per-epoch line on the console, all on rank 0."""

    def on_epoch_end(self, trainer, record: dict) -> None:
        if not trainer.main:
            return
        history = trainer.state.history + [record]
        trainer.logger.log(record)
        save_training_curves(history, trainer.out / "training_curves.png")
        if trainer.show:
            tqdm.write(trainer.epoch_line(record))


class EarlyStopping(Hook):
    """Stop when ``monitor`` (a key of the epoch record, ``val_acc`` by default) has not improved
    by more than ``min_delta`` for ``patience`` epochs that recorded it. The run ends as a run
    that reached its last epoch: the final test, ``last.pt`` (resumable with more patience or
    more epochs), and ``stopped_early`` in the summary."""

    def __init__(self, patience: int = 5, monitor: str = "val_acc", mode: str = "max", min_delta: float = 0.0):
        if patience < 1 or mode not in ("max", "min"):
            raise InputError(f"EarlyStopping needs patience >= 1 and mode 'max' or 'min', got {patience}, {mode!r}")
        self.patience, self.monitor, self.mode, self.min_delta = patience, monitor, mode, min_delta
        self.best: float | None = None
        self.waited = 0

    def on_epoch_end(self, trainer, record: dict) -> None:
        if self.monitor not in record:
            return
        value = float(record[self.monitor])
        better = self.best is None or (value > self.best + self.min_delta if self.mode == "max"
                                       else value < self.best - self.min_delta)
        if better:
            self.best, self.waited = value, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            trainer.request_stop(f"{self.monitor} has not improved on {self.best:.4g} for {self.waited} epoch(s) "
                                 f"(EarlyStopping, patience {self.patience})")
