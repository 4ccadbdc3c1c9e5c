"""Event data: the event type, file I/O, representations, transforms and the DVS simulator."""
from .afe import ToAFE, to_afe_frames
from .io import EventFormatError, Recording, read_events, write_events
from .representations import ToFrame, to_frames
from .simulator import SimulatorConfig, simulate_events
from .transforms import (
                         CenterCrop,
                         Compose,
                         Denoise,
                         Downsample,
                         DropEvent,
                         RandomCrop,
                         RandomFlip,
                         RefractoryPeriod,
                         TimeJitter,
                         TimeShift,
                         TimeSlice,
)
from .types import EVENT_DTYPE, check_events, make_events
from .voxel import ToVoxelGrid, to_count_image, to_voxel_grid

__all__ = [
    "EVENT_DTYPE", "CenterCrop", "Compose", "Denoise", "Downsample", "DropEvent", "EventFormatError", "RandomCrop",
    "RandomFlip", "Recording", "RefractoryPeriod", "SimulatorConfig", "TimeJitter", "TimeShift", "TimeSlice", "ToAFE",
    "ToFrame", "ToVoxelGrid", "check_events", "make_events", "read_events", "simulate_events", "to_afe_frames",
    "to_count_image", "to_frames", "to_voxel_grid", "write_events",
]
