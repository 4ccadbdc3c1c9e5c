"""Event data: the event type, representations, and the DVS simulator."""
from .representations import ToFrame, to_frames
from .simulator import SimulatorConfig, simulate_events
from .types import EVENT_DTYPE, check_events, make_events

__all__ = ["EVENT_DTYPE", "SimulatorConfig", "ToFrame", "check_events", "make_events", "simulate_events", "to_frames"]
