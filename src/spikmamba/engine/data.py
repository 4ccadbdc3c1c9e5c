"""The tensors a config trains and tests on, and the event -> tensor pipeline saved with a model.

Both the built-in ``SynthActions`` and recorded datasets go through one ``EventRepresentation``;
its settings are stored in every checkpoint, so ``spikmamba predict`` turns a new event file into
exactly the tensor the model was trained on. Data are turned into tensors once, up front
(datasets here fit in memory); the training loop then only indexes them.
"""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import torch
from tqdm import tqdm

from ..data.images import ImageRepresentation
from ..data.video import VideoRepresentation
from ..data.representation import EventRepresentation
from ..data.synthetic import SynthActions
from .config import TrainConfig


def representation_for(cfg: TrainConfig, sensor_size) -> EventRepresentation:
    W, H = sensor_size
    res = (cfg.resolution, cfg.resolution) if cfg.resolution else (W, H)
    if res[0] != res[1]:
        raise ValueError(f"{cfg.data_name} has a {W}x{H} sensor; the models take square input: set resolution=<pixels>")
    return EventRepresentation((W, H), kind=cfg.representation, frames=cfg.frames, split_by=cfg.split_by, resolution=res,
                               fine_steps=cfg.adaptive_fine_steps if cfg.representation == "adaptive" else 1)


def representation_to_dict(rep) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(rep).items()}


def representation_from_dict(d: dict):
    """An :class:`EventRepresentation`, or the image / video representation its ``kind`` names."""
    cls = {"image": ImageRepresentation, "video": VideoRepresentation}.get(d.get("kind"), EventRepresentation)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def geometry_of(x: torch.Tensor, rep) -> dict:
    """The model's input geometry: ``x`` is ``[N, T, C, H, W]`` (events) or ``[N, C, H, W]`` (images)."""
    return dict(in_chans=rep.channels, img_size=int(x.shape[-1]), num_frames=rep.time_steps)


class Split(tuple):
    """``(x, y, classes, representation)``, plus ``groups``: for video data the index of the video
    each clip came from (accuracy per video averages its clips), else None."""

    def __new__(cls, x, y, classes, representation, groups=None):
        self = super().__new__(cls, (x, y, classes, representation))
        self.groups = None if groups is None else torch.as_tensor(groups)
        return self


def _stack(dataset, desc: str, progress: bool) -> torch.Tensor:
    return torch.stack([torch.as_tensor(dataset[i][0]) for i in tqdm(range(len(dataset)), desc=desc, disable=not progress,
                                                                      leave=False)])


def _synth(cfg: TrainConfig, split: str, n: int):
    size = (cfg.sensor_size, cfg.sensor_size)
    rep = representation_for(cfg, size)
    ds = SynthActions(split, num_samples=n, sensor_size=size, seed=cfg.seed, cache=False, transform=rep)
    return Split(_stack(ds, f"simulating {split} events", cfg.progress), torch.tensor(ds.targets), list(ds.classes), rep)


def _recorded(cfg: TrainConfig, root: str, split: str):
    from ..data import DATASETS

    if cfg.data_name not in DATASETS:
        raise ValueError(f"unknown data_name {cfg.data_name!r}; choose 'synth' or one of {', '.join(DATASETS)}")
    if not root:
        raise ValueError(f"data_name={cfg.data_name!r} needs data_root=<folder> (see `spikmamba datasets {cfg.data_name}`)")
    cls = DATASETS[cfg.data_name]
    modality = getattr(cls, "modality", "events")
    desc = f"reading {cfg.data_name} {split}"
    if modality == "image":
        ds = cls(root, split, size=cfg.resolution)
        if not ds.sensor_size[0]:
            raise ValueError(f"{cfg.data_name} images come in many sizes: set resolution=<pixels>")
        ds.representation = ImageRepresentation(size=ds.sensor_size[0], frames=cfg.frames)
        return Split(_stack(ds, desc, cfg.progress), torch.tensor(ds.targets), list(ds.classes), ds.representation)
    if modality == "video":
        rep = VideoRepresentation(frames=cfg.frames, frame_stride=cfg.frame_stride, size=cfg.resolution or 112,
                                  clips_per_video=cfg.clips_per_video)
        kwargs = dict(representation=rep, skip_unreadable=cfg.skip_unreadable)
        if "fold" in inspect.signature(cls).parameters:
            kwargs["fold"] = cfg.fold
        ds = cls(root, split, **kwargs)
        clips, targets, groups = ds.tensors()  # decodes every video once
        return Split(clips, torch.tensor(targets), list(ds.classes), rep, groups)
    ds = cls(root, split) if "split" in inspect.signature(cls).parameters else cls(root)
    ds.representation = representation_for(cfg, ds.sensor_size)
    return Split(_stack(ds, desc, cfg.progress), torch.tensor(ds.targets), list(ds.classes), ds.representation)


def load_split(cfg: TrainConfig, split: str) -> "Split | None":
    """``(x, y, classes, representation)`` (a :class:`Split`) for ``split`` in {'train', 'test'};
    None for a test set the config lacks."""
    if cfg.data_name == "synth":
        return _synth(cfg, split, cfg.num_train if split == "train" else cfg.num_test)
    root = cfg.data_root if split == "train" else cfg.test_root
    if split == "test" and not root:
        return None
    return _recorded(cfg, root, split)


def load_data(cfg: TrainConfig) -> dict:
    """Tensors for train / val (carved from train, stratified, seeded) / test, plus the input geometry."""
    train_split = load_split(cfg, "train")
    x_tr, y_tr, classes, rep = train_split
    test = load_split(cfg, "test")
    geometry = geometry_of(x_tr, rep)
    data = dict(classes=classes, geometry=geometry, representation=rep,
                test=(test[0], test[1]) if test is not None else None,
                test_groups=test.groups if test is not None else None)
    if cfg.val_fraction > 0:
        from ..data import stratified_split

        groups = train_split.groups
        if groups is None:
            tr, va = stratified_split(y_tr.tolist(), cfg.val_fraction, cfg.seed)
        else:  # split whole videos, so no video has clips on both sides
            first = {}
            for i, g in enumerate(groups.tolist()):
                first.setdefault(g, i)
            vids = list(first)
            _, vva = stratified_split([int(y_tr[first[v]]) for v in vids], cfg.val_fraction, cfg.seed)
            in_val = torch.zeros(int(groups.max()) + 1, dtype=torch.bool)
            in_val[[vids[i] for i in vva]] = True
            va = torch.nonzero(in_val[groups]).flatten().tolist()
            tr = torch.nonzero(~in_val[groups]).flatten().tolist()
        data["train"], data["val"] = (x_tr[tr], y_tr[tr]), (x_tr[va], y_tr[va])
    else:
        data["train"], data["val"] = (x_tr, y_tr), None
    return data


def load_input_file(path, rep) -> torch.Tensor:
    """One event, image or video file as the model input, prepared the way ``rep`` prepared the
    training data (a video gives ``[clips, F, 3, S, S]``: its clips, to be averaged)."""
    if isinstance(rep, (ImageRepresentation, VideoRepresentation)):
        return rep.load(path)
    return torch.from_numpy(load_event_file(path, rep))


def load_event_file(path, rep: EventRepresentation) -> np.ndarray:
    """One event file as the model input ``[T, C, H, W]``, made the way ``rep`` made the training data.

    A file that states its own sensor size is represented at that size, then resized to the
    trained resolution; a file that does not (npy/npz) must fit the trained sensor."""
    from ..events.io import read_events

    rec = read_events(path)
    events = rec.events
    sensor = tuple(rec.sensor_size) if rec.sensor_size else tuple(rep.sensor_size)
    if len(events) and (int(events["x"].max()) >= sensor[0] or int(events["y"].max()) >= sensor[1]):
        raise ValueError(f"{path}: events reach x={int(events['x'].max())}, y={int(events['y'].max())}, beyond the "
                         f"{sensor[0]}x{sensor[1]} sensor the model was trained on; store the sensor size in the file "
                         f"(e.g. npz with a 'sensor_size' entry) or crop the events")
    out = rep.resolution or rep.sensor_size
    file_rep = dataclasses.replace(rep, sensor_size=sensor, resolution=tuple(out))
    return file_rep(events)
