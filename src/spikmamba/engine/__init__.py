"""Training and evaluation."""
from .train import TrainConfig, apply_overrides, build_model, evaluate, train

__all__ = ["TrainConfig", "apply_overrides", "build_model", "evaluate", "train"]
