"""The experiment config: nested dataclasses, one per section, read from YAML and ``key=value`` overrides.

``TrainConfig`` holds the sections ``model``, ``data`` (with ``data.synth``, ``data.video``,
``data.images`` and ``data.adaptive``), ``optim``, ``schedule``, ``device`` and ``run``; YAML
mirrors them and the command line names a key by its path (``optim.lr=0.001``). Every field
carries its help text, its choices and its allowed range where it is declared, so
``spikmamba train --help`` and the checks come from the same place as the defaults. Each
section checks itself (:meth:`Section.check`); the root checks what spans sections.

Loading is strict: an unknown key or a value of the wrong type is an error that names the key
and where it came from (the YAML file, the command line, a checkpoint). Flat keys of earlier
versions (``lr``, ``data_root``) still load, with a FutureWarning naming the new key, and
checkpoints store their config flat or in sections alike.

Sections are frozen: a changed config is a new one, ``cfg.replace({"optim.lr": 0.01})``.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator
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


_POSITIVE = ((lambda v: v > 0), "> 0")


def _opt(default, help: str, choices: tuple | None = None, allowed: tuple | None = None, only: str | None = None,
         old: str = ""):
    """A config field with its help, its choices or its allowed range (``(predicate, words)``),
    ``only``: the data it is for ("recorded"; setting it for synth data is an error, not a silently
    ignored key), and ``old``: its flat name in earlier versions where that was not its own name
    (``optimizer`` for ``optim.name``), still accepted for one release."""
    meta = {"help": help, "old": old}
    if choices:
        meta["choices"] = choices
    if allowed:
        meta["allowed"] = allowed
    if only:
        meta["only"] = only
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _section(cls):
    return field(default_factory=cls, metadata={"section": True})


class Section:
    """A group of config keys. ``check`` tests every field against its allowed range, then the
    section's own relations (``relations``), then its subsections; ``key`` is the section's path."""

    def check(self, key: str, source: str) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if "allowed" in f.metadata:
                ok, allowed = f.metadata["allowed"]
                if isinstance(value, float) and not math.isfinite(value) or not ok(value):
                    raise InputError(f"config key '{key}.{f.name}' is {shown(value)}; it must be {allowed} ({source})")
        self.relations(key, source)
        for f in dataclasses.fields(self):
            if f.metadata.get("section"):
                getattr(self, f.name).check(f"{key}.{f.name}", source)

    def relations(self, key: str, source: str) -> None:
        """Checks between this section's keys (and what they need from the environment)."""

    def changed(self) -> list[str]:
        """The keys (relative to the section) set to something other than their default."""
        default = type(self)()
        out = []
        for f in dataclasses.fields(self):
            if f.metadata.get("section"):
                out += [f"{f.name}.{k}" for k in getattr(self, f.name).changed()]
            elif getattr(self, f.name) != getattr(default, f.name):
                out.append(f.name)
        return out


def _refuse_unused(section: Section, key: str, needs: str, source: str) -> None:
    """A subsection whose keys have no effect in this run (``needs`` says when they would) is an
    error naming the first key set, not a silently ignored setting."""
    changed = section.changed()
    if changed:
        raise InputError(f"config key '{key}.{changed[0]}' is set ({shown(value_at(section, changed[0]))}) but "
                         f"{key} keys are used only {needs}; drop it ({source})")


@dataclass(frozen=True)
class ModelSection(Section):
    """Which network, and its arguments."""

    name: str = _opt("spikmamba_tiny_sps", "registered model name (`spikmamba models` lists them)", old="model")
    patch_size: int = _opt(0, "patch size of the patch embedding, pixels; 0 = the model's default (8 for "
                              "spikmamba_tiny*, 4 for svmamba_*)", allowed=_at_least(0))
    overrides: dict = _opt({}, "extra keyword arguments for the model factory (YAML only), e.g. {embed_dim: 96}",
                           old="model_overrides")

    def relations(self, key: str, source: str) -> None:
        from ..models.registry import list_models, suggest

        if self.name not in list_models():
            raise InputError(f"config key '{key}.name' is {shown(self.name)}, which is not a registered model; "
                             f"{suggest(self.name)}`spikmamba models` lists them ({source})")


@dataclass(frozen=True)
class SynthSection(Section):
    """The built-in simulated actions (data.name=synth)."""

    sensor_size: int = _opt(32, "simulated sensor width = height, pixels", allowed=_at_least(1))
    num_train: int = _opt(3000, "training clips", allowed=_at_least(1))
    num_test: int = _opt(500, "test clips (a disjoint seed stream)", allowed=_at_least(1))


@dataclass(frozen=True)
class VideoSection(Section):
    """Video datasets (UCF-101, HMDB-51, Kinetics, video-folder)."""

    frame_stride: int = _opt(2, "take every N-th frame when cutting a clip of `data.frames` frames",
                             allowed=_at_least(1))
    clips_per_video: int = _opt(1, "clips cut from each video, evenly spaced", allowed=_at_least(1))
    fold: int = _opt(1, "the official split (fold) of UCF-101 / HMDB-51, 1-3", allowed=_between(1, 3, hi_open=False))


@dataclass(frozen=True)
class ImagesSection(Section):
    """Image datasets (CIFAR, mini-ImageNet, image folders)."""

    augment: str = _opt("flip", "'flip', or 'published' = random resized crop + flip + AutoAugment (torchvision) + "
                        "random erasing", ("none", "flip", "published"), old="image_augment")


@dataclass(frozen=True)
class AdaptiveSection(Section):
    """EAS-SNN's learned sampler (data.representation=adaptive)."""

    fine_steps: int = _opt(4, "fine bins per output time step", allowed=_at_least(1), old="adaptive_fine_steps")
    channels: int = _opt(2, "channels of the sampled representation", allowed=_at_least(1), old="adaptive_channels")
    sat: bool = _opt(True, "spike-aware training (gradient through the sampling spikes)", old="adaptive_sat")
    rpd: bool = _opt(True, "residual potential dropout (drop windows still open at the end)", old="adaptive_rpd")


@dataclass(frozen=True)
class DataSection(Section):
    """What the model learns from, and how samples become tensors."""

    name: str = _opt("synth", "'synth' (built-in simulated actions, no download) or a dataset from "
                     "`spikmamba datasets`", old="data_name")
    root: str = _opt("", "folder of the recorded training set (not used for synth)", only="recorded",
                     old="data_root")
    test_root: str = _opt("", "folder of the recorded test set; empty = no test set (synth has its own)",
                          only="recorded")
    val_fraction: float = _opt(0.0, "fraction of the training set held out (stratified, seeded) to pick the best "
                               "epoch", allowed=_between(0.0, 1.0))
    representation: str = _opt("frames", "event representation; 'adaptive' = EAS-SNN's learned sampler over "
                               "frames x data.adaptive.fine_steps fine bins, trained with the model",
                               ("frames", "voxel", "count", "afe", "adaptive"))
    split_by: str = _opt("time", "how frames slice a recording: equal time or equal event count", ("time", "number"))
    frames: int = _opt(8, "time steps T (frames or voxel bins) per sample", allowed=_at_least(1))
    resolution: int = _opt(0, "resize frames to resolution x resolution pixels; 0 = the sensor size",
                           allowed=_at_least(0))
    batch_size: int = _opt(16, "global batch size (split across processes under torchrun)", allowed=_at_least(1))
    num_workers: int = _opt(-1, "DataLoader worker processes per training process; -1 = from the CPU count (0 for "
                            "the in-memory synth data)", allowed=_at_least(-1))
    augment_shift: int = _opt(2, "random translation of each training sample by up to this many pixels (0 = off)",
                              allowed=_at_least(0))
    transforms: list = _opt([], "event transforms, in order (YAML list, e.g. [Denoise, {RandomFlip: {p: 0.5}}, "
                            "{DropEvent: {p: 0.1}}]); random ones draw per sample from (seed, epoch, sample) and only "
                            "in training; evaluation and predict use the deterministic form (RandomCrop -> CenterCrop)")
    cache_dir: str = _opt("", "folder for the representation cache (compact entries, safe to share between runs and "
                          "processes); empty = no cache", only="recorded")
    represent_on: str = _opt("auto", "where recorded events become frames (voxels, counts, AFE): 'cpu' in the loader "
                             "workers (with data.cache_dir), 'device' on the model's device from the events the "
                             "workers send, a batch at a time; 'auto' = device on CUDA unless data.cache_dir is set",
                             ("auto", "cpu", "device"))
    skip_unreadable: bool = _opt(False, "leave out samples that cannot be read or decoded (counted, listed in "
                                 "OUT_DIR/skipped.csv) instead of stopping with an error naming the file")
    allow_outside_root: bool = _opt(False, "let a dataset's list files and symbolic links reach files outside "
                                    "data.root / data.test_root (a folder of links to recordings elsewhere, a list of "
                                    "absolute paths); off, such paths are refused")
    max_skipped_fraction: float = _opt(0.05, "with data.skip_unreadable: stop when more than this fraction of the "
                                       "samples read so far had to be left out",
                                       allowed=_between(0.0, 1.0, hi_open=False))
    synth: SynthSection = _section(SynthSection)
    video: VideoSection = _section(VideoSection)
    images: ImagesSection = _section(ImagesSection)
    adaptive: AdaptiveSection = _section(AdaptiveSection)

    def relations(self, key: str, source: str) -> None:
        if self.transforms:
            from ..events.transforms import check_transforms_spec

            try:
                check_transforms_spec(self.transforms)
            except ValueError as err:
                raise InputError(f"config key '{key}.transforms': {err} ({source})") from None
        if self.represent_on == "device" and self.cache_dir:
            raise InputError(f"config key '{key}.cache_dir' caches representations built on the CPU; with "
                             f"{key}.represent_on=device the workers send events and nothing is cached: drop one of "
                             f"the two ({source})")
        if self.representation != "adaptive":
            _refuse_unused(self.adaptive, f"{key}.adaptive", f"with {key}.representation=adaptive "
                           f"(it is {self.representation!r})", source)
        if self.name == "synth":
            for f in dataclasses.fields(self):
                if f.metadata.get("only") == "recorded" and getattr(self, f.name):
                    raise InputError(
                        f"config key '{key}.{f.name}' is set ({shown(getattr(self, f.name))}) but {key}.name is "
                        f"'synth', the built-in simulated data, which reads no folder; to train on recorded data "
                        f"set {key}.name=<dataset> too (`spikmamba datasets` lists them), or drop {key}.{f.name} "
                        f"({source})")
            modality = "events"
        else:
            from ..data import DATASETS

            if self.name not in DATASETS:
                raise InputError(f"config key '{key}.name' is {shown(self.name)}; choose 'synth' or one of "
                                 f"{', '.join(DATASETS)} ({source})")
            _refuse_unused(self.synth, f"{key}.synth", f"by the built-in synth data; {key}.name={shown(self.name)} "
                           f"reads its samples from {key}.root", source)
            modality = DATASETS[self.name].modality
        if modality != "video":
            _refuse_unused(self.video, f"{key}.video", f"by video datasets; {key}.name={shown(self.name)} holds "
                           f"{modality}", source)
        if modality != "image":
            _refuse_unused(self.images, f"{key}.images", f"by image datasets; {key}.name={shown(self.name)} holds "
                           f"{modality}", source)


@dataclass(frozen=True)
class OptimSection(Section):
    """The optimizer and the loss."""

    name: str = _opt("adamw", "optimizer (adam = L2 weight decay, as the published SpikMamba recipe)",
                     ("adamw", "adam", "sgd"), old="optimizer")
    lr: float = _opt(5e-3, "peak learning rate, reached after warm-up", allowed=_POSITIVE)
    momentum: float = _opt(0.9, "SGD momentum (sgd only)", allowed=_between(0.0, 1.0))
    weight_decay: float = _opt(0.05, "decoupled weight decay (AdamW) or L2 (SGD)", allowed=_at_least(0.0))
    label_smoothing: float = _opt(0.1, "label smoothing of the cross-entropy loss", allowed=_between(0.0, 1.0))
    ema_decay: float = _opt(0.0, "keep an exponential moving average of the weights with this decay (e.g. 0.9998) "
                            "and evaluate / save it; 0 = off", allowed=_between(0.0, 1.0))
    clip_grad: float = _opt(1.0, "clip the gradient norm to this value (0 = off)", allowed=_at_least(0.0))
    skip_nonfinite: int = _opt(0, "skip up to this many steps whose loss or gradient is NaN/inf (0 = stop at the "
                               "first)", allowed=_at_least(0))


@dataclass(frozen=True)
class ScheduleSection(Section):
    """How long, and the learning rate over time."""

    name: str = _opt("cosine", "learning-rate schedule after warm-up", ("cosine", "step", "constant"), old="schedule")
    epochs: int = _opt(14, "training epochs", allowed=_at_least(1))
    max_steps: int = _opt(0, "stop after this many optimizer steps in all (smoke runs, budgets); 0 = run every "
                          "epoch. The schedule still spans `schedule.epochs`, so a longer run resumed from it is the "
                          "same run", allowed=_at_least(0))
    eval_every: int = _opt(1, "validate every this many epochs (and after the last)", allowed=_at_least(1))
    limit_val_batches: int = _opt(0, "validate on at most this many batches per process (a fixed seeded subset); "
                                  "0 = the whole validation split", allowed=_at_least(0))
    warmup_epochs: float = _opt(1.0, "linear warm-up length in epochs (may be fractional)", allowed=_at_least(0.0))
    min_lr: float = _opt(0.0, "cosine schedule: the learning rate it decays to", allowed=_at_least(0.0))
    step_epochs: int = _opt(10, "step schedule: multiply the learning rate by schedule.step_gamma every this many "
                            "epochs", allowed=_at_least(1))
    step_gamma: float = _opt(0.1, "step schedule: decay factor", allowed=((lambda v: 0 < v <= 1), "in (0, 1]"))

    def relations(self, key: str, source: str) -> None:
        if self.warmup_epochs > self.epochs:
            raise InputError(f"config key '{key}.warmup_epochs' is {self.warmup_epochs!r}, longer than "
                             f"{key}.epochs={self.epochs}; the learning rate would never reach optim.lr ({source})")


@dataclass(frozen=True)
class DeviceSection(Section):
    """Where and in what precision."""

    name: str = _opt("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'", old="device")
    amp: str = _opt("none", "mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA, with a grad scaler)",
                    ("none", "bf16", "fp16"))
    compile: bool = _opt(False, "compile the model with torch.compile for training and evaluation (the first steps "
                         "take longer while it compiles; `spikmamba bench model-train-step-compiled` measures what "
                         "it gains here)")
    compile_mode: str = _opt("default", "torch.compile's mode, with device.compile",
                             ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))

    def relations(self, key: str, source: str) -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.name):
            raise InputError(f"config key '{key}.name' is {shown(self.name)}; use 'auto', 'cpu', 'cuda' or 'cuda:N' "
                             f"({source})")


@dataclass(frozen=True)
class RunSection(Section):
    """Seed and outputs."""

    seed: int = _opt(0, "seed of data generation, initialisation, shuffling and augmentation",
                     allowed=_between(0, 2**32))
    out_dir: str = _opt("runs/synth", "folder for checkpoints (best.pt, last.pt), config.yaml, log.csv, "
                        "TensorBoard events")
    overwrite: bool = _opt(False, "write into run.out_dir even when it holds another run's files (they are removed "
                           "first); by default a new run goes to the first free out_dir-2, out_dir-3, ...")
    checkpoint_every: int = _opt(0, "also write last.pt every this many steps (0 = at the end of each epoch only)",
                                 allowed=_at_least(0))
    tensorboard: bool = _opt(True, "write TensorBoard scalars per epoch when the tensorboard package is installed")
    progress: bool = _opt(True, "show progress bars and per-epoch lines")

    def relations(self, key: str, source: str) -> None:
        if not self.out_dir.strip():
            raise InputError(f"config key '{key}.out_dir' is empty; name the folder the run writes, e.g. "
                             f"{key}.out_dir=runs/mine ({source})")


@dataclass(frozen=True)
class TrainConfig(Section):
    """The whole experiment: one section per concern."""

    model: ModelSection = _section(ModelSection)
    data: DataSection = _section(DataSection)
    optim: OptimSection = _section(OptimSection)
    schedule: ScheduleSection = _section(ScheduleSection)
    device: DeviceSection = _section(DeviceSection)
    run: RunSection = _section(RunSection)

    def check(self, key: str = "", source: str = "config") -> None:
        """Every section, then what spans sections."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).check(f.name, source)
        if self.schedule.min_lr > self.optim.lr:
            raise InputError(f"config key 'schedule.min_lr' is {self.schedule.min_lr!r}, above "
                             f"optim.lr={self.optim.lr!r}; the cosine schedule decays from optim.lr down to "
                             f"schedule.min_lr, so it must be <= optim.lr ({source})")

    def replace(self, changes: dict, source: str = "TrainConfig.replace") -> TrainConfig:
        """A copy with ``changes`` (``{"optim.lr": 0.01}``) applied, typed and checked like overrides."""
        return _set(self, changes.items(), source)


def config_leaves(section: type[Section] = TrainConfig, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field]]:
    """``(key, field)`` of every key, in declaration order (a section's own keys before its subsections')."""
    fields = dataclasses.fields(section)
    for f in fields:
        if not f.metadata.get("section"):
            yield f"{prefix}{f.name}", f
    for f in fields:
        if f.metadata.get("section"):
            yield from config_leaves(f.default_factory, f"{prefix}{f.name}.")


def config_keys() -> list[str]:
    """Every key as written in YAML sections and ``key=value`` overrides (``optim.lr``)."""
    return [key for key, _ in config_leaves()]


def _old_names() -> dict[str, str]:
    """The flat name of earlier versions (``lr``, ``data_root``) -> the key."""
    return {f.metadata["old"] or key.rsplit(".", 1)[1]: key for key, f in config_leaves()}


def value_at(cfg: Section, key: str):
    """The value of a dotted ``key`` in ``cfg``."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _coerce(key: str, value, current, source: str):
    """``value`` as the type of the field's default, or an InputError naming key and source."""
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


def _key_of(given: str, leaves: dict, old: dict) -> tuple[str | None, bool]:
    """``(key, spelled the old way)`` for a key as given: its path (``optim.lr``), or the flat name
    of earlier versions (``lr``; also ``adaptive.fine_steps`` for ``adaptive_fine_steps``)."""
    if given in leaves:
        return given, False
    for name in (given, given.replace(".", "_")):
        if name in old:
            return old[name], True
    return None, False


def _rebuilt(section: Section, updates: dict, prefix: str = "") -> Section:
    """``section`` with the values in ``updates`` (full keys) set; untouched subsections are shared."""
    changes = {}
    for f in dataclasses.fields(section):
        key = f"{prefix}{f.name}"
        if f.metadata.get("section"):
            if any(k.startswith(key + ".") for k in updates):
                changes[f.name] = _rebuilt(getattr(section, f.name), updates, key + ".")
        elif key in updates:
            changes[f.name] = updates[key]
    return dataclasses.replace(section, **changes) if changes else section


def _set(cfg: TrainConfig, pairs: Iterable, source: str, note_old_keys: bool = True) -> TrainConfig:
    leaves, old = dict(config_leaves()), _old_names()
    updates = {}
    for given, value in pairs:
        key, is_old = _key_of(given, leaves, old)
        if key is None:
            close = difflib.get_close_matches(given, list(leaves) + list(old), n=3, cutoff=0.6)
            close = list(dict.fromkeys(old.get(c, c) for c in close))
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise InputError(f"unknown config key {shown(given)} ({source}); {hint}`spikmamba train --help` lists them")
        if is_old and note_old_keys:
            warnings.warn(f"config key {given!r} is now {key!r}; the old name still works in this release",
                          FutureWarning, stacklevel=4)
        value = _coerce(given, value, value_at(cfg, key), source)
        choices = leaves[key].metadata.get("choices")
        if choices and value not in choices:
            raise InputError(f"config key {given!r} must be one of {', '.join(choices)}; got {shown(value)} ({source})")
        updates[key] = value
    return _rebuilt(cfg, updates)


def apply_overrides(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings; unknown keys and bad values raise an InputError naming the key."""
    pairs = []
    for item in items:
        if "=" not in item:
            raise InputError(f"override {shown(item)} is not key=value (e.g. schedule.epochs=5)")
        pairs.append(tuple(item.split("=", 1)))
    return _set(cfg, pairs, "command line")


def _flatten(d: dict, mapping_keys: set, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in mapping_keys:
            yield from _flatten(v, mapping_keys, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def config_from_dict(doc: dict, source: str, base: TrainConfig | None = None,
                     note_old_keys: bool = True) -> TrainConfig:
    """Validate a mapping (in sections, or flat as earlier versions wrote it) into a TrainConfig;
    errors name the key and ``source``. ``note_old_keys``: warn about flat keys (not for configs
    stored inside checkpoints of earlier versions, which are flat by design)."""
    mapping_keys = {key for key, f in config_leaves() if isinstance(value_at(TrainConfig(), key), dict)}
    mapping_keys |= {name for name, key in _old_names().items() if key in mapping_keys}
    return _set(base or TrainConfig(), list(_flatten(doc, mapping_keys)), source, note_old_keys)


def config_sections(cfg: TrainConfig) -> dict:
    """``cfg`` as nested sections, the way YAML configs are written (``{"optim": {"lr": ...}}``)."""
    return dataclasses.asdict(cfg)


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


def as_overrides(values: dict) -> list[str]:
    """``key=value`` overrides for a mapping of keys to values (``{"optim.lr": 0.1}`` ->
    ``["optim.lr=0.1"]``): what a script passes to ``spikmamba train`` in a subprocess."""
    import json

    return [f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in values.items()]


def validate_config(cfg: TrainConfig, source: str = "config") -> TrainConfig:
    """Check value ranges and relations between keys of a complete config; an InputError names the
    key, its value and what is allowed. Called where a run starts (train, test, energy), once every
    source (YAML, command line, checkpoint) has been applied."""
    cfg.check(source=source)
    return cfg


def config_help() -> str:
    """Every key by section, with its help, choices and default: the epilog of ``train --help``."""
    lines = ["config keys, by section (YAML: nested sections; command line: optim.lr=0.001; the default is in "
             "brackets):"]
    section, defaults = None, TrainConfig()
    width = max(len(key.rsplit(".", 1)[1]) for key in config_keys())
    for key, f in config_leaves():
        if key.rsplit(".", 1)[0] != section:
            section = key.rsplit(".", 1)[0]
            what = type(value_at(defaults, section)).__doc__
            lines.append(f"  {section}:" + (f" {what.strip()}" if what else ""))
        choices = f" {{{'|'.join(f.metadata['choices'])}}}" if "choices" in f.metadata else ""
        leaf = key.rsplit(".", 1)[1]
        lines.append(f"    {leaf:<{width}} {f.metadata['help']}{choices} [{value_at(defaults, key)!r}]")
    return "\n".join(lines)
