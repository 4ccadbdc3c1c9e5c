"""Model zoo: every model is built with :func:`create_model` from its registered name."""
from . import spikmamba as _spikmamba  # noqa: F401  (registers the SpikMamba family)
from .registry import count_parameters, create_model, list_models, model_description, register_model
from .spikmamba import SpikMamba

__all__ = ["SpikMamba", "count_parameters", "create_model", "list_models", "model_description", "register_model"]
