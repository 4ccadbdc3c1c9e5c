"""N-MNIST (ATIS camera, 34x34, saccades over MNIST digits)."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .base import Confinement, DatasetLayoutError, EventDataset, Sample


class NMNIST(EventDataset):
    """Either the official tree (``Train/<digit>/*.bin``, ``Test/<digit>/*.bin``) or a flat
    folder with ``labels.txt`` (``sample_id<TAB>digit``, first line a header) and
    ``<sample_id>.bs2`` / ``.bin`` files, given directly or as ``root/<split>/``."""

    name = "nmnist"
    layout = """
root/                                   official release
  Train/0/00002.bin ... Train/9/*.bin
  Test/0/*.bin ... Test/9/*.bin
or a flat folder (root itself, or root/<split>/):
  labels.txt     "sample_id<TAB>digit" per line, first line a header
  1.bs2 2.bs2 ...  (or .bin)
"""
    sensor = (34, 34)

    def __init__(self, root, split: str = "train", allow_outside_root: bool = False, **kwargs):
        root = Path(root)
        confine = Confinement(root, allow_outside_root)
        classes = [str(d) for d in range(10)]
        official = root / {"train": "Train", "test": "Test"}.get(split, split)
        if official.is_dir() and any((official / c).is_dir() for c in classes):
            samples = [Sample(str(confine.check(f, f"{official.name}/{d}")), d) for d in range(10)
                       if (official / str(d)).is_dir() for f in sorted((official / str(d)).glob("*.bin"))]
        else:
            flat = root if (root / "labels.txt").is_file() else root / split
            if not (flat / "labels.txt").is_file():
                raise DatasetLayoutError(
                    "NMNIST",
                    root,
                    f"neither {official.name}/<digit>/ nor a labels.txt for split {split!r}",
                    self.layout,
                )
            samples = self._flat(flat, confine)
        if not samples:
            raise DatasetLayoutError("NMNIST", root, f"no samples found for split {split!r}", self.layout)
        self.root = root
        super().__init__(samples, classes, self.sensor, **kwargs)

    @staticmethod
    def _flat(folder: Path, confine: Confinement) -> list[Sample]:
        samples = []
        lines = (folder / "labels.txt").read_text().splitlines()
        for n, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or not 0 <= int(parts[1]) <= 9:
                raise InputError(f"{folder / 'labels.txt'}:{n}: expected 'sample_id<TAB>digit', got {line!r}")
            f = next(
                (folder / f"{parts[0]}{ext}" for ext in (".bs2", ".bin") if (folder / f"{parts[0]}{ext}").is_file()),
                None,
            )
            if f is None:
                raise FileNotFoundError(f"{folder / 'labels.txt'}:{n}: no {parts[0]}.bs2 or {parts[0]}.bin in {folder}")
            samples.append(Sample(str(confine.check(f, f"{folder / 'labels.txt'}:{n}")), int(parts[1])))
        return samples
