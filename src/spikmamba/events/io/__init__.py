"""Event file readers and writers: ``read_events(path)`` picks the format for you."""
from .dispatch import (
           EVENT_FILE_EXTENSIONS,
           READERS,
           STREAMS,
           WRITERS,
           detect_format,
           read_events,
           stream_events,
           write_events,
)
from .errors import EventFormatError
from .live import is_live_source, open_live
from .prophesee_labels import BBOX_DTYPE, read_prophesee_bboxes
from .recording import Recording

__all__ = [
    "BBOX_DTYPE",
    "EVENT_FILE_EXTENSIONS",
    "EventFormatError",
    "READERS",
    "Recording",
    "WRITERS",
    "detect_format",
    "is_live_source",
    "open_live",
    "read_events",
    "read_prophesee_bboxes",
    "STREAMS",
    "stream_events",
    "write_events",
]
