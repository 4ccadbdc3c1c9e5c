"""Training and evaluation: config, data, model building, the loop, checkpoints, metrics, DDP."""
from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import TrainConfig, apply_overrides, config_from_dict, load_config, save_config
from .evaluate import run_test
from .hooks import EarlyStopping, Hook
from .inputs import load_data
from .metrics import ClassificationMetrics
from .model import build_model
from .predict import predict_files
from .train import Interrupted, evaluate, train

__all__ = [
    "CheckpointError",
    "ClassificationMetrics",
    "EarlyStopping",
    "Hook",
    "Interrupted",
    "TrainConfig",
    "apply_overrides",
    "build_model",
    "config_from_dict",
    "evaluate",
    "load_checkpoint",
    "load_config",
    "load_data",
    "model_from_checkpoint",
    "predict_files",
    "run_test",
    "save_checkpoint",
    "save_config",
    "train",
]
