"""DVS128 Gesture (IBM, 11 classes, 128x128): trials cut into their labelled gestures."""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import InputError
from .base import Confinement, DatasetLayoutError, EventDataset, Sample, config_root

GESTURE_CLASSES = [
    "hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise", "right_arm_counter_clockwise",
    "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll", "air_drums", "air_guitar", "other_gestures",
]


class DVSGesture(EventDataset):
    """Each trial ``userXX_<lighting>.aedat`` (AEDAT 3.1) with ``userXX_<lighting>_labels.csv``
    (``class,startTime_usec,endTime_usec``; classes 1-11) gives one sample per labelled row;
    the split comes from ``trials_to_train.txt`` / ``trials_to_test.txt``."""

    name = "dvsgesture"
    layout = """
root/                                (the extracted DvsGesture/ folder)
  trials_to_train.txt  trials_to_test.txt    one .aedat file name per line
  user01_fluorescent.aedat  user01_fluorescent_labels.csv
  user01_fluorescent_led.aedat  user01_fluorescent_led_labels.csv
  ...
"""
    sensor = (128, 128)

    def __init__(self, root, split: str = "train", allow_outside_root: bool = False, **kwargs):
        root = Path(root)
        confine = Confinement(root, allow_outside_root)
        lst = root / f"trials_to_{split}.txt"
        if not lst.is_file():
            raise DatasetLayoutError("DVSGesture", root, f"{lst.name} not found (split {split!r})", self.layout)
        samples = []
        for n, name in enumerate(lst.read_text().split(), 1):
            trial = confine.check(root / name, f"{lst}:{n}")
            labels = confine.check(root / f"{trial.stem}_labels.csv", f"{lst}:{n}")
            if not trial.is_file() or not labels.is_file():
                raise DatasetLayoutError("DVSGesture", root, f"{lst.name}:{n} names {name} but {trial.name} or "
                                                             f"{labels.name} is missing", self.layout)
            with open(labels, newline="") as f:
                for row in csv.DictReader(f):
                    c = int(row["class"])
                    if not 1 <= c <= 11:
                        raise InputError(f"{labels}: class {c} outside 1-11")
                    samples.append(Sample(str(trial), c - 1, (int(row["startTime_usec"]), int(row["endTime_usec"]))))
        self.root = root
        super().__init__(samples, GESTURE_CLASSES, self.sensor, **kwargs)


class DVSGestureClips(EventDataset):
    """Pre-cut gesture clips: a folder of event files and ``labels.csv`` (``file,class_id,class_name``,
    IBM 1-based ids), like ``shared/data/dvsgesture-clips``."""

    name = "dvsgesture-clips"
    layout = """
root/
  labels.csv      header "file,class_id,class_name"; class_id 1-11 as in DVS128 Gesture
  1.bs2 2.bs2 ... (any format read_events reads)
"""
    sensor = (128, 128)

    @classmethod
    def from_config(cls, cfg, split: str) -> DVSGestureClips:
        # one folder per split: data_root, test_root
        return cls(config_root(cfg, split, cls.name), allow_outside_root=cfg.data.allow_outside_root)

    def __init__(self, root, allow_outside_root: bool = False, **kwargs):
        root = Path(root)
        confine = Confinement(root, allow_outside_root)
        labels = root / "labels.csv"
        if not labels.is_file():
            raise DatasetLayoutError("DVSGestureClips", root, "labels.csv not found", self.layout)
        samples = []
        with open(labels, newline="") as f:
            for n, row in enumerate(csv.DictReader(f), 2):
                path = confine.check(root / row["file"], f"{labels}:{n}")
                if not path.is_file():
                    raise FileNotFoundError(f"{labels}:{n}: {row['file']} not found in {root}")
                samples.append(Sample(str(path), int(row["class_id"]) - 1))
        self.root = root
        super().__init__(samples, GESTURE_CLASSES, self.sensor, **kwargs)
