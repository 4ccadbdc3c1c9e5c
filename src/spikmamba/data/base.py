"""The base of every recorded-event dataset: a list of samples (file, label, time window), the
pipeline read -> cut -> pre_transform -> transform -> representation, and an optional on-disk cache.

Nothing is read when a dataset is made: it lists its samples (paths, labels, windows) and
every sample is read when it is asked for, so a DataLoader's workers stream a dataset of any
size. ``pre_transform`` is deterministic; ``transform`` may be random and draws from the
``rng`` passed to :meth:`EventDataset.sample` (the training loader seeds it from (seed, epoch,
index), so results do not depend on the number of workers). With ``cache_dir`` and no random
``transform``, each sample's representation is stored once (compactly, see :mod:`.cache`)
under a folder named by a hash of everything that determines it (the representation, the
pre-transform, the sensor size, the entry format) and keyed by a digest of the source file's
content and the window, so a changed representation or file never reuses a stale entry; each
entry records all of this and is checked on every read (see :mod:`.cache`).
"""
from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError, SpikmambaError
from ..events.io import read_events
from .cache import CACHE_FORMAT, RepresentationCache


class DatasetLayoutError(SpikmambaError, FileNotFoundError):
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


class SampleError(SpikmambaError, ValueError):
    """Reading or converting one sample failed: names the dataset, the index, the file and window.

    Raised inside a ``DataLoader`` worker, PyTorch re-raises it in the main process with this
    message, so a bad recording is found by index and path, not by bisecting the dataset."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    window: tuple | None = None  # (t_start, t_end) µs, end exclusive; None = whole file


class DatasetPathError(InputError):
    """A dataset's list file or link names a file outside the dataset folder."""


class Confinement:
    """Keeps a dataset's files inside its folder: every path a list file, a label file or a
    symbolic link leads to is resolved (``..`` and links) and refused when it leaves ``root``,
    unless ``allow`` (config key ``allow_outside_root``). Why: a crafted ``labels.txt`` line
    ``../outside_secret 3`` read a file outside the dataset."""

    def __init__(self, root, allow: bool = False):
        self.allow = allow
        self.root = os.path.realpath(root)

    def check(self, path, where: str) -> Path:
        path = Path(path)
        if self.allow:
            return path
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root.rstrip(os.sep) + os.sep):
            raise DatasetPathError(
                f"{where}: {path} leads to {real}, outside the dataset folder {self.root}; refused. If the dataset is "
                f"meant to reach there (a folder of links to recordings elsewhere, a list of absolute paths), set "
                f"data.allow_outside_root=true")
        return path


def config_root(cfg, split: str, name: str) -> Path:
    """The folder a config names for ``split``: ``data_root`` for training, ``test_root`` for test."""
    root = cfg.data.root if split == "train" else cfg.data.test_root
    if not root:
        key = "data.root" if split == "train" else "data.test_root"
        raise InputError(f"data.name={name!r} needs {key}=<folder> (see `spikmamba datasets {name}`)")
    return Path(root)


class EventDataset(Dataset):
    """``dataset[i] -> (x, label)``. ``x`` is the event array when ``representation`` is None,
    else the representation's output as a float tensor.

    Pipeline: read (``read_events``) -> cut to the sample's window -> ``pre_transform``
    (deterministic, cached) -> ``transform`` (may be random; applied every access) ->
    ``representation``.
    """

    name = "events"
    layout = ""
    modality = "events"

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        sensor_size,
        transform: Callable | None = None,
        representation: Callable | None = None,
        pre_transform: Callable | None = None,
        cache_dir: str | os.PathLike | None = None,
        read_options: dict | None = None,
    ):
        self.samples = list(samples)
        self.classes = list(classes)
        self.sensor_size = tuple(sensor_size)
        self.transform, self.representation, self.pre_transform = transform, representation, pre_transform
        self.read_options = dict(read_options or {})
        self.cache_root = cache_dir
        self._last = (None, None)  # the last file read: gesture trials hold many samples
        self._open_cache()

    def _open_cache(self) -> None:
        self.cache = None
        self._digests = {}  # source file -> (its stat, the digest of its content)
        if self.cache_root is not None and self.representation is not None:
            self._identity = (f"{self.name}|{self.representation!r}|{self.pre_transform!r}|{self.sensor_size}|"
                              f"{CACHE_FORMAT}")
            tag = hashlib.sha1(self._identity.encode()).hexdigest()[:12]
            self.cache = RepresentationCache(Path(self.cache_root) / f"{self.name}-{tag}")

    @property
    def cache_dir(self) -> Path | None:
        return self.cache.folder if self.cache is not None else None

    @classmethod
    def from_config(cls, cfg, split: str) -> EventDataset:
        """The dataset a config names for ``split`` ('train' or 'test'): every dataset is made this one way."""
        return cls(config_root(cfg, split, cls.name), split, allow_outside_root=cfg.data.allow_outside_root)

    def configured(self, representation=None, transform=None, pre_transform=None, cache_dir=None) -> EventDataset:
        """A copy over the same samples with another pipeline (the training and the evaluation
        pipelines of one recorded split share its sample list)."""
        other = copy.copy(self)
        other.representation, other.transform, other.pre_transform = representation, transform, pre_transform
        other.cache_root = cache_dir
        other._last = (None, None)
        other._open_cache()
        return other

    @property
    def targets(self) -> list[int]:
        return [s.label for s in self.samples]

    def source(self, index: int) -> str:
        """Where sample ``index`` comes from (for error and skip reports)."""
        s = self.samples[index]
        return s.path + (f" [{s.window[0]}-{s.window[1]} µs]" if s.window is not None else "")

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

    def _source_digest(self, path: str) -> str:
        """BLAKE2b of the file's content, hashed once per process while its stat (size, times,
        inode) is unchanged: a file rewritten with its size and mtime kept still changes ctime."""
        st = os.stat(path)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
        known = self._digests.get(path)
        if known is None or known[0] != stamp:
            h = hashlib.blake2b(digest_size=20)
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            known = self._digests[path] = (stamp, h.hexdigest())
        return known[1]

    def _cache_record(self, index: int) -> tuple[str, str]:
        """(key, record) of sample ``index``: both name the source's content and window, the
        record also the representation and format (see :class:`.cache.RepresentationCache`)."""
        s = self.samples[index]
        record = f"{self._source_digest(s.path)}|{s.window}|{self._identity}"
        return hashlib.sha1(record.encode()).hexdigest(), record

    def __getitem__(self, index: int):
        return self.sample(index)

    def sample(self, index: int, rng: np.random.Generator | None = None):
        """``(x, label)`` of sample ``index``; random transforms draw from ``rng``."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        try:
            return self._get(index, rng)
        except Exception as err:
            s = self.samples[index]
            window = f", window {s.window[0]}-{s.window[1]} µs" if s.window is not None else ""
            raise SampleError(f"{self.name}: sample {index} ({s.path}{window}, label {s.label}) failed: "
                              f"{type(err).__name__}: {err}") from err

    def _events(self, index: int, rng) -> np.ndarray:
        ev = self.read_sample(index)
        if self.pre_transform is not None:
            ev = self.pre_transform(ev)
        if self.transform is not None:
            ev = self.transform(ev, rng=rng) if getattr(self.transform, "random", False) else self.transform(ev)
        return ev

    def _get(self, index: int, rng):
        label = self.samples[index].label
        rep = self.representation
        if rep is None:
            return self._events(index, rng), label
        finish = getattr(rep, "finish", None)
        if self.cache is not None and self.transform is None and finish is not None:
            key, record = self._cache_record(index)
            raw = self.cache.get(key, rep.raw_shape(), record)
            if raw is None:
                raw = rep.raw(self._events(index, rng))
                self.cache.put(key, raw, record)
            return torch.from_numpy(finish(raw)), label
        x = rep(self._events(index, rng))
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), label

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples, {len(self.classes)} classes, sensor {self.sensor_size})"
