"""Building blocks: spiking neurons, surrogate gradients, selective scan, spiking attention, stems."""
from . import surrogate
from .adaptive_sampler import AdaptiveSampler
from .attention import RoPE2d, SLABlock, SpikingWindowLinearAttention
from .functional import record_firing_rates, reset_net, set_step_mode, spiking_layers
from .layers import ChannelLastBatchNorm, DropPath, Mlp
from .neurons import BaseNode, LIFNode, ParametricLIFNode, build_neuron
from .ssm import (
    SS2D,
    Mamba,
    MambaBlock,
    RMSNorm,
    linear_scan,
    selective_scan_fast,
    selective_scan_fn,
    selective_scan_ref,
)
from .stem import SpikingPatchSplitting, TubeletEmbed

__all__ = [
    "surrogate",
    "AdaptiveSampler",
    "RoPE2d",
    "SLABlock",
    "SpikingWindowLinearAttention",
    "record_firing_rates",
    "reset_net",
    "set_step_mode",
    "spiking_layers",
    "ChannelLastBatchNorm",
    "DropPath",
    "Mlp",
    "BaseNode",
    "LIFNode",
    "ParametricLIFNode",
    "build_neuron",
    "SS2D",
    "Mamba",
    "MambaBlock",
    "RMSNorm",
    "linear_scan",
    "selective_scan_fast",
    "selective_scan_fn",
    "selective_scan_ref",
    "SpikingPatchSplitting",
    "TubeletEmbed",
]
