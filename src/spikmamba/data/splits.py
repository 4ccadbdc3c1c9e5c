"""Seeded, stratified train/validation splits (so model selection never touches a test set)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError


def stratified_split(labels: Sequence[int], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)``: each class contributes ``round(val_fraction * count)`` samples
    (at least one when it has two or more) to validation, chosen by a seeded permutation."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(val_fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        val.extend(idx[:k].tolist())
        train.extend(idx[k:].tolist())
    return sorted(train), sorted(val)
