"""HARDVS (300 human activities, DAVIS346 346x260)."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..events.io import EVENT_FILE_EXTENSIONS
from .base import Confinement, DatasetLayoutError, EventDataset, Sample


class HARDVS(EventDataset):
    """``root/action_XXX/<recording>`` plus ``{train,val,test}_label.txt`` whose lines start with
    ``action_XXX/<recording>`` (no extension; a second column, if present, is ignored: the
    label is the action number - 1, as the published scripts compute it)."""

    name = "hardvs"
    layout = """
root/
  train_label.txt  val_label.txt  test_label.txt   lines like "action_001/dvSave-2021_10_15_19_18_02 0"
  action_001/  dvSave-2021_10_15_19_18_02.npz  (events: t, x, y, p; or any read_events format)
  ...
  action_300/
"""
    sensor = (346, 260)
    num_classes = 300

    def __init__(self, root, split: str = "train", allow_outside_root: bool = False, **kwargs):
        root = Path(root)
        confine = Confinement(root, allow_outside_root)
        lst = root / f"{split}_label.txt"
        if not lst.is_file():
            raise DatasetLayoutError("HARDVS", root, f"{lst.name} not found (split {split!r})", self.layout)
        samples = []
        for n, line in enumerate(lst.read_text().splitlines(), 1):
            if not line.strip():
                continue
            rel = line.split()[0]
            folder = rel.split("/")[0]
            if not folder.startswith("action_") or not folder[7:].isdigit():
                raise InputError(f"{lst}:{n}: expected 'action_XXX/<recording>', got {rel!r}")
            label = int(folder[7:]) - 1
            base = root / rel
            path = base if base.is_file() else next((base.with_name(base.name + e) for e in EVENT_FILE_EXTENSIONS
                                                     if base.with_name(base.name + e).is_file()), None)
            if path is None:
                raise FileNotFoundError(f"{lst}:{n}: no recording {rel}.<ext> under {root}")
            samples.append(Sample(str(confine.check(path, f"{lst}:{n}")), label))
        classes = [f"action_{i:03d}" for i in range(1, self.num_classes + 1)]
        self.root = root
        super().__init__(samples, classes, self.sensor, **kwargs)
