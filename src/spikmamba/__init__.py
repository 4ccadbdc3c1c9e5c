"""spikmamba: spiking state-space models for event-camera data."""
__version__ = "0.1.0"
