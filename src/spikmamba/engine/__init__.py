"""Training and evaluation."""
from .train import TrainConfig, apply_overrides, evaluate, train

__all__ = ["TrainConfig", "apply_overrides", "evaluate", "train"]
