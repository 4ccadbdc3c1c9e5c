"""Per-epoch logs: ``log.csv`` (always) and TensorBoard scalars (when ``tensorboard`` is installed).

On resume the CSV is written anew from the checkpoint's own history: an epoch that ran after the
last checkpoint and is run again does not appear twice, and an epoch whose checkpoint was written
just before the process was killed (and whose CSV row was not) is not lost.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "val_acc",
    "val_top5",
    "val_samples",
    "samples_per_s",
    "epoch_s",
)


class RunLogger:
    def __init__(self, out_dir: str | Path, tensorboard: bool = True, resume_epoch: int = 0, quiet: bool = False,
                 history: list[dict] = ()):
        """``history``: the per-epoch records of the checkpoint a run resumes from (its CSV rows)."""
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out / "log.csv"
        kept = [r for r in history if r["epoch"] <= resume_epoch] if resume_epoch else []
        with open(self.csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in COLUMNS} for r in kept)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if not quiet:
                    print("note: TensorBoard logging is off (pip install tensorboard to enable it); log.csv is written",
                          file=sys.stderr)
            else:
                self.tb = SummaryWriter(
                    log_dir=str(self.out / "tensorboard"), purge_step=resume_epoch + 1 if resume_epoch else None
                )

    def log(self, record: dict) -> None:
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow({k: record.get(k, "") for k in COLUMNS})
        if self.tb is not None:
            for key, value in record.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    group = "val" if key.startswith("val") else "train"
                    self.tb.add_scalar(f"{group}/{key}", value, record["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def save_training_curves(history: list[dict], path: str | Path) -> None:
    """Loss and accuracy per epoch (training, and validation when there is one) as a PNG."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_acc.plot(epochs, [r["train_acc"] for r in history], marker="o", label="train")
    val = [(r["epoch"], r["val_acc"]) for r in history if r.get("val_acc") is not None]
    if val:
        ax_acc.plot(*zip(*val), marker="s", label="validation")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("top-1 accuracy")
    ax_acc.set_ylim(0, 1)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
