"""Linear baseline for N-MNIST: multinomial logistic regression on log event-count images.

Uses the same seeded stratified validation split as ``spikmamba train`` (val_fraction, seed),
so its accuracy sits in the same table as the models'. Run:
    python benchmarks/nmnist_baselines.py ../shared/data/nmnist-small [val_fraction] [seed]
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from spikmamba.data import NMNIST, stratified_split
from spikmamba.events import to_count_image


def count_features(ds) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.stack([np.log1p(to_count_image(ds.read_sample(i), ds.sensor_size)).ravel() for i in range(len(ds))])
    return torch.from_numpy(x).float(), torch.tensor(ds.targets)


def logistic_regression(x_tr, y_tr, x_te, y_te, l2: float = 1e-3, classes: int = 10) -> float:
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    w = torch.zeros(x_tr.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x_tr @ w + b, y_tr) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x_te @ w + b).argmax(1) == y_te).float().mean())


def main(argv):
    root = argv[1] if len(argv) > 1 else "../shared/data/nmnist-small"
    val_fraction = float(argv[2]) if len(argv) > 2 else 0.1
    seed = int(argv[3]) if len(argv) > 3 else 0
    ds = NMNIST(root, "train")
    x, y = count_features(ds)
    tr, va = stratified_split(y.tolist(), val_fraction, seed)
    for l2 in (1e-4, 1e-3, 1e-2):
        acc = logistic_regression(x[tr], y[tr], x[va], y[va], l2)
        print(f"logistic regression on log count images, l2={l2:g}: validation accuracy {acc:.4f} "
              f"({len(tr)} train / {len(va)} val samples)")


if __name__ == "__main__":
    main(sys.argv)
