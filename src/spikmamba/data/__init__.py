"""Datasets over event recordings; ``SynthActions`` needs no download."""
from .synthetic import CLASSES as SYNTH_CLASSES
from .synthetic import SynthActions

__all__ = ["SYNTH_CLASSES", "SynthActions"]
