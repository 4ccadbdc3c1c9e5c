"""Pre-sampled frame files, the input SpikMamba's published scripts train on.

A list file names ``.npz`` files, each holding ``images``: ``[T, H, W, 3]`` uint8 frames (AFE
frames sampled offline by ExACT's tools). The label is read from the path: the first folder
component that is a number (PAF: ``.../3/clip.npz``) or ``action_NNN`` (HARDVS), minus one.
A JSON file maps class names to indices (``{"walking": 0, ...}``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import DatasetLayoutError

LAYOUT = """
list.txt        one .npz path per line (absolute, or relative to the list file)
classnames.json {"class name": index, ...}
<...>/<class number or action_NNN>/<clip>.npz   with array 'images' [T, H, W, 3] uint8
"""


def label_from_path(path: str) -> int:
    for part in reversed(Path(path).parts[:-1]):
        m = re.fullmatch(r"(?:action_)?(\d+)", part)
        if m:
            return int(m.group(1)) - 1
    raise ValueError(f"cannot read a class number from {path!r}: expected a folder named <n> or action_<n>")


class SampledFrames(Dataset):
    """``dataset[i] -> ([T, 3, H, W] float tensor in [0, 1], label)``."""

    name = "sampled-frames"
    layout = LAYOUT

    def __init__(self, list_file, classnames_json, transform=None):
        list_file = Path(list_file)
        if not list_file.is_file():
            raise DatasetLayoutError("SampledFrames", list_file.parent, f"list file {list_file.name} not found", LAYOUT)
        with open(classnames_json) as f:
            mapping = json.load(f)
        self.classes = [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
        self.files = []
        for line in list_file.read_text().splitlines():
            if line.strip():
                p = Path(line.strip())
                self.files.append(p if p.is_absolute() else list_file.parent / p)
        self.labels = [label_from_path(str(p)) for p in self.files]
        bad = [l for l in self.labels if not 0 <= l < len(self.classes)]
        if bad:
            raise ValueError(f"{list_file}: labels {sorted(set(bad))[:5]} outside the {len(self.classes)} classes of {classnames_json}")
        self.transform = transform

    @property
    def targets(self):
        return list(self.labels)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        with np.load(self.files[index], allow_pickle=False) as z:
            if "images" not in z.files:
                raise KeyError(f"{self.files[index]}: no 'images' array (has {z.files})")
            img = z["images"]
        if img.ndim == 3:
            img = img[None]
        if img.ndim != 4 or img.shape[-1] != 3:
            raise ValueError(f"{self.files[index]}: 'images' has shape {img.shape}; [T, H, W, 3] expected")
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(0, 3, 1, 2))).float() / 255.0
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[index]
