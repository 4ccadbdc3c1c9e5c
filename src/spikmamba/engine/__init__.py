"""Training and evaluation."""
from .train import TrainConfig, apply_overrides, build_model, evaluate, load_config, load_data, train

__all__ = ["TrainConfig", "apply_overrides", "build_model", "evaluate", "load_config", "load_data", "train"]
