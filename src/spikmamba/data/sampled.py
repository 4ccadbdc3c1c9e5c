"""Pre-sampled frame files, the input SpikMamba's published scripts train on.

A list file names ``.npz`` files, each holding ``images``: ``[T, H, W, 3]`` uint8 frames (AFE
frames sampled offline by ExACT's tools). The label is read from the path: the first folder
component that is a number (PAF: ``.../3/clip.npz``) or ``action_NNN`` (HARDVS), minus one.
A JSON file maps class names to indices (``{"walking": 0, ...}``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from .base import Confinement, DatasetLayoutError, SampleError, config_root
from .images import RGBInput

LAYOUT = """
root/
  train.txt  test.txt  one .npz path per line (absolute, or relative to the list file)
  classnames.json      {"class name": index, ...}
  <...>/<class number or action_NNN>/<clip>.npz   with array 'images' [T, H, W, 3] uint8
(data_root / test_root may also name a list file itself, with classnames.json beside it)
"""


def label_from_path(path: str) -> int:
    for part in reversed(Path(path).parts[:-1]):
        m = re.fullmatch(r"(?:action_)?(\d+)", part)
        if m:
            return int(m.group(1)) - 1
    raise InputError(f"cannot read a class number from {path!r}: expected a folder named <n> or action_<n>")


def load_frames(path) -> torch.Tensor:
    """``images`` of one pre-sampled ``.npz`` as ``float [T, 3, H, W]`` in [0, 1]."""
    with np.load(path, allow_pickle=False) as z:
        if "images" not in z.files:
            raise KeyError(f"{path}: no 'images' array (has {z.files})")
        img = z["images"]
    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4 or img.shape[-1] != 3:
        raise InputError(f"{path}: 'images' has shape {img.shape}; [T, H, W, 3] expected")
    return torch.from_numpy(np.ascontiguousarray(img.transpose(0, 3, 1, 2))).float() / 255.0


@dataclass(frozen=True)
class SampledFramesRepresentation(RGBInput):
    """The input a pre-sampled ``.npz`` gives: ``frames`` x 3 x ``size`` x ``size``, read as it is.
    Stored in checkpoints so ``predict`` checks new files against it."""

    frames: int
    size: int
    kind: str = "sampled-frames"

    def load(self, path) -> torch.Tensor:
        x = load_frames(path)
        if tuple(x.shape) != (self.frames, 3, self.size, self.size):
            raise InputError(f"{path}: frames of shape {tuple(x.shape)}; the model takes "
                             f"{(self.frames, 3, self.size, self.size)}")
        return x


class SampledFrames(Dataset):
    """``dataset[i] -> ([T, 3, H, W] float tensor in [0, 1], label)``."""

    name = "sampled-frames"
    modality = "sampled-frames"
    layout = LAYOUT

    @classmethod
    def from_config(cls, cfg, split: str) -> SampledFrames:
        root = config_root(cfg, split, cls.name)
        list_file = root / f"{split}.txt" if root.is_dir() else root
        ds = cls(list_file, list_file.parent / "classnames.json", allow_outside_root=cfg.data.allow_outside_root)
        if not len(ds):
            raise DatasetLayoutError("SampledFrames", list_file.parent, f"{list_file.name} lists no files", LAYOUT)
        first = ds.sample(0)[0]
        if first.shape[-1] != first.shape[-2]:
            raise InputError(
                f"{ds.files[0]}: frames are {first.shape[-1]}x{first.shape[-2]}; the models take square input"
            )
        ds.representation = SampledFramesRepresentation(frames=int(first.shape[0]), size=int(first.shape[-1]))
        return ds

    def configured(self, representation=None, transform=None, pre_transform=None, cache_dir=None):
        if transform is not None or pre_transform is not None:
            raise InputError("sampled-frames: event transforms do not apply to pre-sampled frames")
        return self

    @property
    def sensor_size(self):
        rep = self.representation
        return (rep.size, rep.size) if rep is not None else (0, 0)

    def source(self, index: int) -> str:
        return str(self.files[index])

    def sample(self, index: int, rng=None):
        try:
            rep = self.representation
            x = rep.load(self.files[index]) if rep is not None else load_frames(self.files[index])
            if self.transform is not None:
                x = self.transform(x)
            return x, self.labels[index]
        except Exception as err:
            raise SampleError(f"{self.name}: sample {index} ({self.files[index]}, label {self.labels[index]}) failed: "
                              f"{type(err).__name__}: {err}") from err

    def __init__(self, list_file, classnames_json, transform=None, allow_outside_root: bool = False):
        list_file = Path(list_file)
        confine = Confinement(list_file.parent, allow_outside_root)
        if not list_file.is_file():
            raise DatasetLayoutError("SampledFrames", list_file.parent, f"list file {list_file.name} not found", LAYOUT)
        if not Path(classnames_json).is_file():
            raise DatasetLayoutError(
                "SampledFrames", list_file.parent, f"{Path(classnames_json).name} not found", LAYOUT
            )
        with open(classnames_json) as f:
            mapping = json.load(f)
        self.classes = [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
        self.files = []
        for n, line in enumerate(list_file.read_text().splitlines(), 1):
            if line.strip():
                p = Path(line.strip())
                self.files.append(confine.check(p if p.is_absolute() else list_file.parent / p, f"{list_file}:{n}"))
        self.labels = [label_from_path(str(p)) for p in self.files]
        bad = [k for k in self.labels if not 0 <= k < len(self.classes)]
        if bad:
            raise InputError(
                f"{list_file}: labels {sorted(set(bad))[:5]} outside the {len(self.classes)} classes of "
                f"{classnames_json}"
            )
        self.transform = transform
        self.representation = None

    @property
    def targets(self):
        return list(self.labels)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        return self.sample(index)
