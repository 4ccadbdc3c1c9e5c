"""Class-folder datasets: ``root/<class>/<recording>`` in any format ``read_events`` reads.

This is the layout of N-Caltech101, PAF and E-FAction; subclasses fix the sensor size, the
extensions and how a split is chosen (a list file of relative paths, or all files).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError
from ..events.io import EVENT_FILE_EXTENSIONS
from .base import Confinement, DatasetLayoutError, EventDataset, Sample, config_root


def class_sort_key(name: str):
    """Numeric folder names sort as numbers (``2`` before ``10``), others alphabetically."""
    m = re.fullmatch(r"\D*(\d+)", name)
    return (0, int(m.group(1)), name) if m else (1, 0, name)


class EventFolder(EventDataset):
    name = "event-folder"
    layout = """
root/
  <class_a>/  recording1.<ext>  recording2.<ext> ...
  <class_b>/  ...
  [train.txt, test.txt]   optional split lists: one path per line, relative to root
"""
    default_sensor_size = None
    extensions = EVENT_FILE_EXTENSIONS

    @classmethod
    def from_config(cls, cfg, split: str) -> EventFolder:
        """``<split>.txt`` chooses the recordings when the folder has one, else every recording in
        ``data_root`` (train) or ``test_root`` (test). The plain ``event-folder`` takes its sensor
        size from the first recording that states one."""
        root = config_root(cfg, split, cls.name)
        listed = split if (root / f"{split}.txt").is_file() else None
        allow = cfg.data.allow_outside_root
        if cls.default_sensor_size is not None:
            return cls(root, listed, allow_outside_root=allow)
        return cls(root, listed, sensor_size=cls._stated_sensor(root), allow_outside_root=allow)

    @classmethod
    def _stated_sensor(cls, root: Path) -> tuple[int, int]:
        from ..events.io import read_events

        if not root.is_dir():
            raise DatasetLayoutError(cls.__name__, root, "dataset folder not found", cls.layout)
        for f in sorted(root.rglob("*")):
            if f.is_file() and f.suffix.lower() in cls.extensions:
                size = read_events(f).sensor_size
                if size is not None:
                    return tuple(size)
                raise InputError(f"{cls.__name__}: {f} does not state its sensor size ({f.suffix} files "
                                 f"may not); store the recordings as .npz with a sensor_size entry, .h5 with "
                                 f"width/height attributes, or a format that states it (AEDAT 4, EVT)")
        raise DatasetLayoutError(cls.__name__, root, f"no recordings with extensions {cls.extensions}", cls.layout)

    def __init__(self, root, split: str | None = None, sensor_size=None, allow_outside_root: bool = False, **kwargs):
        root = Path(root)
        confine = Confinement(root, allow_outside_root)
        if not root.is_dir():
            raise DatasetLayoutError(type(self).__name__, root, "dataset folder not found", self.layout)
        sensor_size = sensor_size or self.default_sensor_size
        if sensor_size is None:
            raise InputError(f"{type(self).__name__}: pass sensor_size=(W, H); this layout does not state it")
        class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                            key=lambda d: class_sort_key(d.name))
        if not class_dirs:
            raise DatasetLayoutError(type(self).__name__, root, "no class folders found", self.layout)
        classes = [d.name for d in class_dirs]
        index = {c: i for i, c in enumerate(classes)}
        if split is None:
            files = [confine.check(f, f"{d}") for d in class_dirs for f in sorted(d.iterdir())
                     if f.suffix.lower() in self.extensions]
        else:
            list_file = root / f"{split}.txt"
            if not list_file.is_file():
                raise DatasetLayoutError(
                    type(self).__name__, root, f"split list {list_file.name} not found", self.layout
                )
            files = []
            for n, line in enumerate(list_file.read_text().splitlines(), 1):
                line = line.strip().split()[0] if line.strip() else ""
                if not line:
                    continue
                f = confine.check(root / line, f"{list_file}:{n}")
                if not f.is_file():
                    raise FileNotFoundError(f"{list_file}:{n}: {line!r} does not exist under {root}")
                files.append(f)
        samples = []
        for f in files:
            cls = f.relative_to(root).parts[0]
            if cls not in index:
                raise DatasetLayoutError(type(self).__name__, root, f"{f} is not inside a class folder", self.layout)
            samples.append(Sample(str(f), index[cls]))
        if not samples:
            raise DatasetLayoutError(
                type(self).__name__, root, f"no recordings with extensions {self.extensions}", self.layout
            )
        self.root = root
        super().__init__(samples, classes, sensor_size, **kwargs)


class NCaltech101(EventFolder):
    """N-Caltech101 (ATIS, saccades over Caltech101 images; up to 240x180)."""
    name = "ncaltech101"
    layout = """
root/                     (the extracted Caltech101/ folder)
  accordion/  image_0001.bin ...
  airplanes/  ...
  ... one folder per class (BACKGROUND_Google included if present)
"""
    default_sensor_size = (240, 180)
    extensions = (".bin",)


class PAF(EventFolder):
    """PAF (DAVIS346 action recognition, 10 classes, 450 clips), class folders of AEDAT files."""
    name = "paf"
    layout = """
root/
  1/ ... 10/       class folders (numeric, as the SpikMamba scripts expect: label = number - 1)
    <clip>.aedat   (AEDAT 2.0 DAVIS346 or AEDAT 3.1/4)
  train.txt, test.txt   split lists: one path per line relative to root (e.g. 3/clip_07.aedat)
"""
    default_sensor_size = (346, 260)
    extensions = (".aedat", ".aedat4")

    def __init__(self, root, split=None, sensor_size=None, **kwargs):
        kwargs.setdefault("read_options", {"camera": "davis346"})  # used only by AEDAT 2.0 files
        super().__init__(root, split, sensor_size, **kwargs)


class EFAction(EventFolder):
    """E-FAction (DVS action recognition recorded with DV, AEDAT 4 files in class folders)."""
    name = "efaction"
    layout = """
root/
  <action>/  <clip>.aedat4 ...
  train.txt, test.txt   split lists: one path per line relative to root
"""
    default_sensor_size = (346, 260)
    extensions = (".aedat4",)
