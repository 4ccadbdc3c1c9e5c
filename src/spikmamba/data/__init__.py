"""Datasets over event recordings and images (each over an already-downloaded folder; nothing is
ever downloaded) and ``SynthActions``, which needs no download at all."""
from .base import DatasetLayoutError, EventDataset, Sample, SampleError
from .event_representation import EventRepresentation
from .folder import PAF, EFAction, EventFolder, NCaltech101
from .gesture import GESTURE_CLASSES, DVSGesture, DVSGestureClips
from .hardvs import HARDVS
from .images import CIFAR10, CIFAR100, IMAGE_DATASETS, ImageFolderSplits, ImageRepresentation, MiniImageNet
from .nmnist import NMNIST
from .sampled import SampledFrames
from .splits import stratified_split
from .synthetic import CLASSES as SYNTH_CLASSES
from .synthetic import SynthActions
from .video import (
    HMDB51,
    UCF101,
    VIDEO_DATASETS,
    Kinetics400,
    VideoClips,
    VideoFolder,
    VideoReadError,
    VideoRepresentation,
)

#: Name -> dataset class, for configs and ``spikmamba datasets``.
DATASETS = {
    "nmnist": NMNIST, "ncaltech101": NCaltech101, "dvsgesture": DVSGesture, "dvsgesture-clips": DVSGestureClips,
    "hardvs": HARDVS, "paf": PAF, "efaction": EFAction, "event-folder": EventFolder, "sampled-frames": SampledFrames,
    **IMAGE_DATASETS, **VIDEO_DATASETS,
}

__all__ = [
    "HMDB51",
    "Kinetics400",
    "UCF101",
    "VideoClips",
    "VideoFolder",
    "VideoReadError",
    "VideoRepresentation",
    "CIFAR10",
    "CIFAR100",
    "ImageFolderSplits",
    "ImageRepresentation",
    "MiniImageNet",
    "DATASETS",
    "DVSGesture",
    "DVSGestureClips",
    "DatasetLayoutError",
    "EFAction",
    "EventDataset",
    "EventFolder",
    "SampleError",
    "EventRepresentation",
    "GESTURE_CLASSES",
    "HARDVS",
    "NCaltech101",
    "NMNIST",
    "PAF",
    "SYNTH_CLASSES",
    "Sample",
    "SampledFrames",
    "SynthActions",
    "stratified_split",
]
