"""Model zoo: every model is built with :func:`create_model` from its registered name."""
from . import respike as _respike  # noqa: F401  (registers ReSpike)
from . import scnn as _scnn  # noqa: F401  (registers the NIR-exportable spiking CNN)
from . import spikmamba as _spikmamba  # noqa: F401  (registers the SpikMamba family)
from . import svmamba as _svmamba  # noqa: F401  (registers SVMamba)
from .factory import create_model, load_pretrained
from .model_cfg import InputCfg, ModelCfg
from .registry import count_parameters, default_cfg, list_models, model_description, pretrained_tags, register_model
from .respike import ReSpike
from .spikmamba import SpikMamba
from .svmamba import SVMamba
from .weights import WeightsError, save_pretrained

__all__ = ["InputCfg", "ModelCfg", "ReSpike", "SVMamba", "SpikMamba", "WeightsError", "count_parameters",
           "create_model", "default_cfg", "list_models", "load_pretrained", "model_description", "pretrained_tags",
           "register_model", "save_pretrained"]
