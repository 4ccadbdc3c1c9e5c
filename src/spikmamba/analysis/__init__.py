"""Analysis of trained or untrained models: operation counts, firing rates, energy estimates."""
from .energy import EnergyConstants, energy_report, format_report, save_report
from .ops import LayerOps, OpCounter
from .run import run_energy

__all__ = ["EnergyConstants", "LayerOps", "OpCounter", "energy_report", "format_report", "run_energy", "save_report"]
