"""Inputs built on the model's device: the workers send events, the device makes the tensors.

With ``data.represent_on=device`` (the default on CUDA, see :func:`represent_on_device`) the
loader workers read, decode and transform a sample's events as always, but stop before the
representation: each sample travels as its event array, and, in training, the random shift it
was dealt. :func:`collate` packs a batch of them into one :class:`DeviceInputs`; on the device,
:func:`model_input` builds the whole batch's frames (voxels, counts, AFE) at once with
:meth:`EventRepresentation.batched` and applies the shifts there.

The random draws are the CPU path's own, from the same per-sample generator in the same order,
so a run takes the same shifts wherever its frames are built.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..errors import InputError
from ..events.batched import EventBatch
from .augment import apply_shifts, shift_offsets


class DeferredSample(NamedTuple):
    """One sample on its way to the device: its events, and its training shift (or None)."""

    events: np.ndarray
    shift: tuple[int, int] | None = None
    max_shift: int = 0


class DeviceInputs(NamedTuple):
    """A batch on its way to the device: the packed events and the shifts ``[B, 2]`` (or None)."""

    events: EventBatch
    shifts: torch.Tensor | None
    max_shift: int

    def to(self, device, non_blocking: bool = False) -> DeviceInputs:
        return self._replace(events=self.events.to(device, non_blocking))  # the shifts are read on the host

    def pin_memory(self) -> DeviceInputs:
        return self._replace(events=self.events.pin_memory())

    def __len__(self) -> int:
        return len(self.events)


class DeferShift:
    """The training augmentation of an event sample whose frames are built later: the shift is
    drawn here, exactly as :func:`~.augment.random_shift` draws it for one sample."""

    def __init__(self, max_shift: int):
        self.max_shift = max_shift

    def __call__(self, events: np.ndarray, generator: torch.Generator) -> DeferredSample:
        shift = tuple(shift_offsets(1, self.max_shift, generator)[0].tolist())
        return DeferredSample(events, shift, self.max_shift)


def is_deferred(x) -> bool:
    """Whether a sample from a dataset is events for the device (not a finished tensor)."""
    return isinstance(x, DeferredSample) or (isinstance(x, np.ndarray) and x.dtype.names is not None)


def collate(samples: list) -> DeviceInputs:
    """One :class:`DeviceInputs` from a batch's event arrays or :class:`DeferredSample` s."""
    samples = [s if isinstance(s, DeferredSample) else DeferredSample(s) for s in samples]
    shifted = {s.shift is not None for s in samples}
    if len(shifted) > 1:
        raise AssertionError("a batch mixes shifted and unshifted samples")
    shifts = torch.tensor([s.shift for s in samples], dtype=torch.int64) if shifted == {True} else None
    return DeviceInputs(EventBatch.pack([s.events for s in samples]), shifts, max(s.max_shift for s in samples))


def model_input(x, representation, device: torch.device) -> torch.Tensor:
    """The model's input for a batch from the loader: a tensor moved to ``device``, or
    :class:`DeviceInputs` built there."""
    if not isinstance(x, DeviceInputs):
        return x.to(device, non_blocking=True)
    out = representation.batched(x.events.to(device, non_blocking=True))
    return apply_shifts(out, x.shifts, x.max_shift) if x.shifts is not None else out


def represent_on_device(choice: str, device: torch.device, modality: str, in_memory: bool, cache_dir: str) -> bool:
    """Whether event representations are built on the model's device (``data.represent_on``):
    ``device`` / ``cpu`` as asked (``device`` with ``data.cache_dir`` is refused by the config's
    checks); ``auto``: on CUDA, for event data read from files, unless a representation cache is
    asked for (the cache holds CPU-built entries)."""
    if choice == "cpu":
        return False
    if choice == "device":
        if modality != "events" or in_memory:
            raise InputError(f"data.represent_on=device builds event representations from the events the workers "
                             f"send; these data are {'kept in memory as tensors' if in_memory else modality}, "
                             f"already built: use data.represent_on=auto or cpu")
        return True
    return torch.device(device).type == "cuda" and modality == "events" and not in_memory and not cache_dir
