"""Event file readers and writers: ``read_events(path)`` picks the format for you."""
from .dispatch import EVENT_FILE_EXTENSIONS, READERS, WRITERS, detect_format, read_events, write_events
from .errors import EventFormatError
from .recording import Recording

__all__ = ["EVENT_FILE_EXTENSIONS", "EventFormatError", "READERS", "Recording", "WRITERS", "detect_format",
           "read_events", "write_events"]
