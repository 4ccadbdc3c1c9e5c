"""The one error every reader raises for a bad file, so callers can catch a single type."""
from __future__ import annotations

import os

from ...errors import SpikmambaError


class EventFormatError(SpikmambaError, ValueError):
    """A file is not a valid event file: names the file, the byte offset and what was expected."""

    def __init__(self, path: str | os.PathLike, offset: int | None, message: str):
        self.path = os.fspath(path)
        self.offset = offset
        self.detail = message
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{self.path}{where}: {message}")
