"""The base of every recorded-event dataset: a list of samples (file, label, time window), the
pipeline read -> cut -> transform -> representation, and an optional on-disk cache.

The cache stores the representation of each sample (a ``.npy`` per sample) under a folder
named by a hash of everything that determines it: the representation and pre-transform
``repr``, the source file's path, size and modification time, and the window. Each entry is
written to a temporary file and renamed into place, so two processes filling the same cache at
once never leave a half-written entry (the last rename wins; both wrote the same bytes).
Random ``transform``s are applied after the cache, on every access.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..events.io import read_events


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder is missing or not laid out as expected: shows the expected tree and what was found."""

    def __init__(self, name: str, root, problem: str, layout: str):
        root = Path(root)
        if root.is_dir():
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
            shown = ", ".join(entries[:12]) + (f", ... ({len(entries)} entries)" if len(entries) > 12 else "")
            found = f"found in {root}: {shown or '(empty folder)'}"
        else:
            found = f"{root} does not exist"
        super().__init__(f"{name}: {problem}\n{found}\nexpected layout:\n{layout.strip()}")


class SampleError(ValueError):
    """Reading or converting one sample failed: names the dataset, the index, the file and window.

    Raised inside a ``DataLoader`` worker, PyTorch re-raises it in the main process with this
    message, so a bad recording is found by index and path, not by bisecting the dataset."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    window: Optional[tuple] = None  # (t_start, t_end) µs, end exclusive; None = whole file


class EventDataset(Dataset):
    """``dataset[i] -> (x, label)``. ``x`` is the event array when ``representation`` is None,
    else the representation's output as a float tensor.

    Pipeline: read (``read_events``) -> cut to the sample's window -> ``pre_transform``
    (deterministic, cached) -> ``transform`` (may be random; applied every access) ->
    ``representation``.
    """

    name = "events"
    layout = ""

    def __init__(self, samples: Sequence[Sample], classes: Sequence[str], sensor_size, transform: Optional[Callable] = None,
                 representation: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 cache_dir: "str | os.PathLike | None" = None, read_options: Optional[dict] = None):
        self.samples = list(samples)
        self.classes = list(classes)
        self.sensor_size = tuple(sensor_size)
        self.transform, self.representation, self.pre_transform = transform, representation, pre_transform
        self.read_options = dict(read_options or {})
        self.cache_dir = None
        if cache_dir is not None and representation is not None:
            tag = hashlib.sha1(f"{self.name}|{representation!r}|{pre_transform!r}|{self.sensor_size}".encode()).hexdigest()[:12]
            self.cache_dir = Path(cache_dir) / f"{self.name}-{tag}"
        self._last = (None, None)  # the last file read: gesture trials hold many samples

    @property
    def targets(self) -> "list[int]":
        return [s.label for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def read_sample(self, index: int) -> np.ndarray:
        """The sample's events (cut to its window, before any transform)."""
        s = self.samples[index]
        if self._last[0] != s.path:
            rec = read_events(s.path, sensor_size=self.sensor_size, **self.read_options)
            self._last = (s.path, rec.events)
        ev = self._last[1]
        if s.window is not None:
            a, b = np.searchsorted(ev["t"], s.window[0], "left"), np.searchsorted(ev["t"], s.window[1], "left")
            ev = ev[a:b]
        return ev

    def _cache_file(self, index: int) -> Path:
        s = self.samples[index]
        st = os.stat(s.path)
        key = hashlib.sha1(f"{os.path.abspath(s.path)}|{st.st_size}|{st.st_mtime_ns}|{s.window}".encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.npy"

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        try:
            return self._get(index)
        except Exception as err:
            s = self.samples[index]
            window = f", window {s.window[0]}-{s.window[1]} µs" if s.window is not None else ""
            raise SampleError(f"{self.name}: sample {index} ({s.path}{window}, label {s.label}) failed: "
                              f"{type(err).__name__}: {err}") from err

    def _get(self, index: int):
        label = self.samples[index].label
        if self.cache_dir is not None and self.transform is None:
            path = self._cache_file(index)
            if path.exists():
                return torch.from_numpy(np.load(path)), label
            x = self._compute(index)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.asarray(x))
            os.replace(tmp, path)
            return torch.from_numpy(np.asarray(x)), label
        x = self._compute(index)
        return (torch.from_numpy(np.ascontiguousarray(x)) if self.representation is not None else x), label

    def _compute(self, index: int):
        ev = self.read_sample(index)
        if self.pre_transform is not None:
            ev = self.pre_transform(ev)
        if self.transform is not None:
            ev = self.transform(ev)
        if self.representation is None:
            return ev
        return np.asarray(self.representation(ev), dtype=np.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples, {len(self.classes)} classes, sensor {self.sensor_size})"
