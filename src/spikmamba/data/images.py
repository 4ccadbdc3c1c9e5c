"""Static-image datasets (CIFAR-10/100, Mini-ImageNet) for the image models (SVMamba).

Images are kept as ``uint8 [3, H, W]`` tensors: a quarter of the memory of floats, and the
model normalises them itself, so training, ``test`` and ``predict`` share one preprocessing.

* CIFAR: the official "python version" folders (``cifar-10-batches-py``,
  ``cifar-100-python``). Their batches are pickles; they are read with an unpickler that only
  accepts plain containers and NumPy arrays, so a tampered file cannot run code.
* Mini-ImageNet: an image-folder tree ``root/{train,val,test}/<class>/<image>``; images are
  resized to ``size`` (84 by default, the usual Mini-ImageNet resolution).
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from .base import Confinement, DatasetLayoutError, SampleError, config_root
from .folder import class_sort_key

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays; refuses every other global."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy.core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays and lists")


def load_cifar_batch(path: Path) -> dict:
    """One CIFAR pickle as a dict with ``str`` keys; a clear error for a missing or corrupt file."""
    try:
        raw = path.read_bytes()
        d = _ArraysOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as err:  # any unpickling failure is a corrupt file
        raise InputError(f"{path}: not a readable CIFAR batch ({type(err).__name__}: {err})") from None
    if not isinstance(d, dict):
        raise InputError(f"{path}: not a CIFAR batch (holds a {type(d).__name__}, expected a dict)")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


class RGBInput:
    """What image and video representations share: 3 channels, ``frames`` time steps."""

    frames: int

    @property
    def channels(self) -> int:
        return 3

    @property
    def time_steps(self) -> int:
        return self.frames


@dataclass(frozen=True)
class ImageRepresentation(RGBInput):
    """How an image file becomes model input: RGB, resized to ``size`` x ``size`` (0 = keep),
    ``uint8 [3, H, W]``. ``frames`` is the number of direct-encoding steps the model repeats
    the image over. Stored in checkpoints so ``predict`` prepares files the same way."""

    size: int = 0
    frames: int = 4
    kind: str = "image"

    def from_pil(self, img) -> torch.Tensor:
        from PIL import Image

        img = img.convert("RGB")
        if self.size and img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.BICUBIC)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()

    def load(self, path) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                return self.from_pil(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise InputError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None


class ImageDataset(Dataset):
    """``dataset[i] -> (uint8 [3, H, W] tensor, label)``; ``images`` may be in memory or paths."""

    modality = "image"
    name = "images"
    layout = ""
    default_size = 0

    def __init__(self, images, targets, classes, size: int = 0):
        self.images, self._targets, self.classes = images, list(targets), list(classes)
        self.representation = ImageRepresentation(size=size)

    @classmethod
    def from_config(cls, cfg, split: str) -> ImageDataset:
        kwargs = {"allow_outside_root": cfg.data.allow_outside_root} if issubclass(cls, ImageFolderSplits) else {}
        ds = cls(config_root(cfg, split, cls.name), split, size=cfg.data.resolution, **kwargs)
        if not ds.sensor_size[0]:
            raise InputError(f"{cls.name} images come in many sizes: set data.resolution=<pixels>")
        ds.representation = ImageRepresentation(size=ds.sensor_size[0], frames=cfg.data.frames)
        return ds

    def configured(self, representation=None, transform=None, pre_transform=None, cache_dir=None) -> ImageDataset:
        if transform is not None or pre_transform is not None:
            raise InputError(f"{self.name}: event transforms do not apply to images")
        return self

    def source(self, index: int) -> str:
        item = self.images[index]
        return str(item) if isinstance(item, (str, Path)) else f"{self.name} image {index}"

    def sample(self, index: int, rng=None):
        try:
            return self[index]
        except Exception as err:
            raise SampleError(f"{self.name}: image {index} ({self.source(index)}, label {self._targets[index]}) "
                              f"failed: {type(err).__name__}: {err}") from err

    @property
    def targets(self) -> list[int]:
        return self._targets

    @property
    def sensor_size(self) -> tuple[int, int]:
        size = self.representation.size or self.default_size
        return (size, size)

    def __len__(self) -> int:
        return len(self._targets)

    def __getitem__(self, index: int):
        item = self.images[index]
        if isinstance(item, (str, Path)):
            x = self.representation.load(item)
        elif self.representation.size and tuple(item.shape[-2:]) != (self.representation.size,) * 2:
            # resized through PIL like image files, so training (arrays) and predict (files) agree
            from PIL import Image

            x = self.representation.from_pil(Image.fromarray(np.ascontiguousarray(item.transpose(1, 2, 0))))
        else:
            x = torch.from_numpy(np.ascontiguousarray(item))
        return x, self._targets[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {len(self.classes)} classes)"


class _CIFAR(ImageDataset):
    folder = ""
    train_files: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()
    meta_file, names_key, labels_key = "", "", ""
    default_size = 32

    def __init__(self, root, split: str = "train", size: int = 0):
        root = Path(root)
        base = root if (root / self.meta_file).is_file() else root / self.folder
        if split not in ("train", "test"):
            raise InputError(f"{type(self).__name__}: split must be 'train' or 'test', got {split!r}")
        files = self.train_files if split == "train" else self.test_files
        missing = [f for f in (self.meta_file, *files) if not (base / f).is_file()]
        if missing:
            raise DatasetLayoutError(
                type(self).__name__, root, f"missing {', '.join(missing)} under {base}", self.layout
            )
        classes = [
            c.decode() if isinstance(c, bytes) else str(c)
            for c in load_cifar_batch(base / self.meta_file)[self.names_key]
        ]
        data, labels = [], []
        for f in files:
            batch = load_cifar_batch(base / f)
            try:
                x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = [int(v) for v in batch[self.labels_key]]
            except (KeyError, ValueError) as err:
                raise InputError(f"{base / f}: malformed CIFAR batch ({type(err).__name__}: {err})") from None
            if len(x) != len(y):
                raise InputError(f"{base / f}: {len(x)} images but {len(y)} labels")
            data.append(x)
            labels += y
        if labels and not 0 <= min(labels) <= max(labels) < len(classes):
            raise InputError(f"{base}: labels outside 0..{len(classes) - 1}")
        super().__init__(np.concatenate(data) if data else np.zeros((0, 3, 32, 32), np.uint8), labels, classes, size)


class CIFAR10(_CIFAR):
    name = "cifar10"
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    meta_file, names_key, labels_key = "batches.meta", "label_names", "labels"
    layout = """
root/                      (or root = the cifar-10-batches-py folder itself)
  cifar-10-batches-py/  batches.meta  data_batch_1 ... data_batch_5  test_batch
(the "CIFAR-10 python version" archive from https://www.cs.toronto.edu/~kriz/cifar.html, unpacked)
"""


class CIFAR100(_CIFAR):
    name = "cifar100"
    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    meta_file, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    layout = """
root/                      (or root = the cifar-100-python folder itself)
  cifar-100-python/  meta  train  test
(the "CIFAR-100 python version" archive, unpacked; the 100 fine labels are used)
"""


class ImageFolderSplits(ImageDataset):
    """``root/<split>/<class>/<image>``; classes from the train split's folders, in natural order."""

    name = "image-folder"
    default_size = 0
    layout = """
root/
  train/  <class_a>/ img1.jpg ...   <class_b>/ ...
  val/    <class_a>/ ...            (optional)
  test/   <class_a>/ ...
(image files: png, jpg, jpeg, bmp, webp, tif)
"""

    def __init__(self, root, split: str = "train", size: int = 0, allow_outside_root: bool = False):
        root = Path(root)
        confine = Confinement(root, allow_outside_root)
        folder = root / split
        if not folder.is_dir():
            raise DatasetLayoutError(type(self).__name__, root, f"no {split}/ folder", self.layout)
        class_source = root / "train" if (root / "train").is_dir() else folder
        classes = sorted((d.name for d in class_source.iterdir() if d.is_dir() and not d.name.startswith(".")),
                         key=class_sort_key)
        if not classes:
            raise DatasetLayoutError(type(self).__name__, root, f"no class folders in {class_source}", self.layout)
        paths, labels = [], []
        for label, c in enumerate(classes):
            d = folder / c
            if not d.is_dir():
                continue
            files = sorted(confine.check(f, str(d)) for f in d.iterdir() if f.is_file()
                           and f.suffix.lower() in IMAGE_EXTENSIONS)
            paths += files
            labels += [label] * len(files)
        unknown = sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name not in classes)
        if unknown:
            raise DatasetLayoutError(type(self).__name__, root, f"{split}/ has classes not in train/: {unknown[:5]}",
                                     self.layout)
        if not paths:
            raise DatasetLayoutError(type(self).__name__, root, f"no images under {folder}", self.layout)
        super().__init__(paths, labels, classes, size or self.default_size)


class MiniImageNet(ImageFolderSplits):
    name = "miniimagenet"
    default_size = 84
    layout = (
        ImageFolderSplits.layout.rstrip()
        + "\n(Mini-ImageNet: 100 classes; images resized to 84x84 unless size= says otherwise)\n"
    )


IMAGE_DATASETS = {
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "miniimagenet": MiniImageNet,
    "image-folder": ImageFolderSplits,
}
