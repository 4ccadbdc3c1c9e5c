"""Classification metrics from one confusion matrix: top-1, top-k, per-class accuracy.

``ClassificationMetrics`` accumulates counts (not averages), so shards from several processes
add up exactly (``all_reduce`` the two count tensors). The confusion matrix is written as CSV
(true class per row) and as a PNG heat map.
"""
from __future__ import annotations

import csv
from pathlib import Path

import torch


class ClassificationMetrics:
    def __init__(self, num_classes: int, topk: int = 5):
        self.num_classes = num_classes
        self.topk = min(topk, num_classes)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)  # [true, predicted]
        self.topk_correct = torch.zeros((), dtype=torch.long)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        logits, target = logits.detach().float().cpu(), target.cpu()
        pred = logits.argmax(1)
        self.confusion += torch.bincount(target * self.num_classes + pred,
                                         minlength=self.num_classes ** 2).view(self.num_classes, self.num_classes)
        top = logits.topk(self.topk, dim=1).indices
        self.topk_correct += (top == target[:, None]).any(1).sum()

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1(self) -> float:
        return float(self.confusion.diag().sum()) / max(self.count, 1)

    @property
    def topk_acc(self) -> float:
        return float(self.topk_correct) / max(self.count, 1)

    def per_class(self) -> list[float | None]:
        """Accuracy (recall) of each true class; None for a class with no samples."""
        support = self.confusion.sum(1)
        return [float(self.confusion[c, c]) / int(support[c]) if support[c] else None for c in range(self.num_classes)]

    def summary(self, classes) -> dict:
        support = self.confusion.sum(1).tolist()
        return {"samples": self.count, "top1": self.top1, f"top{self.topk}": self.topk_acc,
                "per_class": [{"class": name, "accuracy": acc, "samples": n}
                              for name, acc, n in zip(classes, self.per_class(), support)],
                "confusion": self.confusion.tolist()}

    def save_csv(self, path: str | Path, classes) -> None:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["true \\ predicted", *classes])
            for name, row in zip(classes, self.confusion.tolist()):
                w.writerow([name, *row])

    def save_png(self, path: str | Path, classes, title: str = "confusion matrix") -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = self.num_classes
        support = self.confusion.sum(1, keepdim=True).clamp(min=1)
        frac = (self.confusion.float() / support).numpy()
        size = max(4.0, 0.45 * n + 2.5)
        fig, ax = plt.subplots(figsize=(size, size * 0.9))
        im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        ticks = range(n) if n <= 40 else range(0, n, max(1, n // 20))
        ax.set_xticks(list(ticks), [classes[i] for i in ticks], rotation=60, ha="right", fontsize=8)
        ax.set_yticks(list(ticks), [classes[i] for i in ticks], fontsize=8)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    c = int(self.confusion[i, j])
                    if c:
                        ax.text(j, i, str(c), ha="center", va="center", fontsize=7,
                                color="white" if frac[i, j] > 0.5 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title} (top-1 {self.top1 * 100:.1f}%, {self.count} samples)")
        fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def per_group_metrics(logits: torch.Tensor, target: torch.Tensor, groups: torch.Tensor, num_classes: int,
                      topk: int = 5) -> ClassificationMetrics:
    """Metrics with one prediction per group (video): the mean of its members' (clips') logits."""
    groups = torch.as_tensor(groups)
    ids, inverse = torch.unique(groups, return_inverse=True)
    sums = torch.zeros(len(ids), logits.shape[1], dtype=torch.float64).index_add_(0, inverse, logits.double())
    counts = torch.bincount(inverse, minlength=len(ids)).clamp(min=1).unsqueeze(1)
    labels = torch.zeros(len(ids), dtype=torch.long).scatter_(0, inverse, target.long())
    m = ClassificationMetrics(num_classes, topk)
    m.update(sums / counts, labels)
    return m
