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
from pathlib import Path

from ..errors import InputError
from ..files import atomic_write_bytes
from ..text import shown
from .yaml_load import MAX_BYTES, load_yaml


def _opt(default, help: str, choices: tuple | None = None):
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
    data_name: str = _opt(
        "synth", "'synth' (built-in simulated actions, no download) or a dataset from `spikmamba datasets`"
    )
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
    skip_unreadable: bool = _opt(False, "leave out samples that cannot be read or decoded (counted, listed in "
                                 "OUT_DIR/skipped.csv) instead of stopping with an error naming the file")
    allow_outside_root: bool = _opt(
        False,
        "let a dataset's list files and symbolic links reach files outside data_root / "
        "test_root (a folder of links to recordings elsewhere, a list of absolute paths); "
        "off, such paths are refused",
    )
    max_skipped_fraction: float = _opt(0.05, "with skip_unreadable: stop when more than this fraction of the samples "
                                       "read so far had to be left out")
    transforms: list = _opt([], "event transforms, in order (YAML list, e.g. [Denoise, {RandomFlip: {p: 0.5}}, "
                            "{DropEvent: {p: 0.1}}]); random ones draw per sample from (seed, epoch, sample) and only "
                            "in training; evaluation and predict use the deterministic form (RandomCrop -> CenterCrop)")
    cache_dir: str = _opt("", "folder for the representation cache (compact entries, safe to share between runs and "
                          "processes); empty = no cache")
    num_workers: int = _opt(-1, "DataLoader worker processes per training process; -1 = from the CPU count (0 for "
                            "the in-memory synth data)")
    sensor_size: int = _opt(32, "synth only: simulated sensor width = height, pixels")
    num_train: int = _opt(3000, "synth only: training clips")
    num_test: int = _opt(500, "synth only: test clips (a disjoint seed stream)")
    augment_shift: int = _opt(2, "random translation of each training sample by up to this many pixels (0 = off)")
    image_augment: str = _opt("flip", "images only: 'flip', or 'published' = random resized crop + flip + AutoAugment "
                              "(torchvision) + random erasing", ("none", "flip", "published"))
    # optimisation
    batch_size: int = _opt(16, "global batch size (split across processes under torchrun)")
    epochs: int = _opt(14, "training epochs")
    max_steps: int = _opt(0, "stop after this many optimizer steps in all (smoke runs, budgets); 0 = run every epoch. "
                          "The schedule still spans `epochs`, so a longer run resumed from it is the same run")
    eval_every: int = _opt(1, "validate every this many epochs (and after the last)")
    limit_val_batches: int = _opt(0, "validate on at most this many batches per process (a fixed seeded subset); "
                                  "0 = the whole validation split")
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
    skip_nonfinite: int = _opt(
        0, "skip up to this many steps whose loss or gradient is NaN/inf (0 = stop at the first)"
    )
    amp: str = _opt(
        "none", "mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA, with a grad scaler)", ("none", "bf16", "fp16")
    )
    device: str = _opt("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    seed: int = _opt(0, "seed of data generation, initialisation, shuffling and augmentation")
    # outputs
    out_dir: str = _opt(
        "runs/synth", "folder for checkpoints (best.pt, last.pt), config.yaml, log.csv, TensorBoard events"
    )
    overwrite: bool = _opt(False, "write into out_dir even when it holds another run's files (they are removed first); "
                           "by default a new run goes to the first free out_dir-2, out_dir-3, ...")
    checkpoint_every: int = _opt(0, "also write last.pt every this many steps (0 = at the end of each epoch only)")
    tensorboard: bool = _opt(True, "write TensorBoard scalars per epoch when the tensorboard package is installed")
    progress: bool = _opt(True, "show progress bars and per-epoch lines")


def config_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(TrainConfig))


def _coerce(key: str, value, current, source: str):
    """``value`` as the type of the field's default, or a ValueError naming key and source."""
    kind = type(current)
    if kind in (dict, list) and isinstance(value, str):  # from the command line: YAML flow syntax
        value = load_yaml(value, f"config key {key!r} ({source})") if value.strip() else kind()
    if kind is dict:
        if not isinstance(value, dict):
            raise InputError(f"config key {key!r} expects a mapping, got {shown(value)} ({source})")
        return dict(value)
    if kind is list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise InputError(f"config key {key!r} expects a list, got {shown(value)} ({source})")
        return list(value)
    if isinstance(value, str) and kind is not str:
        raw = value
        try:
            if kind is bool:
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return raw.lower() in ("true", "1", "yes")
            return kind(raw)
        except ValueError:
            raise InputError(f"config key {key!r} expects {kind.__name__}, got {shown(raw)} ({source})") from None
    ok = (isinstance(value, kind) and not (kind is int and isinstance(value, bool))) or \
         (kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise InputError(
            f"config key {key!r} expects {kind.__name__}, got {shown(value)} of type {type(value).__name__} ({source})"
        )
    return kind(value) if kind is float else value


def _set(cfg: TrainConfig, pairs, source: str) -> TrainConfig:
    fields = {f.name: f for f in config_fields()}
    updates = {}
    for key, value in pairs:
        name = key.replace(".", "_")
        if name not in fields:
            import difflib

            close = difflib.get_close_matches(name, list(fields), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise InputError(
                f"unknown config key {shown(key)} ({source}); {hint}valid keys: {', '.join(sorted(fields))}"
            )
        value = _coerce(key, value, getattr(cfg, name), source)
        choices = fields[name].metadata.get("choices")
        if choices and value not in choices:
            raise InputError(f"config key {key!r} must be one of {', '.join(choices)}; got {shown(value)} ({source})")
        updates[name] = value
    return dataclasses.replace(cfg, **updates)


def apply_overrides(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings; unknown keys and bad values raise ValueError naming the key."""
    pairs = []
    for item in items:
        if "=" not in item:
            raise InputError(f"override {shown(item)} is not key=value (e.g. epochs=5)")
        pairs.append(tuple(item.split("=", 1)))
    return _set(cfg, pairs, "command line")


def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and f"{prefix}{k}" != "model_overrides":
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def config_from_dict(doc: dict, source: str, base: TrainConfig | None = None) -> TrainConfig:
    """Validate a (possibly nested) mapping into a TrainConfig; errors name the key and ``source``."""
    return _set(base or TrainConfig(), list(_flatten(doc)), source)


def load_config(path: str | os.PathLike, base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML config (safe loader), validated field by field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size > MAX_BYTES:
        raise InputError(f"{path}: {path.stat().st_size:,} bytes; a config is read up to {MAX_BYTES:,} bytes")
    doc = load_yaml(path.read_bytes(), str(path)) or {}
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a config file must be a mapping of keys to values")
    return config_from_dict(doc, f"in {path}", base)


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """The resolved config as YAML, loadable again with ``--config``."""
    import yaml

    text = "# resolved config of this run; reload with: spikmamba train --config <this file>\n"
    text += yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
    atomic_write_bytes(path, text.encode())


def _at_least(lo):
    return (lambda v: v >= lo), f">= {lo}"


def _between(lo, hi, hi_open=True):
    return ((lambda v: lo <= v < hi) if hi_open else (lambda v: lo <= v <= hi)), \
        f"in [{lo}, {hi}{')' if hi_open else ']'}"


#: the allowed range of every numeric key (checked by :func:`validate_config`)
RANGES = {
    "patch_size": _at_least(0),
    "frames": _at_least(1),
    "resolution": _at_least(0),
    "frame_stride": _at_least(1),
    "clips_per_video": _at_least(1),
    "fold": _between(1, 3, hi_open=False),
    "sensor_size": _at_least(1),
    "num_train": _at_least(1),
    "num_test": _at_least(1),
    "augment_shift": _at_least(0),
    "val_fraction": _between(0.0, 1.0),
    "adaptive_fine_steps": _at_least(1),
    "adaptive_channels": _at_least(1),
    "batch_size": _at_least(1),
    "epochs": _at_least(1),
    "lr": ((lambda v: v > 0), "> 0"),
    "momentum": _between(0.0, 1.0),
    "weight_decay": _at_least(0.0),
    "min_lr": _at_least(0.0),
    "step_epochs": _at_least(1),
    "step_gamma": ((lambda v: 0 < v <= 1), "in (0, 1]"),
    "warmup_epochs": _at_least(0.0),
    "label_smoothing": _between(0.0, 1.0),
    "ema_decay": _between(0.0, 1.0),
    "clip_grad": _at_least(0.0),
    "skip_nonfinite": _at_least(0),
    "seed": _between(0, 2**32),
    "checkpoint_every": _at_least(0),
    "max_skipped_fraction": _between(0.0, 1.0, hi_open=False),
    "num_workers": _at_least(-1),
    "max_steps": _at_least(0),
    "eval_every": _at_least(1),
    "limit_val_batches": _at_least(0),
}
#: keys that only mean something for recorded data; set with data_name=synth they would be ignored
RECORDED_ONLY = ("data_root", "test_root", "cache_dir")
#: keys that only mean something for the built-in SynthActions
SYNTH_ONLY = ("sensor_size", "num_train", "num_test")


def validate_config(cfg: TrainConfig, source: str = "config") -> TrainConfig:
    """Check value ranges and relations between keys of a complete config; a ValueError names the
    key, its value and what is allowed. Called where a run starts (train, test, energy), once every
    source (YAML, command line, checkpoint) has been applied."""
    import math
    import re

    for key, (ok, allowed) in RANGES.items():
        value = getattr(cfg, key)
        if isinstance(value, float) and not math.isfinite(value) or not ok(value):
            raise InputError(f"config key {key!r} is {shown(value)}; it must be {allowed} ({source})")
    if cfg.min_lr > cfg.lr:
        raise InputError(f"config key 'min_lr' is {cfg.min_lr!r}, above lr={cfg.lr!r}; the cosine schedule decays "
                         f"from lr down to min_lr, so min_lr must be <= lr ({source})")
    if cfg.warmup_epochs > cfg.epochs:
        raise InputError(f"config key 'warmup_epochs' is {cfg.warmup_epochs!r}, longer than epochs={cfg.epochs}; the "
                         f"learning rate would never reach lr ({source})")
    from ..models.registry import list_models, suggest

    if cfg.model not in list_models():
        raise InputError(f"config key 'model' is {shown(cfg.model)}, which is not a registered model; "
                         f"{suggest(cfg.model)}`spikmamba models` lists them ({source})")
    if not cfg.out_dir.strip():
        raise InputError(f"config key 'out_dir' is empty; name the folder the run writes, e.g. out_dir=runs/mine "
                         f"({source})")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", cfg.device):
        raise InputError(
            f"config key 'device' is {shown(cfg.device)}; use 'auto', 'cpu', 'cuda' or 'cuda:N' ({source})"
        )
    if cfg.transforms:
        from ..events.transforms import check_transforms_spec

        try:
            check_transforms_spec(cfg.transforms)
        except ValueError as err:
            raise InputError(f"config key 'transforms': {err} ({source})") from None
    defaults = TrainConfig()
    if cfg.data_name == "synth":
        for key in RECORDED_ONLY:
            if getattr(cfg, key):
                raise InputError(
                    f"config key {key!r} is set ({shown(getattr(cfg, key))}) but data_name is 'synth', the built-in "
                    f"simulated data, which reads no folder; to train on recorded data set data_name=<dataset> "
                    f"too (`spikmamba datasets` lists them), or drop {key} ({source})")
    else:
        from ..data import DATASETS

        if cfg.data_name not in DATASETS:
            raise InputError(f"config key 'data_name' is {shown(cfg.data_name)}; choose 'synth' or one of "
                             f"{', '.join(DATASETS)} ({source})")
        for key in SYNTH_ONLY:
            if getattr(cfg, key) != getattr(defaults, key):
                raise InputError(
                    f"config key {key!r} is set ({shown(getattr(cfg, key))}) but only the built-in synth data "
                    f"use it; data_name={shown(cfg.data_name)} reads its samples from data_root ({source})"
                )
    return cfg


def config_help() -> str:
    lines = ["config keys (override with key=value; the default is in brackets):"]
    for f in config_fields():
        choices = f" {{{'|'.join(f.metadata['choices'])}}}" if "choices" in f.metadata else ""
        default = getattr(TrainConfig(), f.name)
        lines.append(f"  {f.name:<17} {f.metadata['help']}{choices} [{default!r}]")
    return "\n".join(lines)
