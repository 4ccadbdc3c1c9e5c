"""``spikmamba energy``: the energy report of a checkpoint (on its test data) or of an untrained model."""
from __future__ import annotations

from pathlib import Path

import torch

from ..engine.checkpoint import load_checkpoint, load_model_state, model_from_checkpoint, stored_config
from ..engine.config import TrainConfig, apply_overrides, validate_config
from ..engine.inputs import eval_view, geometry_of
from ..engine.model import UnknownModelArgument, build_model
from ..errors import InputError
from .energy import EnergyConstants, energy_report


def _inputs(cfg: TrainConfig, samples: int) -> tuple:
    """The first ``samples`` inputs of the test split (the training split when there is none), the
    classes and the representation."""
    from ..engine.loader import SequentialBatches, make_loader

    if cfg.data.name == "synth":
        cfg = cfg.replace({"data.synth.num_test": samples})
    view, classes, rep = eval_view(cfg, "test" if cfg.data.name == "synth" or cfg.data.test_root else "train")
    n = min(samples, len(view))
    batches = [b.x for b in make_loader(view, SequentialBatches(n, 64), 0) if b.x is not None]
    if not batches:
        raise InputError(f"none of the first {n} samples of {cfg.data.name} could be read")
    return torch.cat(batches), classes, rep


def _ann_twin(cfg: TrainConfig, num_classes: int, geometry: dict, state: dict):
    """The same model and weights with every spiking neuron replaced by the identity, or None
    when the model has no ``spiking`` switch."""
    try:
        twin = build_model(cfg.replace({"model.overrides": {**cfg.model.overrides, "spiking": False}}),
                           num_classes, **geometry, pretrained=False)
    except UnknownModelArgument:  # the model takes no `spiking` switch
        return None
    load_model_state(twin, state, "the ANN twin")
    return twin


def run_energy(checkpoint: str | None = None, model_name: str | None = None, overrides: list[str] | None = None,
               samples: int = 16, batch_size: int = 8, constants: EnergyConstants = EnergyConstants(),
               ann: bool = True) -> dict:
    """``{"snn": report, "ann": report or None, "model": name, "data": name}``."""
    if (checkpoint is None) == (model_name is None):
        raise InputError("give exactly one of --checkpoint CKPT or --model NAME")
    if checkpoint:
        ckpt = load_checkpoint(checkpoint)
        model, _ = model_from_checkpoint(checkpoint, ckpt)
        cfg = validate_config(apply_overrides(stored_config(ckpt, checkpoint), overrides or []))
        x = _inputs(cfg, samples)[0]
        num_classes, geometry = len(ckpt["classes"]), dict(ckpt["geometry"])
    else:
        cfg = validate_config(apply_overrides(TrainConfig().replace({"model.name": model_name, "run.progress": False}),
                                              overrides or []))
        x, classes, rep = _inputs(cfg, samples)
        geometry = geometry_of(rep)
        num_classes = len(classes)
        torch.manual_seed(cfg.run.seed)
        model = build_model(cfg, num_classes, **geometry).eval()
    batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    snn = energy_report(model, batches, constants)
    twin = _ann_twin(cfg, num_classes, geometry, model.state_dict()) if ann else None
    return {"model": cfg.model.name, "data": cfg.data.name, "snn": snn,
            "ann": energy_report(twin, batches, constants) if twin is not None else None}


def default_out_dir(checkpoint: str | None, model_name: str | None) -> Path:
    if checkpoint:
        return Path(checkpoint).parent / f"energy-{Path(checkpoint).stem}"
    return Path("runs") / "energy" / str(model_name)
