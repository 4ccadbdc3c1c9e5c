"""What a reader returns: the events plus the facts the file states about them."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Recording(NamedTuple):
    """``events`` (structured array, see :data:`EVENT_DTYPE`), ``sensor_size`` ``(W, H)`` when the
    file or the camera model states it (``None`` when the format does not say), the ``format``
    name, and ``skipped``: records that are valid but not polarity events (IMU, frames,
    triggers, invalid-flagged events), counted so that nothing disappears unsaid."""

    events: np.ndarray
    sensor_size: tuple[int, int] | None
    format: str
    skipped: int = 0
