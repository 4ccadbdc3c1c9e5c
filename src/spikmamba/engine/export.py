"""``spikmamba export``: a trained model as a weights folder, an ONNX file, or a NIR graph.

* **folder** (:func:`export_folder`): ``model.safetensors`` + ``config.json`` (model, arguments,
  classes, representation, transforms) + a model card, what the Hugging Face Hub stores;
  ``create_model(name, pretrained=folder)`` and ``spikmamba predict --model folder`` read it.
* **ONNX** (:func:`export_onnx`): the fused kernels run their plain-op twins while exporting
  (``nn/export_mode.py``), so the graph computes what the model computes. The batch dimension is
  dynamic. The TorchScript exporter is tried first (seconds); its graph is then run by ONNX
  Runtime at two batch sizes and compared with PyTorch, and when a shape was baked in (it
  happens where a model reshapes by its batch size) the ``torch.export`` exporter (slower,
  symbolic shapes) is used instead, and checked the same way. The class names, the
  representation and the transforms travel in the file's metadata.
* **NIR** (:mod:`.nir_export`): spiking CNNs made only of what NIR can express.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SpikmambaError
from .checkpoint import load_checkpoint, model_from_checkpoint, state_digest, stored_config
from .config import config_sections
from .inputs import input_spec, representation_from_dict
from .model import model_config


class ExportError(SpikmambaError, RuntimeError):
    """A model (or one of its modules) cannot be written in the requested format."""


def checkpoint_config(ckpt: dict, path) -> dict:
    """The weights-folder config of a checkpoint: model, arguments, classes, representation, transforms."""
    cfg = stored_config(ckpt, path)
    spec = model_config(cfg, len(ckpt["classes"]), **ckpt["geometry"])
    return {**spec, "classes": list(ckpt["classes"]), "representation": ckpt.get("representation"),
            "transforms": list(cfg.data.transforms), "geometry": dict(ckpt["geometry"])}


def export_folder(checkpoint, out, card: str | None = None, overwrite: bool = False) -> Path:
    """``best.pt`` / ``last.pt`` -> a weights folder (see the module docstring); an existing
    ``out`` that is not empty is refused unless ``overwrite``."""
    from ..models.weights import save_pretrained

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        held = sorted(p.name for p in out.iterdir())[:6] if out.is_dir() else []
        raise ExportError(f"{out} already exists{' and holds ' + ', '.join(held) if held else ''}; the export would "
                          f"replace it. Give another --out, or pass --overwrite to replace it")
    ckpt = load_checkpoint(checkpoint)
    model, _ = model_from_checkpoint(checkpoint, ckpt)
    config = checkpoint_config(ckpt, checkpoint)
    if card is None:
        card = default_card(config, checkpoint, ckpt)
    return save_pretrained(model, out, config, card)


def default_card(config: dict, checkpoint, ckpt: dict) -> str:
    """A model card from what the checkpoint knows (its config and, when the run wrote one, summary.json)."""
    summary_path = Path(checkpoint).parent / "summary.json"
    results = ""
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        for key in ("test_acc", "best_val_acc", "final_val_acc"):
            if s.get(key) is not None:
                results += f"- {key}: {s[key] * 100:.2f}%\n"
    cfg = config_sections(stored_config(ckpt, checkpoint))
    results = results or "- none recorded\n"
    return (f"# {config['model']} ({cfg['data']['name']})\n\n"
            f"Exported from `{Path(checkpoint).name}` (epoch {ckpt.get('epoch')}).\n\n"
            f"## Input\n\n```json\n{json.dumps(config.get('representation'), indent=2)}\n```\n\n"
            f"## Results\n\n{results}\n"
            f"## Config\n\n```json\n{json.dumps(cfg, indent=2)}\n```\n")


def example_input(representation: dict, batch: int = 1) -> torch.Tensor:
    """A batch of the input a model trained with ``representation`` takes (random values)."""
    shape, dtype = input_spec(representation_from_dict(representation))
    g = torch.Generator().manual_seed(0)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=g)
    return torch.rand((batch, *shape), generator=g)


def _check_onnx(path: Path, model: nn.Module, example: torch.Tensor) -> float | str:
    """Largest |ONNX Runtime - PyTorch| over two batch sizes, or why the graph does not run."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        worst = 0.0
        for x in (example, torch.cat([example, example[:1].flip(-1)])):
            with torch.no_grad():
                ref = model(x).float().numpy()
            got = session.run(None, {"input": x.numpy()})[0]
            if got.shape != ref.shape:
                return f"output shape {got.shape} for input batch {len(x)} (expected {ref.shape})"
            worst = max(worst, float(np.abs(got - ref).max()))
        return worst
    except Exception as err:  # ONNX Runtime refuses the graph (e.g. a reshape with the batch baked in)
        return f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"


def export_onnx(model: nn.Module, example: torch.Tensor, path, metadata: dict | None = None,
                opset: int = 18, tolerance: float = 1e-4) -> dict:
    """Write ``model`` as ONNX with a dynamic batch dimension, checked against PyTorch (see the
    module docstring); returns ``{"path", "exporter", "max_abs_diff"}``."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxruntime: pip install 'spikmamba[export]'") from None
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a folder; an ONNX export is one file: give a file name, such as "
                          f"{path / 'model.onnx'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with tempfile.TemporaryDirectory(prefix="spikmamba-onnx-") as work:  # removed whatever happens
        return _export_onnx_in(model, example, path, metadata or {}, opset, tolerance, Path(work))


@contextlib.contextmanager
def _silenced_output(work: Path):
    """Standard output and error sent to a file while an exporter runs: the TorchScript exporter
    writes the whole IR graph (hundreds of kB for ReSpike) and per-op notes from C++, where
    Python's redirection cannot reach; so the file descriptors themselves are redirected."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    saved = []
    try:
        with open(work / "exporter-output.txt", "wb") as sink:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(sink.fileno(), fd)
                except OSError:
                    pass
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)


def _export_onnx_in(model, example, path: Path, metadata: dict, opset: int, tolerance: float, work: Path) -> dict:
    tried = []
    for exporter in ("torchscript", "torch.export"):
        tmp = work / f"{exporter}.onnx"
        try:
            with warnings.catch_warnings(), torch.no_grad(), _silenced_output(work):
                warnings.simplefilter("ignore")
                if exporter == "torchscript":
                    torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=["logits"],
                                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                                      opset_version=opset, dynamo=False)
                else:
                    program = torch.onnx.export(model, (example,), input_names=["input"], output_names=["logits"],
                                                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                                                opset_version=opset, dynamo=True, verbose=False)
                    program.save(str(tmp))
        except Exception as err:
            tried.append(f"{exporter}: {type(err).__name__}: {_first_line(err)}")
            continue
        check = _check_onnx(tmp, model, example)
        if isinstance(check, float) and check <= tolerance * max(1.0, _scale(model, example)):
            _write_with_metadata(tmp, path, metadata)
            return {"path": str(path), "exporter": exporter, "max_abs_diff": check}
        tried.append(f"{exporter}: the graph does not reproduce the model ({check})")
    raise ExportError(f"{type(model).__name__} could not be exported to ONNX: " + "; ".join(tried))


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0][:300] if lines else "no detail"


def _scale(model: nn.Module, example: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model(example).abs().max())


def _write_with_metadata(src: Path, dst: Path, metadata: dict) -> None:
    import onnx

    proto = onnx.load(str(src))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def onnx_metadata(path) -> dict:
    """The spikmamba metadata an exported file carries (model, classes, representation, transforms)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in proto.metadata_props}


def user_cache_dir() -> Path:
    """Where spikmamba keeps what it can remake (ONNX exports for ``--backend onnxruntime``):
    ``$SPIKMAMBA_CACHE``, else ``$XDG_CACHE_HOME/spikmamba``, else ``~/.cache/spikmamba``."""
    if os.environ.get("SPIKMAMBA_CACHE"):
        return Path(os.environ["SPIKMAMBA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spikmamba"


def cached_onnx(model: nn.Module, info: dict) -> Path:
    """The ONNX export of ``model`` for ``info`` (model, classes, representation, transforms),
    made once and kept under :func:`user_cache_dir` by a digest of the weights, the metadata and
    the torch version: ``predict --backend onnxruntime`` exports on its first call only."""
    import hashlib

    made_for = json.dumps({**info, "torch": torch.__version__, "weights": state_digest(model.state_dict())},
                          sort_keys=True, default=str)
    path = user_cache_dir() / "onnx" / f"{hashlib.sha256(made_for.encode()).hexdigest()[:32]}.onnx"
    if not path.is_file():
        export_onnx(model, example_input(info["representation"], batch=2), path, info)
    return path


def export_checkpoint_onnx(checkpoint, out) -> dict:
    ckpt = load_checkpoint(checkpoint)
    model, _ = model_from_checkpoint(checkpoint, ckpt)
    config = checkpoint_config(ckpt, checkpoint)
    if config["representation"] is None:
        raise ExportError(f"{checkpoint} does not record its input representation; it cannot be exported")
    example = example_input(config["representation"], batch=2)
    return export_onnx(model, example, out, {k: config[k] for k in ("model", "classes", "representation",
                                                                      "transforms", "geometry")})


