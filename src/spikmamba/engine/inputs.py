"""What a config trains and tests on: datasets, their pipelines, and the input saved with a model.

Every dataset of ``spikmamba datasets`` (and the built-in ``synth``) is made one way,
``DATASETS[name].from_config(cfg, split)``, and read through the DataLoader path of
:mod:`.loader`. Event data go through the config's ``transforms`` (the training form on the
training samples, the evaluation form, deterministic, everywhere else) and one
``EventRepresentation``; both are stored with the model (the representation in the checkpoint,
the transforms in its config), so ``spikmamba predict`` turns a new file into exactly the
tensor the model was evaluated on.

The one deliberate exception to streaming is ``synth``: its clips are generated, not read, and
without random transforms they are made once, up front (in parallel), and kept in memory as
tensors (100 MB for the default 3,000 clips), which is faster than simulating every clip again
every epoch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from tqdm import tqdm

from ..data.event_representation import EventRepresentation
from ..data.images import ImageRepresentation
from ..data.sampled import SampledFramesRepresentation
from ..data.video import VideoRepresentation
from ..errors import InputError
from ..events.transforms import Compose, transforms_from_config
from ..events.types import check_allocation
from . import distributed as D
from .augment import augment_batch
from .config import TrainConfig
from .device_inputs import DeferShift, represent_on_device
from .loader import SampleView, SequentialBatches, make_loader
from .stop import Interrupted, StopFlag

_REPRESENTATIONS = {"image": ImageRepresentation, "video": VideoRepresentation,
                    "sampled-frames": SampledFramesRepresentation}


def representation_for(cfg: TrainConfig, sensor_size) -> EventRepresentation:
    W, H = sensor_size
    res = (cfg.data.resolution, cfg.data.resolution) if cfg.data.resolution else (W, H)
    if res[0] != res[1]:
        raise InputError(
            f"{cfg.data.name} gives a {W}x{H} sensor; the models take square input: set data.resolution=<pixels>"
        )
    return EventRepresentation(
        (W, H),
        kind=cfg.data.representation,
        frames=cfg.data.frames,
        split_by=cfg.data.split_by,
        resolution=res,
        fine_steps=cfg.data.adaptive.fine_steps if cfg.data.representation == "adaptive" else 1,
    )


def representation_to_dict(rep) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(rep).items()}


def representation_from_dict(d: dict):
    """An :class:`EventRepresentation`, or the image / video / sampled-frames representation its ``kind`` names."""
    cls = _REPRESENTATIONS.get(d.get("kind"), EventRepresentation)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def geometry_of(rep) -> dict:
    """The model's input geometry for a representation (``in_chans``, ``img_size``, ``num_frames``)."""
    if isinstance(rep, EventRepresentation):
        size = (rep.resolution or rep.sensor_size)[0]
    else:
        size = rep.size
    return dict(in_chans=rep.channels, img_size=int(size), num_frames=rep.time_steps)


def input_spec(rep) -> tuple[tuple[int, ...], torch.dtype]:
    """Shape and dtype of one model input (an empty batch of it keeps every process of a
    data-parallel run in step when its share of a batch is empty)."""
    g = geometry_of(rep)
    if isinstance(rep, ImageRepresentation):
        return (3, g["img_size"], g["img_size"]), torch.uint8
    dtype = torch.uint8 if isinstance(rep, VideoRepresentation) else torch.float32
    return (g["num_frames"], g["in_chans"], g["img_size"], g["img_size"]), dtype


def build_dataset(cfg: TrainConfig, split: str):
    """The dataset ``cfg`` names for ``split`` ('train' or 'test'), before its pipeline is set."""
    from ..data import DATASETS
    from ..data.synthetic import SynthActions

    if cfg.data.name == "synth":
        return SynthActions.from_config(cfg, split)
    if cfg.data.name not in DATASETS:
        raise InputError(f"unknown data.name {cfg.data.name!r}; choose 'synth' or one of {', '.join(DATASETS)}")
    return DATASETS[cfg.data.name].from_config(cfg, split)


def event_transforms(cfg: TrainConfig, sensor_size) -> tuple[Compose, Compose]:
    """The config's ``transforms``: (training form, evaluation form) for a ``(W, H)`` sensor."""
    train = transforms_from_config(cfg.data.transforms, sensor_size)
    return train, train.eval_form()


@dataclass
class Pipelines:
    """One split's dataset configured twice: for training (random transforms) and for evaluation."""
    train: object
    eval: object
    representation: object


def pipelines(cfg: TrainConfig, ds, on_device: bool = False) -> Pipelines:
    """Set the representation, transforms and cache of ``ds`` (see the module docstring);
    ``on_device``: the datasets stop at the transformed events (the representation is built on
    the model's device, see :mod:`.device_inputs`)."""
    modality = getattr(ds, "modality", "events")
    if modality != "events":
        if cfg.data.transforms:
            raise InputError(f"transforms apply to event data; {cfg.data.name} is {modality}")
        return Pipelines(ds, ds, ds.representation)
    train_t, eval_t = event_transforms(cfg, ds.sensor_size)
    rep = representation_for(cfg, train_t.output_size(ds.sensor_size))
    cache = cfg.data.cache_dir or None
    here = None if on_device else rep
    evaluation = ds.configured(here, pre_transform=eval_t if len(eval_t) else None, cache_dir=cache)
    if train_t.random:
        training = ds.configured(here, transform=train_t, cache_dir=None)  # drawn anew every epoch: nothing to cache
    else:
        training = evaluation
    return Pipelines(training, evaluation, rep)


class InMemory(torch.utils.data.Dataset):
    """Samples made once and kept as tensors (the deliberate exception for generated ``synth`` clips)."""

    def __init__(self, x: torch.Tensor, targets, source):
        self.x, self._targets, self._source = x, list(targets), source

    @property
    def targets(self) -> list[int]:
        return self._targets

    def source(self, index: int) -> str:
        return self._source(index)

    def __len__(self) -> int:
        return len(self._targets)

    def __getitem__(self, index: int):
        return self.x[index], self._targets[index]


def materialise(ds, desc: str, progress: bool, workers: int) -> InMemory:
    """Every sample of ``ds`` once, in parallel worker processes, stacked into one tensor."""
    view = SampleView(ds)
    loader = make_loader(view, SequentialBatches(len(view), 64), workers)
    parts = []
    with StopFlag(doing="the data preparation") as stop:
        for b in tqdm(loader, desc=desc, disable=not progress, leave=False):
            parts.append(b.x)
            if stop.raised:  # between batches: the loader's workers shut down cleanly
                break
        if stop.raised:  # also a press during the last batch: it asked for a stop, not for training
            raise Interrupted(f"stopped while {desc}; nothing was saved")
    return InMemory(torch.cat(parts), ds.targets, ds.source)


def augmenter(cfg: TrainConfig, modality: str):
    """The per-sample tensor augmentation of training (None when there is none)."""
    image = cfg.data.images.augment if modality == "image" else "none"
    if cfg.data.augment_shift <= 0 and image == "none":
        return None
    return partial(_augment_one, shift=cfg.data.augment_shift, image_augment=image)


def _augment_one(x: torch.Tensor, generator: torch.Generator, shift: int, image_augment: str) -> torch.Tensor:
    return augment_batch(x[None], shift, image_augment, generator)[0]


@dataclass
class Data:
    """Everything a run reads: the views a loader wraps, and what the model must know."""
    classes: list
    representation: object
    train: SampleView
    val: SampleView | None
    test: SampleView | None
    in_memory: bool = False
    on_device: bool = False  # the views give events; the representation is built on the model's device

    @property
    def geometry(self) -> dict:
        return geometry_of(self.representation)


def load_data(cfg: TrainConfig, progress: bool = False, env: D.DistEnv | None = None,
              device: torch.device | str = "cpu") -> Data:
    """The train / validation (carved from train, stratified, seeded; whole videos) / test views of
    ``cfg``, for a model on ``device`` (where ``data.represent_on`` may build the inputs)."""
    from ..data import stratified_split
    from ..threads import usable_cpus

    base = build_dataset(cfg, "train")
    modality = getattr(base, "modality", "events")
    random = modality == "events" and event_transforms(cfg, base.sensor_size)[0].random
    in_memory = cfg.data.name == "synth" and not random
    on_device = represent_on_device(cfg.data.represent_on, device, modality, in_memory, cfg.data.cache_dir)
    pipes = pipelines(cfg, base, on_device)
    test_base = build_dataset(cfg, "test") if cfg.data.name == "synth" or cfg.data.test_root else None
    test_eval = pipelines(cfg, test_base, on_device).eval if test_base is not None else None
    if test_base is not None and list(test_base.classes) != list(base.classes):
        raise InputError(f"the test set's classes {list(test_base.classes)[:5]}... differ from the training set's "
                         f"{list(base.classes)[:5]}...; point data.test_root at the same dataset")
    train_ds, eval_ds = pipes.train, pipes.eval
    if in_memory:  # generated clips: made once, in parallel, kept as tensors (see the module docstring)
        workers = max(0, min(usable_cpus() - 1, 4)) if not (env and env.enabled) else 0
        workers = cfg.data.num_workers if cfg.data.num_workers >= 0 else workers
        shown = progress and (env is None or env.is_main)
        train_ds = eval_ds = materialise(train_ds, "simulating train events", shown, workers)
        if test_eval is not None:
            test_eval = materialise(test_eval, "simulating test events", shown, workers)
    targets = list(base.targets)
    train_idx, val_idx = None, None
    if cfg.data.val_fraction > 0:
        groups = getattr(base, "groups", None)
        if groups is None:
            train_idx, val_idx = stratified_split(targets, cfg.data.val_fraction, cfg.run.seed)
        else:  # split whole videos, so no video has clips on both sides
            first = {}
            for i, g in enumerate(groups):
                first.setdefault(g, i)
            vids = list(first)
            _, vva = stratified_split([targets[first[v]] for v in vids], cfg.data.val_fraction, cfg.run.seed)
            held = {vids[i] for i in vva}
            train_idx = [i for i, g in enumerate(groups) if g not in held]
            val_idx = [i for i, g in enumerate(groups) if g in held]
    augment = augmenter(cfg, modality) if not on_device else \
        DeferShift(cfg.data.augment_shift) if cfg.data.augment_shift > 0 else None
    train = SampleView(train_ds, train_idx, cfg.run.seed, augment, cfg.data.skip_unreadable)
    val = SampleView(eval_ds, val_idx, cfg.run.seed, None, cfg.data.skip_unreadable) if val_idx is not None else None
    test = SampleView(test_eval, None, cfg.run.seed, None, cfg.data.skip_unreadable) if test_eval is not None else None
    return Data(list(base.classes), pipes.representation, train, val, test, in_memory, on_device)


def eval_view(cfg: TrainConfig, split: str) -> tuple[SampleView, list, object]:
    """``(view, classes, representation)`` of one split read for evaluation (test, energy)."""
    ds = build_dataset(cfg, split)
    pipes = pipelines(cfg, ds)
    view = SampleView(pipes.eval, None, cfg.run.seed, None, cfg.data.skip_unreadable)
    return view, list(ds.classes), pipes.representation


#: the label of a recording or window without events
EMPTY = "(no events)"


class EmptyRecording(InputError):
    """An event file with no events: labelled ``(no events)`` by predict, never given a class."""


def load_input_file(path, rep, transforms=None, sensor_size=None, event_format=None) -> torch.Tensor:
    """One event, image or video file as the model input, prepared the way ``rep`` (and the
    config's ``transforms``, in their evaluation form) prepared the evaluation data (a video gives
    ``[clips, F, 3, S, S]``: its clips, to be averaged)."""
    if not isinstance(rep, EventRepresentation):
        return rep.load(path)
    return torch.from_numpy(load_event_file(path, rep, transforms, sensor_size, event_format))


def load_event_file(path, rep: EventRepresentation, transforms=None, sensor_size=None,
                    event_format: str | None = None) -> np.ndarray:
    """One event file as the model input ``[T, C, H, W]``, made the way ``rep`` made the evaluation data.

    A file that states its own sensor size is represented at that size (after the transforms),
    then resized to the trained resolution; a file that does not (npy/npz) must fit the trained
    sensor, unless ``sensor_size`` (W, H) states it. ``event_format`` names the file's format
    where its extension and header do not (``--format``)."""
    from ..events.io import read_events

    rec = read_events(path, format=event_format, sensor_size=sensor_size)
    if not len(rec.events):
        raise EmptyRecording(f"{path}: the recording holds no events; there is nothing to classify")
    sensor = tuple(rec.sensor_size) if rec.sensor_size else None
    if transforms and sensor is None:
        raise InputError(f"{path}: does not state its sensor size, which the model's transforms need; "
                         f"store it in the file (e.g. npz with a 'sensor_size' entry)")
    try:
        return prepare_events(rec.events, rep, sensor or tuple(rep.sensor_size), transforms)
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None


def prepare_events(events: np.ndarray, rep: EventRepresentation, sensor, transforms=None) -> np.ndarray:
    """Events of a ``sensor``-sized recording as the model input: the transforms (evaluation form),
    then ``rep`` at that sensor size, resized to the trained resolution."""
    sensor = tuple(sensor)
    if transforms:
        pipeline = transforms_from_config(transforms, sensor).eval_form()
        events = pipeline(events)
        sensor = pipeline.output_size(sensor)
    out = rep.resolution or rep.sensor_size
    at_sensor = dataclasses.replace(rep, sensor_size=sensor, resolution=tuple(out))
    check_allocation(8 * int(np.prod(at_sensor.raw_shape())), f"the input at the {sensor[0]}x{sensor[1]} sensor "
                     f"({at_sensor.time_steps} steps x {at_sensor.channels} channels)",
                     "check --sensor-size or the size the file states")
    try:
        return at_sensor(events)
    except InputError:  # every representation checks the bounds as it goes (one pass, not two more here)
        if len(events) and (int(events["x"].max()) >= sensor[0] or int(events["y"].max()) >= sensor[1]):
            raise InputError(f"events reach x={int(events['x'].max())}, y={int(events['y'].max())}, beyond the "
                             f"{sensor[0]}x{sensor[1]} sensor the model was trained on; give the recording's sensor "
                             f"size (--sensor-size W H), store it in the file (e.g. npz with a 'sensor_size' entry) "
                             f"or crop the events") from None
        raise
