"""RGB video datasets for ReSpike: UCF-101, HMDB-51 (official split files) and Kinetics-400 (CSV).

Videos are decoded with PyAV (``pip install av``, FFmpeg inside the wheel), one at a time when a
clip of them is asked for (in the DataLoader's workers during training): nothing is decoded when
a dataset is made. Each video gives ``clips_per_video`` clips of ``frames`` frames taken every
``frame_stride``-th frame, spread evenly over the video, resized to ``size`` x ``size``;
``dataset[i] -> (uint8 [F, 3, S, S], label)`` and ``dataset.groups[i]`` is the index of the
video clip ``i`` came from, so accuracy can be reported per clip and per video. A video shorter
than one clip repeats its last frame; one shorter than ``clips_per_video`` clips gives its one
clip that many times (the clip count of a video is known before it is decoded). A video that
cannot be decoded raises :class:`~spikmamba.data.SampleError` naming the file; training with
``data.skip_unreadable=true`` leaves such samples out and lists them.
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import InputError, MissingDependency, SpikmambaError
from .base import Confinement, DatasetLayoutError, SampleError, config_root
from .folder import class_sort_key
from .images import RGBInput

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm")


class VideoReadError(SpikmambaError, ValueError):
    """A video file that cannot be decoded; names the file."""


def read_video(path) -> np.ndarray:
    """All frames of ``path`` as ``uint8 [N, H, W, 3]`` (RGB)."""
    try:
        import av
    except ImportError:
        raise MissingDependency("reading videos needs PyAV: pip install av (or pip install spikmamba[video])") from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"{path}: no video stream")
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except VideoReadError:
        raise
    except FileNotFoundError:
        raise
    except Exception as err:  # av.error.InvalidDataError and friends, truncated files
        raise VideoReadError(f"{path}: cannot decode video ({type(err).__name__}: {err})") from None
    if not frames:
        raise VideoReadError(f"{path}: the video has no frames")
    return np.stack(frames)


@dataclass(frozen=True)
class VideoRepresentation(RGBInput):
    """How a video becomes clips; stored in checkpoints so ``predict`` cuts new videos the same way."""

    frames: int = 16
    frame_stride: int = 2
    size: int = 112
    clips_per_video: int = 1
    kind: str = "video"

    def clip_starts(self, n: int) -> list[int]:
        span = (self.frames - 1) * self.frame_stride + 1
        if n <= span or self.clips_per_video == 1:
            return [max(0, (n - span) // 2)]
        return np.linspace(0, n - span, self.clips_per_video).round().astype(int).tolist()

    def clip(self, video: np.ndarray, start: int) -> torch.Tensor:
        """``uint8 [N, H, W, 3]`` -> the clip from frame ``start``, ``uint8 [F, 3, size, size]``;
        past the end the last frame repeats."""
        idx = np.minimum(start + np.arange(self.frames) * self.frame_stride, len(video) - 1)
        clip = torch.from_numpy(video[idx]).permute(0, 3, 1, 2).float()
        clip = F.interpolate(clip, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return clip.round().clamp(0, 255).to(torch.uint8)

    def clips(self, video: np.ndarray) -> torch.Tensor:
        """``uint8 [N, H, W, 3]`` -> ``uint8 [K, F, 3, size, size]``, its clips (one for a short video)."""
        return torch.stack([self.clip(video, start) for start in self.clip_starts(len(video))])

    def load(self, path) -> torch.Tensor:
        return self.clips(read_video(path))


class VideoClips(Dataset):
    """Clips of a list of ``(path, label)`` videos (see the module docstring)."""

    modality = "video"
    name = "videos"
    layout = ""

    def __init__(self, videos: list[tuple[Path, int]], classes, representation: VideoRepresentation | None = None,
                 root=None, allow_outside_root: bool = False):
        if root is not None:  # list files and links stay inside the dataset folder (see Confinement)
            confine = Confinement(root, allow_outside_root)
            videos = [(confine.check(path, f"{self.name} under {root}"), label) for path, label in videos]
        self.videos, self.classes = list(videos), list(classes)
        self.representation = representation or VideoRepresentation()
        self._last = (None, None)  # the last decoded video: its clips are often asked for together

    @classmethod
    def from_config(cls, cfg, split: str) -> VideoClips:
        return cls(config_root(cfg, split, cls.name), split, **cls._config_kwargs(cfg))

    @staticmethod
    def _config_kwargs(cfg) -> dict:
        data = cfg.data
        return dict(representation=VideoRepresentation(frames=data.frames, frame_stride=data.video.frame_stride,
                                                       size=data.resolution or 112,
                                                       clips_per_video=data.video.clips_per_video),
                    allow_outside_root=data.allow_outside_root)

    def configured(self, representation=None, transform=None, pre_transform=None, cache_dir=None) -> VideoClips:
        if transform is not None or pre_transform is not None:
            raise InputError(f"{self.name}: event transforms do not apply to RGB video")
        return self

    @property
    def clips_per_video(self) -> int:
        return self.representation.clips_per_video

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.videos for _ in range(self.clips_per_video)]

    @property
    def groups(self) -> list[int]:
        return [v for v in range(len(self.videos)) for _ in range(self.clips_per_video)]

    @property
    def sensor_size(self) -> tuple[int, int]:
        return (self.representation.size, self.representation.size)

    def source(self, index: int) -> str:
        return str(self.videos[index // self.clips_per_video][0])

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    def _decoded(self, path) -> np.ndarray:
        if self._last[0] != path:
            self._last = (None, None)
            self._last = (path, read_video(path))
        return self._last[1]

    def sample(self, index: int, rng=None):
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} clips")
        v, k = divmod(index, self.clips_per_video)
        path, label = self.videos[v]
        rep = self.representation
        try:
            video = self._decoded(path)
            starts = rep.clip_starts(len(video))
            clip = rep.clip(video, starts[min(k, len(starts) - 1)])
        except Exception as err:
            raise SampleError(f"{self.name}: clip {index} (video {path}, clip {k + 1} of {self.clips_per_video}, "
                              f"label {label}) failed: {type(err).__name__}: {err} (training with "
                              f"data.skip_unreadable=true leaves unreadable videos out)") from err
        return clip, label

    def __getitem__(self, index: int):
        return self.sample(index)


def _class_folders(root: Path) -> list[str]:
    return sorted((d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                   and any(f.suffix.lower() in VIDEO_EXTENSIONS for f in d.iterdir())), key=class_sort_key)


class UCF101(VideoClips):
    name = "ucf101"
    layout = """
root/
  ApplyEyeMakeup/  v_ApplyEyeMakeup_g01_c01.avi ...      (101 class folders of .avi)
  ...
  ucfTrainTestlist/  classInd.txt  trainlist01.txt  testlist01.txt  (.. 02, 03)
(the official UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip, unpacked into root)
"""

    @classmethod
    def _config_kwargs(cls, cfg) -> dict:
        return {**VideoClips._config_kwargs(cfg), "fold": cfg.data.video.fold}

    def __init__(
        self, root, split: str = "train", fold: int = 1, representation=None, allow_outside_root: bool = False
    ):
        root = Path(root)
        lists = root / "ucfTrainTestlist"
        list_file = lists / f"{'trainlist' if split == 'train' else 'testlist'}{fold:02d}.txt"
        if not (lists / "classInd.txt").is_file() or not list_file.is_file():
            raise DatasetLayoutError("UCF101", root, f"missing ucfTrainTestlist/classInd.txt or {list_file.name}",
                                     self.layout)
        classes = {}
        for line in (lists / "classInd.txt").read_text().split("\n"):
            if line.strip():
                idx, name = line.split()
                classes[name] = int(idx) - 1
        names = [n for n, _ in sorted(classes.items(), key=lambda kv: kv[1])]
        videos = []
        for line in list_file.read_text().split("\n"):
            if not line.strip():
                continue
            rel = line.split()[0]
            cls = rel.split("/")[0]
            if cls not in classes:
                raise InputError(f"{list_file}: class {cls!r} is not in classInd.txt")
            path = root / rel
            if not path.is_file():
                raise DatasetLayoutError("UCF101", root, f"{list_file.name} lists {rel}, which is missing", self.layout)
            videos.append((path, classes[cls]))
        super().__init__(videos, names, representation, root, allow_outside_root)


class HMDB51(VideoClips):
    name = "hmdb51"
    layout = """
root/
  brush_hair/  <video>.avi ...                              (51 class folders of .avi)
  ...
  testTrainMulti_7030_splits/  brush_hair_test_split1.txt ... (lines "<video>.avi 1|2|0": 1 train, 2 test, 0 unused)
(the official hmdb51_org.rar and test_train_splits.rar, unpacked into root)
"""

    @classmethod
    def _config_kwargs(cls, cfg) -> dict:
        return {**VideoClips._config_kwargs(cfg), "fold": cfg.data.video.fold}

    def __init__(
        self, root, split: str = "train", fold: int = 1, representation=None, allow_outside_root: bool = False
    ):
        root = Path(root)
        splits = root / "testTrainMulti_7030_splits"
        if not splits.is_dir():
            raise DatasetLayoutError("HMDB51", root, "missing testTrainMulti_7030_splits/", self.layout)
        files = sorted(splits.glob(f"*_test_split{fold}.txt"))
        if not files:
            raise DatasetLayoutError("HMDB51", root, f"no *_test_split{fold}.txt files", self.layout)
        names = sorted((f.name[: -len(f"_test_split{fold}.txt")] for f in files), key=class_sort_key)
        want = "1" if split == "train" else "2"
        videos = []
        for label, cls in enumerate(names):
            for line in (splits / f"{cls}_test_split{fold}.txt").read_text().split("\n"):
                parts = line.split()
                if len(parts) == 2 and parts[1] == want:
                    path = root / cls / parts[0]
                    if not path.is_file():
                        raise DatasetLayoutError("HMDB51", root, f"split file lists {cls}/{parts[0]}, which is missing",
                                                 self.layout)
                    videos.append((path, label))
        super().__init__(videos, names, representation, root, allow_outside_root)


class Kinetics400(VideoClips):
    name = "kinetics400"
    layout = """
root/
  train.csv  val.csv  [test.csv]      columns: label, youtube_id, time_start, time_end, split
  train/  [<label>/]<youtube_id>_<time_start:06d>_<time_end:06d>.mp4 ...
  val/    ...
(the official annotation CSVs; videos as downloaded and trimmed by the usual scripts)
Without a test.csv, the test split is the validation set (the test labels were never public).
"""

    def __init__(self, root, split: str = "train", representation=None, allow_outside_root: bool = False):
        root = Path(root)
        split = "val" if split == "test" and not (root / "test.csv").is_file() else split
        table = root / f"{split}.csv"
        folder = root / split
        if not table.is_file() or not folder.is_dir():
            raise DatasetLayoutError("Kinetics400", root, f"missing {split}.csv or {split}/", self.layout)
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and not {"label", "youtube_id", "time_start", "time_end"} <= set(rows[0]):
            raise InputError(f"{table}: expected columns label, youtube_id, time_start, time_end; got {list(rows[0])}")
        present = {p.stem: p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS}
        names = sorted({r["label"] for r in rows})
        index = {n: i for i, n in enumerate(names)}
        videos, missing = [], 0
        for r in rows:
            stem = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
            if stem in present:
                videos.append((present[stem], index[r["label"]]))
            else:
                missing += 1
        if missing:  # Kinetics is never complete (videos vanish from YouTube): say how many, never hide it
            warnings.warn(f"Kinetics400 {split}: {missing} of {len(rows)} annotated videos are not in {folder}",
                          stacklevel=2)
        if not videos:
            raise DatasetLayoutError(
                "Kinetics400", root, f"none of the {len(rows)} videos in {table.name} are in {folder}", self.layout
            )
        super().__init__(videos, names, representation, root, allow_outside_root)


class VideoFolder(VideoClips):
    name = "video-folder"
    layout = """
root/
  <class_a>/  clip1.mp4  clip2.avi ...
  <class_b>/  ...
  [train.txt, test.txt]   split lists: one path per line, relative to root. Without them
                          the train split is every video, and asking for another split is an error
"""

    def __init__(self, root, split: str | None = None, representation=None, allow_outside_root: bool = False):
        root = Path(root)
        if not root.is_dir():
            raise DatasetLayoutError("VideoFolder", root, "dataset folder not found", self.layout)
        names = _class_folders(root)
        if not names:
            raise DatasetLayoutError("VideoFolder", root, "no class folders holding videos", self.layout)
        index = {n: i for i, n in enumerate(names)}
        listing = root / f"{split}.txt" if split else None
        if listing is not None and not listing.is_file() and split != "train":
            raise DatasetLayoutError("VideoFolder", root, f"no {split}.txt: list the {split} videos there, or the "
                                     f"same videos would serve for training and {split}", self.layout)
        if listing is not None and listing.is_file():
            rels = [ln.strip() for ln in listing.read_text().split("\n") if ln.strip()]
            videos = [(root / r, index[Path(r).parts[0]]) for r in rels]
        else:
            videos = [(f, index[n]) for n in names for f in sorted((root / n).iterdir())
                      if f.suffix.lower() in VIDEO_EXTENSIONS]
        super().__init__(videos, names, representation, root, allow_outside_root)


VIDEO_DATASETS = {"ucf101": UCF101, "hmdb51": HMDB51, "kinetics400": Kinetics400, "video-folder": VideoFolder}
