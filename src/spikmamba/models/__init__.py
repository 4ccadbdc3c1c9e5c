"""Model zoo: every model is built with :func:`create_model` from its registered name."""
from . import spikmamba as _spikmamba  # noqa: F401  (registers the SpikMamba family)
from . import respike as _respike  # noqa: F401  (registers ReSpike)
from . import svmamba as _svmamba  # noqa: F401  (registers SVMamba)
from .registry import count_parameters, create_model, list_models, model_description, register_model
from .respike import ReSpike
from .spikmamba import SpikMamba
from .svmamba import SVMamba

__all__ = ["ReSpike", "SVMamba", "SpikMamba", "count_parameters", "create_model", "list_models", "model_description", "register_model"]
