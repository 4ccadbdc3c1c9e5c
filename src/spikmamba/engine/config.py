"""The experiment config: one plain dataclass, read from YAML and ``key=value`` overrides.

Every field carries its help text, so ``spikmamba train --help`` and the docs are generated from
the same place as the defaults. Loading is strict: an unknown key or a value of the wrong type is
an error that names the key and where it came from (the YAML file or the command line). Nested
YAML sections flatten with ``_`` (``data: {root: x}`` sets ``data_root``); dotted keys on the
command line do the same (``data.root=x``).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field


def _opt(default, help: str, choices: "tuple | None" = None):
    meta = {"help": help}
    if choices:
        meta["choices"] = choices
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # model
    model: str = _opt("spikmamba_tiny_sps", "registered model name (`spikmamba models` lists them)")
    patch_size: int = _opt(0, "patch size of the patch embedding, pixels; 0 = the model's default (8 for "
                                 "spikmamba_tiny*, 4 for svmamba_*)")
    model_overrides: dict = _opt({}, "extra keyword arguments for the model factory (YAML only), e.g. {embed_dim: 96}")
    # data
    data_name: str = _opt("synth", "'synth' (built-in simulated actions, no download) or a dataset from `spikmamba datasets`")
    data_root: str = _opt("", "folder of the recorded training set (not used for synth)")
    test_root: str = _opt("", "folder of the recorded test set; empty = no test set (synth has its own)")
    val_fraction: float = _opt(0.0, "fraction of the training set held out (stratified, seeded) to pick the best epoch")
    representation: str = _opt("frames", "event representation; 'adaptive' = EAS-SNN's learned sampler over "
                               "frames x adaptive_fine_steps fine bins, trained with the model",
                               ("frames", "voxel", "count", "afe", "adaptive"))
    adaptive_fine_steps: int = _opt(4, "adaptive only: fine bins per output time step")
    adaptive_channels: int = _opt(2, "adaptive only: channels of the sampled representation")
    adaptive_sat: bool = _opt(True, "adaptive only: spike-aware training (gradient through the sampling spikes)")
    adaptive_rpd: bool = _opt(True, "adaptive only: residual potential dropout (drop windows still open at the end)")
    split_by: str = _opt("time", "how frames slice a recording: equal time or equal event count", ("time", "number"))
    frames: int = _opt(8, "time steps T (frames or voxel bins) per sample")
    resolution: int = _opt(0, "resize frames to resolution x resolution pixels; 0 = the sensor size")
    frame_stride: int = _opt(2, "video only: take every N-th frame when cutting a clip of `frames` frames")
    clips_per_video: int = _opt(1, "video only: clips cut from each video, evenly spaced")
    fold: int = _opt(1, "video only: the official split (fold) of UCF-101 / HMDB-51, 1-3")
    skip_unreadable: bool = _opt(False, "video only: leave out videos that cannot be decoded (listed and warned), "
                                 "instead of stopping with an error naming the file")
    sensor_size: int = _opt(32, "synth only: simulated sensor width = height, pixels")
    num_train: int = _opt(3000, "synth only: training clips")
    num_test: int = _opt(500, "synth only: test clips (a disjoint seed stream)")
    augment_shift: int = _opt(2, "random translation of each training sample by up to this many pixels (0 = off)")
    image_augment: str = _opt("flip", "images only: 'flip', or 'published' = random resized crop + flip + AutoAugment "
                              "(torchvision) + random erasing", ("none", "flip", "published"))
    # optimisation
    batch_size: int = _opt(16, "global batch size (split across processes under torchrun)")
    epochs: int = _opt(14, "training epochs")
    optimizer: str = _opt("adamw", "optimizer (adam = L2 weight decay, as the published SpikMamba recipe)",
                          ("adamw", "adam", "sgd"))
    lr: float = _opt(5e-3, "peak learning rate, reached after warm-up")
    momentum: float = _opt(0.9, "SGD momentum (sgd only)")
    weight_decay: float = _opt(0.05, "decoupled weight decay (AdamW) or L2 (SGD)")
    schedule: str = _opt("cosine", "learning-rate schedule after warm-up", ("cosine", "step", "constant"))
    min_lr: float = _opt(0.0, "cosine schedule: the learning rate it decays to")
    step_epochs: int = _opt(10, "step schedule: multiply the learning rate by step_gamma every this many epochs")
    step_gamma: float = _opt(0.1, "step schedule: decay factor")
    warmup_epochs: float = _opt(1.0, "linear warm-up length in epochs (may be fractional)")
    label_smoothing: float = _opt(0.1, "label smoothing of the cross-entropy loss")
    ema_decay: float = _opt(0.0, "keep an exponential moving average of the weights with this decay (e.g. 0.9998) "
                            "and evaluate / save it; 0 = off")
    clip_grad: float = _opt(1.0, "clip the gradient norm to this value (0 = off)")
    skip_nonfinite: int = _opt(0, "skip up to this many steps whose loss or gradient is NaN/inf (0 = stop at the first)")
    amp: str = _opt("none", "mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA, with a grad scaler)", ("none", "bf16", "fp16"))
    device: str = _opt("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    seed: int = _opt(0, "seed of data generation, initialisation, shuffling and augmentation")
    # outputs
    out_dir: str = _opt("runs/synth", "folder for checkpoints (best.pt, last.pt), config.yaml, log.csv, TensorBoard events")
    checkpoint_every: int = _opt(0, "also write last.pt every this many steps (0 = at the end of each epoch only)")
    tensorboard: bool = _opt(True, "write TensorBoard scalars per epoch when the tensorboard package is installed")
    progress: bool = _opt(True, "show progress bars and per-epoch lines")


def config_fields() -> "list[dataclasses.Field]":
    return list(dataclasses.fields(TrainConfig))


def _coerce(key: str, value, current, source: str):
    """``value`` as the type of the field's default, or a ValueError naming key and source."""
    kind = type(current)
    if kind is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r} expects a mapping, got {value!r} ({source})")
        return dict(value)
    if isinstance(value, str) and kind is not str:
        raw = value
        try:
            if kind is bool:
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return raw.lower() in ("true", "1", "yes")
            return kind(raw)
        except ValueError:
            raise ValueError(f"config key {key!r} expects {kind.__name__}, got {raw!r} ({source})") from None
    ok = (isinstance(value, kind) and not (kind is int and isinstance(value, bool))) or \
         (kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise ValueError(f"config key {key!r} expects {kind.__name__}, got {value!r} of type {type(value).__name__} ({source})")
    return kind(value) if kind is float else value


def _set(cfg: TrainConfig, pairs, source: str) -> TrainConfig:
    fields = {f.name: f for f in config_fields()}
    updates = {}
    for key, value in pairs:
        name = key.replace(".", "_")
        if name not in fields:
            raise ValueError(f"unknown config key {key!r} ({source}); valid keys: {', '.join(sorted(fields))}")
        value = _coerce(key, value, getattr(cfg, name), source)
        choices = fields[name].metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"config key {key!r} must be one of {', '.join(choices)}; got {value!r} ({source})")
        updates[name] = value
    return dataclasses.replace(cfg, **updates)


def apply_overrides(cfg: TrainConfig, items: "list[str]") -> TrainConfig:
    """Apply ``key=value`` strings; unknown keys and bad values raise ValueError naming the key."""
    pairs = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. epochs=5)")
        pairs.append(tuple(item.split("=", 1)))
    return _set(cfg, pairs, "command line")


def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and f"{prefix}{k}" != "model_overrides":
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def config_from_dict(doc: dict, source: str, base: "TrainConfig | None" = None) -> TrainConfig:
    """Validate a (possibly nested) mapping into a TrainConfig; errors name the key and ``source``."""
    return _set(base or TrainConfig(), list(_flatten(doc)), source)


def load_config(path: "str | os.PathLike", base: "TrainConfig | None" = None) -> TrainConfig:
    """Read a YAML config (safe loader), validated field by field."""
    import yaml

    with open(path) as f:
        try:
            doc = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a config file must be a mapping of keys to values")
    return config_from_dict(doc, f"in {path}", base)


def save_config(cfg: TrainConfig, path: "str | os.PathLike") -> None:
    """The resolved config as YAML, loadable again with ``--config``."""
    import yaml

    from .checkpoint import atomic_write_bytes

    text = "# resolved config of this run; reload with: spikmamba train --config <this file>\n"
    text += yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
    atomic_write_bytes(path, text.encode())


def config_help() -> str:
    lines = ["config keys (override with key=value; the default is in brackets):"]
    for f in config_fields():
        choices = f" {{{'|'.join(f.metadata['choices'])}}}" if "choices" in f.metadata else ""
        default = getattr(TrainConfig(), f.name)
        lines.append(f"  {f.name:<17} {f.metadata['help']}{choices} [{default!r}]")
    return "\n".join(lines)
