"""The experiment config: one plain dataclass, read from YAML and ``key=value`` overrides.

Every field carries its help text, so ``spikmamba train --help`` and the docs are generated from
the same place as the defaults. Loading is strict: an unknown key or a value of the wrong type is
an error that names the key and where it came from (the YAML file or the command line). Nested
YAML sections flatten with ``_`` (``data: {root: x}`` sets ``data_root``); dotted keys on the
command line do the same (``data.root=x``).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..files import atomic_write_bytes
from ..text import shown
from .yaml_load import MAX_BYTES, load_yaml


def _at_least(lo):
    return (lambda v: v >= lo), f">= {lo}"


def _between(lo, hi, hi_open=True):
    return ((lambda v: lo <= v < hi) if hi_open else (lambda v: lo <= v <= hi)), \
        f"in [{lo}, {hi}{')' if hi_open else ']'}"


def _opt(default, help: str, choices: tuple | None = None, allowed: tuple | None = None, only: str | None = None,
         key: str = ""):
    """A config field with its help, its choices or its allowed range (``(predicate, words)``,
    checked by :func:`validate_config`), ``only``: the data it is for ("recorded" or "synth";
    setting it for the other kind is an error, not a silently ignored key), and ``key``: its
    name in the config's sections (``optim.lr``), in YAML and on the command line."""
    meta = {"help": help, "key": key}
    if choices:
        meta["choices"] = choices
    if allowed:
        meta["allowed"] = allowed
    if only:
        meta["only"] = only
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # model
    model: str = _opt("spikmamba_tiny_sps", "registered model name (`spikmamba models` lists them)", key="model.name")
    patch_size: int = _opt(0, "patch size of the patch embedding, pixels; 0 = the model's default (8 for "
                                 "spikmamba_tiny*, 4 for svmamba_*)", allowed=_at_least(0), key="model.patch_size")
    model_overrides: dict = _opt(
        {}, "extra keyword arguments for the model factory (YAML only), e.g. {embed_dim: 96}", key="model.overrides"
    )
    # data
    data_name: str = _opt(
        "synth",
        "'synth' (built-in simulated actions, no download) or a dataset from `spikmamba datasets`",
        key="data.name",
    )
    data_root: str = _opt(
        "", "folder of the recorded training set (not used for synth)", only="recorded", key="data.root"
    )
    test_root: str = _opt(
        "",
        "folder of the recorded test set; empty = no test set (synth has its own)",
        only="recorded",
        key="data.test_root",
    )
    val_fraction: float = _opt(
        0.0,
        "fraction of the training set held out (stratified, seeded) to pick the best epoch",
        allowed=_between(0.0, 1.0),
        key="data.val_fraction",
    )
    representation: str = _opt("frames", "event representation; 'adaptive' = EAS-SNN's learned sampler over "
                               "frames x data.adaptive.fine_steps fine bins, trained with the model",
                               ("frames", "voxel", "count", "afe", "adaptive"), key="data.representation")
    adaptive_fine_steps: int = _opt(
        4, "adaptive only: fine bins per output time step", allowed=_at_least(1), key="data.adaptive.fine_steps"
    )
    adaptive_channels: int = _opt(
        2, "adaptive only: channels of the sampled representation", allowed=_at_least(1), key="data.adaptive.channels"
    )
    adaptive_sat: bool = _opt(
        True, "adaptive only: spike-aware training (gradient through the sampling spikes)", key="data.adaptive.sat"
    )
    adaptive_rpd: bool = _opt(
        True, "adaptive only: residual potential dropout (drop windows still open at the end)", key="data.adaptive.rpd"
    )
    split_by: str = _opt(
        "time", "how frames slice a recording: equal time or equal event count", ("time", "number"), key="data.split_by"
    )
    frames: int = _opt(8, "time steps T (frames or voxel bins) per sample", allowed=_at_least(1), key="data.frames")
    resolution: int = _opt(
        0,
        "resize frames to resolution x resolution pixels; 0 = the sensor size",
        allowed=_at_least(0),
        key="data.resolution",
    )
    frame_stride: int = _opt(
        2,
        "video only: take every N-th frame when cutting a clip of `data.frames` frames",
        allowed=_at_least(1),
        key="data.video.frame_stride",
    )
    clips_per_video: int = _opt(
        1,
        "video only: clips cut from each video, evenly spaced",
        allowed=_at_least(1),
        key="data.video.clips_per_video",
    )
    fold: int = _opt(
        1,
        "video only: the official split (fold) of UCF-101 / HMDB-51, 1-3",
        allowed=_between(1, 3, hi_open=False),
        key="data.video.fold",
    )
    skip_unreadable: bool = _opt(
        False,
        "leave out samples that cannot be read or decoded (counted, listed in "
        "OUT_DIR/skipped.csv) instead of stopping with an error naming the file",
        key="data.skip_unreadable",
    )
    allow_outside_root: bool = _opt(
        False,
        "let a dataset's list files and symbolic links reach files outside data.root / "
        "data.test_root (a folder of links to recordings elsewhere, a list of absolute paths); "
        "off, such paths are refused",
        key="data.allow_outside_root",
    )
    max_skipped_fraction: float = _opt(
        0.05,
        "with data.skip_unreadable: stop when more than this fraction of the samples read so far had to be left out",
        allowed=_between(0.0, 1.0, hi_open=False),
        key="data.max_skipped_fraction",
    )
    transforms: list = _opt(
        [],
        "event transforms, in order (YAML list, e.g. [Denoise, {RandomFlip: {p: 0.5}}, "
        "{DropEvent: {p: 0.1}}]); random ones draw per sample from (seed, epoch, sample) and only "
        "in training; evaluation and predict use the deterministic form (RandomCrop -> CenterCrop)",
        key="data.transforms",
    )
    cache_dir: str = _opt("", "folder for the representation cache (compact entries, safe to share between runs and "
                          "processes); empty = no cache", only="recorded", key="data.cache_dir")
    num_workers: int = _opt(-1, "DataLoader worker processes per training process; -1 = from the CPU count (0 for "
                            "the in-memory synth data)", allowed=_at_least(-1), key="data.num_workers")
    sensor_size: int = _opt(
        32,
        "synth only: simulated sensor width = height, pixels",
        allowed=_at_least(1),
        only="synth",
        key="data.synth.sensor_size",
    )
    num_train: int = _opt(
        3000, "synth only: training clips", allowed=_at_least(1), only="synth", key="data.synth.num_train"
    )
    num_test: int = _opt(
        500,
        "synth only: test clips (a disjoint seed stream)",
        allowed=_at_least(1),
        only="synth",
        key="data.synth.num_test",
    )
    augment_shift: int = _opt(
        2,
        "random translation of each training sample by up to this many pixels (0 = off)",
        allowed=_at_least(0),
        key="data.augment_shift",
    )
    image_augment: str = _opt(
        "flip",
        "images only: 'flip', or 'published' = random resized crop + flip + AutoAugment (torchvision) + random erasing",
        ("none", "flip", "published"),
        key="data.images.augment",
    )
    # optimisation
    batch_size: int = _opt(
        16, "global batch size (split across processes under torchrun)", allowed=_at_least(1), key="data.batch_size"
    )
    epochs: int = _opt(14, "training epochs", allowed=_at_least(1), key="schedule.epochs")
    max_steps: int = _opt(
        0,
        "stop after this many optimizer steps in all (smoke runs, budgets); 0 = run every epoch. "
        "The schedule still spans `schedule.epochs`, so a longer run resumed from it is the same run",
        allowed=_at_least(0),
        key="schedule.max_steps",
    )
    eval_every: int = _opt(
        1, "validate every this many epochs (and after the last)", allowed=_at_least(1), key="schedule.eval_every"
    )
    limit_val_batches: int = _opt(
        0,
        "validate on at most this many batches per process (a fixed seeded subset); 0 = the whole validation split",
        allowed=_at_least(0),
        key="schedule.limit_val_batches",
    )
    optimizer: str = _opt("adamw", "optimizer (adam = L2 weight decay, as the published SpikMamba recipe)",
                          ("adamw", "adam", "sgd"), key="optim.name")
    lr: float = _opt(
        5e-3, "peak learning rate, reached after warm-up", allowed=((lambda v: v > 0), "> 0"), key="optim.lr"
    )
    momentum: float = _opt(0.9, "SGD momentum (sgd only)", allowed=_between(0.0, 1.0), key="optim.momentum")
    weight_decay: float = _opt(
        0.05, "decoupled weight decay (AdamW) or L2 (SGD)", allowed=_at_least(0.0), key="optim.weight_decay"
    )
    schedule: str = _opt(
        "cosine", "learning-rate schedule after warm-up", ("cosine", "step", "constant"), key="schedule.name"
    )
    min_lr: float = _opt(
        0.0, "cosine schedule: the learning rate it decays to", allowed=_at_least(0.0), key="schedule.min_lr"
    )
    step_epochs: int = _opt(
        10,
        "step schedule: multiply the learning rate by schedule.step_gamma every this many epochs",
        allowed=_at_least(1),
        key="schedule.step_epochs",
    )
    step_gamma: float = _opt(
        0.1, "step schedule: decay factor", allowed=((lambda v: 0 < v <= 1), "in (0, 1]"), key="schedule.step_gamma"
    )
    warmup_epochs: float = _opt(
        1.0, "linear warm-up length in epochs (may be fractional)", allowed=_at_least(0.0), key="schedule.warmup_epochs"
    )
    label_smoothing: float = _opt(
        0.1, "label smoothing of the cross-entropy loss", allowed=_between(0.0, 1.0), key="optim.label_smoothing"
    )
    ema_decay: float = _opt(0.0, "keep an exponential moving average of the weights with this decay (e.g. 0.9998) "
                            "and evaluate / save it; 0 = off", allowed=_between(0.0, 1.0), key="optim.ema_decay")
    clip_grad: float = _opt(
        1.0, "clip the gradient norm to this value (0 = off)", allowed=_at_least(0.0), key="optim.clip_grad"
    )
    skip_nonfinite: int = _opt(
        0, "skip up to this many steps whose loss or gradient is NaN/inf (0 = stop at the first)"
    , allowed=_at_least(0), key="optim.skip_nonfinite")
    amp: str = _opt(
        "none",
        "mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA, with a grad scaler)",
        ("none", "bf16", "fp16"),
        key="device.amp",
    )
    device: str = _opt("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'", key="device.name")
    compile: bool = _opt(
        False,
        "compile the model with torch.compile for training and evaluation (the first steps take longer while it "
        "compiles; `spikmamba bench model-train-step-compiled` measures what it gains here)",
        key="device.compile",
    )
    compile_mode: str = _opt(
        "default",
        "torch.compile's mode, with device.compile",
        ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
        key="device.compile_mode",
    )
    seed: int = _opt(
        0,
        "seed of data generation, initialisation, shuffling and augmentation",
        allowed=_between(0, 2**32),
        key="run.seed",
    )
    # outputs
    out_dir: str = _opt(
        "runs/synth",
        "folder for checkpoints (best.pt, last.pt), config.yaml, log.csv, TensorBoard events",
        key="run.out_dir",
    )
    overwrite: bool = _opt(False, "write into run.out_dir even when it holds another run's files (they are removed "
                           "first); by default a new run goes to the first free out_dir-2, out_dir-3, ...",
                           key="run.overwrite")
    checkpoint_every: int = _opt(
        0,
        "also write last.pt every this many steps (0 = at the end of each epoch only)",
        allowed=_at_least(0),
        key="run.checkpoint_every",
    )
    tensorboard: bool = _opt(
        True, "write TensorBoard scalars per epoch when the tensorboard package is installed", key="run.tensorboard"
    )
    progress: bool = _opt(True, "show progress bars and per-epoch lines", key="run.progress")


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


def config_keys() -> dict[str, str]:
    """Each key as written in YAML sections and ``key=value`` overrides (``optim.lr``) -> its field."""
    return {f.metadata["key"]: f.name for f in config_fields()}


def _field_of(key: str, fields: dict, keys: dict) -> tuple[str | None, bool]:
    """``(field name, spelled the old way)`` for a key: its sectioned name (``optim.lr``), or
    the flat name of earlier versions (``lr``; also ``data.root`` for ``data_root``)."""
    if key in keys:
        return keys[key], False
    for name in (key, key.replace(".", "_")):
        if name in fields:
            return name, True
    return None, False


def _set(cfg: TrainConfig, pairs, source: str, note_old_keys: bool = True) -> TrainConfig:
    fields = {f.name: f for f in config_fields()}
    keys = config_keys()
    updates = {}
    for key, value in pairs:
        name, old = _field_of(key, fields, keys)
        if name is None:
            close = difflib.get_close_matches(key, list(keys) + list(fields), n=3, cutoff=0.6)
            close = list(dict.fromkeys(fields[c].metadata["key"] if c in fields else c for c in close))
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise InputError(f"unknown config key {shown(key)} ({source}); {hint}`spikmamba train --help` lists them")
        if old and note_old_keys:
            warnings.warn(f"config key {key!r} is now {fields[name].metadata['key']!r}; the old name still works in "
                          f"this release", FutureWarning, stacklevel=3)
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


#: keys whose value is itself a mapping (not a section to descend into)
_MAPPING_KEYS = ("model.overrides", "model_overrides")


def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in _MAPPING_KEYS:
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def config_from_dict(doc: dict, source: str, base: TrainConfig | None = None,
                     note_old_keys: bool = True) -> TrainConfig:
    """Validate a mapping (in sections, or flat as earlier versions wrote it) into a TrainConfig;
    errors name the key and ``source``. ``note_old_keys``: warn about flat keys (not for configs
    stored inside checkpoints, which are flat by design)."""
    return _set(base or TrainConfig(), list(_flatten(doc)), source, note_old_keys)


def config_sections(cfg: TrainConfig) -> dict:
    """``cfg`` as nested sections, the way YAML configs are written (``{"optim": {"lr": ...}}``)."""
    doc: dict = {}
    for f in config_fields():
        *path, leaf = f.metadata["key"].split(".")
        node = doc
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = getattr(cfg, f.name)
    return doc


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
    text += yaml.safe_dump(config_sections(cfg), sort_keys=False)
    atomic_write_bytes(path, text.encode())


def key_of(name: str) -> str:
    """The sectioned key (``optim.lr``) of a TrainConfig field (``lr``): the name messages use."""
    return TrainConfig.__dataclass_fields__[name].metadata["key"]


def as_overrides(values: dict) -> list[str]:
    """``key=value`` overrides, under sectioned keys, for TrainConfig field values (``{"lr": 0.1}``
    -> ``["optim.lr=0.1"]``): what a script passes to ``spikmamba train`` in a subprocess."""
    import json

    return [f"{key_of(k)}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in values.items()]


def _only(kind: str) -> list[str]:
    """The keys that only mean something for ``kind`` of data ("recorded" or "synth")."""
    return [f.name for f in config_fields() if f.metadata.get("only") == kind]


def validate_config(cfg: TrainConfig, source: str = "config") -> TrainConfig:
    """Check value ranges and relations between keys of a complete config; a ValueError names the
    key, its value and what is allowed. Called where a run starts (train, test, energy), once every
    source (YAML, command line, checkpoint) has been applied."""
    import math
    import re

    for f in config_fields():
        if "allowed" not in f.metadata:
            continue
        (ok, allowed), value = f.metadata["allowed"], getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value) or not ok(value):
            raise InputError(f"config key {key_of(f.name)!r} is {shown(value)}; it must be {allowed} ({source})")
    if cfg.min_lr > cfg.lr:
        raise InputError(f"config key 'schedule.min_lr' is {cfg.min_lr!r}, above optim.lr={cfg.lr!r}; the cosine "
                         f"schedule decays from optim.lr down to schedule.min_lr, so it must be <= optim.lr "
                         f"({source})")
    if cfg.warmup_epochs > cfg.epochs:
        raise InputError(f"config key 'schedule.warmup_epochs' is {cfg.warmup_epochs!r}, longer than "
                         f"schedule.epochs={cfg.epochs}; the learning rate would never reach optim.lr ({source})")
    from ..models.registry import list_models, suggest

    if cfg.model not in list_models():
        raise InputError(f"config key 'model.name' is {shown(cfg.model)}, which is not a registered model; "
                         f"{suggest(cfg.model)}`spikmamba models` lists them ({source})")
    if not cfg.out_dir.strip():
        raise InputError(f"config key 'run.out_dir' is empty; name the folder the run writes, e.g. "
                         f"run.out_dir=runs/mine ({source})")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", cfg.device):
        raise InputError(
            f"config key 'device.name' is {shown(cfg.device)}; use 'auto', 'cpu', 'cuda' or 'cuda:N' ({source})"
        )
    if cfg.transforms:
        from ..events.transforms import check_transforms_spec

        try:
            check_transforms_spec(cfg.transforms)
        except ValueError as err:
            raise InputError(f"config key 'data.transforms': {err} ({source})") from None
    defaults = TrainConfig()
    if cfg.data_name == "synth":
        for key in _only("recorded"):
            if getattr(cfg, key):
                raise InputError(
                    f"config key {key_of(key)!r} is set ({shown(getattr(cfg, key))}) but data.name is 'synth', the "
                    f"built-in simulated data, which reads no folder; to train on recorded data set "
                    f"data.name=<dataset> too (`spikmamba datasets` lists them), or drop {key_of(key)} ({source})")
    else:
        from ..data import DATASETS

        if cfg.data_name not in DATASETS:
            raise InputError(f"config key 'data.name' is {shown(cfg.data_name)}; choose 'synth' or one of "
                             f"{', '.join(DATASETS)} ({source})")
        for key in _only("synth"):
            if getattr(cfg, key) != getattr(defaults, key):
                raise InputError(
                    f"config key {key_of(key)!r} is set ({shown(getattr(cfg, key))}) but only the built-in synth "
                    f"data use it; data.name={shown(cfg.data_name)} reads its samples from data.root ({source})"
                )
    return cfg


def config_help() -> str:
    """Every key by section, with its help, choices and default: the epilog of ``train --help``."""
    lines = ["config keys, by section (YAML: nested sections; command line: optim.lr=0.001; the default is in "
             "brackets):"]
    section, order, defaults = None, {}, TrainConfig()
    width = max(len(f.metadata["key"].rsplit(".", 1)[1]) for f in config_fields())
    for f in config_fields():  # sections in the order they are declared, each one's subsections after it
        top = f.metadata["key"].split(".")[0]
        order.setdefault(top, len(order))
    for f in sorted(config_fields(), key=lambda f: (order[f.metadata["key"].split(".")[0]],
                                                    f.metadata["key"].count(".") > 1,
                                                    f.metadata["key"].rsplit(".", 1)[0])):
        key = f.metadata["key"]
        if key.rsplit(".", 1)[0] != section:
            section = key.rsplit(".", 1)[0]
            lines.append(f"  {section}:")
        choices = f" {{{'|'.join(f.metadata['choices'])}}}" if "choices" in f.metadata else ""
        lines.append(f"    {key.rsplit('.', 1)[1]:<{width}} {f.metadata['help']}{choices} "
                     f"[{getattr(defaults, f.name)!r}]")
    return "\n".join(lines)
