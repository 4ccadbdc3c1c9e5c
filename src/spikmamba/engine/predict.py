"""``spikmamba predict``: a trained model on files it has not seen.

:func:`load_predictor` gives a :class:`Predictor` from a checkpoint, a weights folder, a zoo tag
or an ONNX file (run by onnxruntime). :func:`predict_files` reads event, image or video files of
any supported format, turns each into the tensor the model was evaluated on (the representation
is stored with the weights, the transforms in the config) and returns class probabilities, and
accuracy where a labels file names the files' classes.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, stored_config
from .device import resolve_device
from .inputs import (
    EMPTY,
    EmptyRecording,
    geometry_of,
    load_input_file,
    representation_from_dict,
)
from .loader import SequentialBatches, Skipped, make_loader
from .metrics import ClassificationMetrics


def natural_key(path) -> tuple:
    """Sort key that orders numbers by value: ``2.bs2`` before ``10.bs2``, ``clip9`` before ``clip10``."""
    import re

    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", str(path)) if part)


def collect_input_files(paths, extensions: tuple[str, ...] | None = None, what: str = "event") -> list[Path]:
    """Files named directly, plus every file with a known extension (event files by default) under named folders."""
    from ..events.io import EVENT_FILE_EXTENSIONS

    extensions = extensions or EVENT_FILE_EXTENSIONS
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted((f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(extensions)),
                           key=natural_key)
            if not found:
                raise FileNotFoundError(f"{p} holds no {what} files (extensions {', '.join(extensions)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return files


def _without_path(message: str, path) -> str:
    """The reason alone: the file is reported beside it, so a message that starts with the path
    (as reader errors do) would name it twice."""
    for prefix in (str(path), str(Path(path).resolve())):
        if message.startswith(prefix):
            return message[len(prefix):].lstrip(":").strip()
    return message


class InputFiles(torch.utils.data.Dataset):
    """Files to classify, each prepared as the evaluation data were; an unreadable one becomes a
    :class:`~.loader.Skipped` record with the reason (reported, the others still classified)."""

    def __init__(self, files, rep, transforms=None, sensor_size=None, event_format=None):
        self.files, self.rep, self.transforms, self.sensor_size = list(files), rep, transforms, sensor_size
        self.event_format = event_format

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key):
        i = key[1] if isinstance(key, tuple) else key
        f = self.files[i]
        try:
            return load_input_file(f, self.rep, self.transforms, self.sensor_size, self.event_format), 0, i
        except (ValueError, OSError, ImportError) as err:
            return Skipped(i, str(f), _without_path(str(err), f), empty=isinstance(err, EmptyRecording))


@dataclass
class Predictor:
    """A model ready to classify files: its forward (PyTorch or ONNX Runtime), class names, and
    how a file becomes its input (representation, transforms)."""
    forward: object
    classes: list
    representation: object
    transforms: list | None
    name: str
    module: torch.nn.Module | None = None  # the PyTorch model (also behind an ONNX Runtime forward)


def load_predictor(checkpoint: str | None = None, model: str | None = None, device: str = "cpu",
                   backend: str = "torch") -> Predictor:
    """From a checkpoint, or from ``model``: a weights folder or a shipped ``name.tag``
    (``spikmamba_tiny_sps.nmnist``). ``backend="onnxruntime"`` exports the model to ONNX first
    (checked against PyTorch) and runs it with ONNX Runtime."""
    from ..models.factory import load_folder
    from ..models.registry import resolve_model_source
    from ..models.weights import read_config

    if (checkpoint is None) == (model is None):
        raise InputError("give exactly one of --checkpoint CKPT or --model NAME.TAG|FOLDER|FILE.onnx")
    source = checkpoint if checkpoint is not None else model
    if str(source).lower().endswith(".onnx"):
        return onnx_predictor(source)
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        if "representation" not in ckpt:
            raise CheckpointError(
                f"{checkpoint} does not record how events became tensors; it cannot predict from files"
            )
        net, _ = model_from_checkpoint(checkpoint, ckpt)
        info = {"model": ckpt["model_name"], "classes": list(ckpt["classes"]), "representation": ckpt["representation"],
                "transforms": stored_config(ckpt, checkpoint).data.transforms or None}
    else:
        _, folder = resolve_model_source(model)
        folder_cfg = read_config(folder)
        if not folder_cfg.get("classes") or not folder_cfg.get("representation"):
            raise InputError(f"{model}: its config.json lacks the class names or the representation; it cannot "
                             f"classify files")
        folder_representation(folder_cfg, Path(folder) / "config.json")
        net, _ = load_folder(folder)
        info = {"model": folder_cfg["model"], "classes": list(folder_cfg["classes"]),
                "representation": folder_cfg["representation"], "transforms": folder_cfg.get("transforms") or None}
    net.eval()
    rep = representation_from_dict(info["representation"])
    if backend == "onnxruntime":
        forward = _onnx_forward(net, info)
    elif backend == "torch":
        dev = resolve_device(device)
        net.to(dev)
        forward = lambda x: net(x.to(dev)).float().cpu()  # noqa: E731
    else:
        raise InputError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
    return Predictor(forward, info["classes"], rep, info["transforms"], info["model"], net)


def folder_representation(cfg: dict, path):
    """The representation a weights folder's config states, checked against the model's input
    geometry (``geometry``, and the model's own arguments where the model takes them straight):
    a config edited to other frames or another resolution is refused, not run."""
    from ..models.weights import WeightsError

    try:
        rep = representation_from_dict(cfg["representation"])
        geometry = geometry_of(rep)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
        raise WeightsError(f"{path}: key 'representation' does not describe an input ({type(err).__name__}: "
                           f"{str(err)[:200]})") from None
    expected = dict(cfg.get("geometry") or {})
    if not cfg.get("adaptive"):  # behind the adaptive sampler the model's own frame count differs by design
        expected.update({k: v for k, v in cfg.get("kwargs", {}).items() if k in geometry})
    for key, value in expected.items():
        if geometry.get(key) != value:
            raise WeightsError(f"{path}: its representation gives {key}={geometry.get(key)}, but the model takes "
                               f"{key}={value}; the representation was changed apart from the weights")
    return rep


def folder_labels(folder: Path) -> tuple[Path, dict] | None:
    """``(labels file, {file name or stem: class})`` of a folder that states its labels: the
    ``labels.csv`` of ``spikmamba synth`` (``file,class_id,class_name``, or ``file,class``) or an
    N-MNIST-style ``labels.txt`` (a header line, then ``sample<TAB>class``)."""
    csv_path, txt_path = folder / "labels.csv", folder / "labels.txt"
    labels = {}
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                name = row.get("file")
                label = row.get("class_name") or row.get("class") or row.get("label")
                if name and label:
                    labels[name] = label
        return csv_path, labels
    if txt_path.is_file():
        for line in txt_path.read_text(errors="replace").splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2:
                labels[parts[0]] = parts[1]
        return txt_path, labels
    return None


def score_labelled(paths, predictions: list, classes: list) -> dict | None:
    """Accuracy and confusion matrix of the predictions whose files a labels file names (see
    :func:`folder_labels`); None when no folder given states labels."""
    truth, sources = {}, []
    for folder in (Path(p) for p in paths):
        found = folder_labels(folder) if folder.is_dir() else None
        if found is None:
            continue
        sources.append(str(found[0]))
        for name, label in found[1].items():
            truth[str(folder / name)] = label
            truth.setdefault(str(folder / Path(name).stem), label)
    if not sources:
        return None
    index = {c: i for i, c in enumerate(classes)}
    metrics = ClassificationMetrics(len(classes), topk=1)
    unknown, unlabelled = 0, 0
    for p in predictions:
        f = Path(p["file"])
        label = truth.get(str(f), truth.get(str(f.with_suffix(""))))
        if label is None or p["probability"] is None:
            unlabelled += 1
            continue
        if label not in index:
            unknown += 1
            continue
        scores = torch.full((1, len(classes)), -1.0)
        scores[0, index[p["prediction"]]] = 1.0
        metrics.update(scores, torch.tensor([index[label]]))
    return {"labels": sources, "unlabelled": unlabelled, "unknown_class": unknown, **metrics.summary(classes)}


def onnx_predictor(path) -> Predictor:
    """A :class:`Predictor` over an ONNX file that ``spikmamba export --format onnx`` wrote: its
    class names and representation travel in the file's metadata; ONNX Runtime runs it."""
    from ..models.weights import WeightsError
    from .export import onnx_metadata

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"ONNX file {path} does not exist")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise WeightsError(f"{path}: running an ONNX file needs onnxruntime: pip install 'spikmamba[export]'") from None
    try:
        info = onnx_metadata(path)
    except Exception as err:  # the onnx library's own decode errors
        raise WeightsError(f"{path} is not a readable ONNX file ({type(err).__name__}: {str(err)[:200]})") from None
    missing = [k for k in ("classes", "representation") if not info.get(k)]
    if missing:
        raise WeightsError(f"{path} does not carry {' or '.join(missing)} in its metadata; export it with "
                           f"`spikmamba export --format onnx`, which records them")
    folder_representation({"representation": info["representation"], "geometry": info.get("geometry")}, path)
    return Predictor(
        _onnxruntime_forward(path),
        list(info["classes"]),
        representation_from_dict(info["representation"]),
        info.get("transforms") or None,
        info.get("model", path.stem),
        None,
    )


def _onnxruntime_forward(path):
    """A batch -> logits function running the ONNX file at ``path`` with ONNX Runtime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0]).float()


def _onnx_forward(net, info: dict):
    from .export import cached_onnx

    return _onnxruntime_forward(cached_onnx(net, info))


@torch.no_grad()
def predict_files(checkpoint: str | None, paths, topk: int = 5, batch_size: int = 16, device: str = "cpu",
                  class_names: dict | None = None, num_workers: int = -1, model: str | None = None,
                  backend: str = "torch", sensor_size=None, event_format=None) -> dict:
    """``{"predictions": [...], "errors": [...]}``: for each readable file the top-``topk`` classes with
    probabilities; a file that cannot be read or represented is listed under errors with the reason.
    Event models read event files, image models (SVMamba) image files, video models (ReSpike) video
    files, one prediction per video from the mean of its clips' logits. The model comes from a
    checkpoint or from ``model`` (a weights folder or a shipped ``name.tag``); ``class_names``
    (class index -> name, e.g. from a class-index JSON) replaces the names it stores."""
    if not isinstance(topk, int) or topk < 1:
        raise InputError(f"--top must be >= 1 class, got {topk}")
    predictor = load_predictor(checkpoint, model, device, backend)
    rep, transforms, classes = predictor.representation, predictor.transforms, list(predictor.classes)
    if class_names:
        classes = [str(class_names.get(str(i), class_names.get(i, c))) for i, c in enumerate(classes)]
    run = predictor.forward
    k = min(topk, len(classes))
    predictions, errors = [], []

    def report(name, p):
        top = p.topk(k)
        predictions.append({"file": str(name), "prediction": classes[int(top.indices[0])],
                            "probability": float(top.values[0]),
                            "top": [{"class": classes[int(i)], "probability": float(v)}
                                    for v, i in zip(top.values, top.indices)]})

    from ..data.images import IMAGE_EXTENSIONS, ImageRepresentation
    from ..data.video import VIDEO_EXTENSIONS, VideoRepresentation
    from .loader import default_num_workers

    kinds = {ImageRepresentation: (IMAGE_EXTENSIONS, "image"), VideoRepresentation: (VIDEO_EXTENSIONS, "video")}
    files = collect_input_files(paths, *kinds.get(type(rep), (None, "event")))
    view = InputFiles(files, rep, transforms, sensor_size, event_format)
    if isinstance(rep, VideoRepresentation):  # one prediction per video: the mean of its clips' logits
        for i in range(len(view)):
            item = view[i]
            if isinstance(item, Skipped):
                errors.append({"file": item.source, "error": item.reason})
                continue
            x = item[0]
            logits = torch.cat([run(x[j:j + batch_size]) for j in range(0, len(x), batch_size)])
            report(files[i], logits.mean(0).softmax(0))
    else:  # files read in the loader's workers, batched in file order
        workers = num_workers if num_workers >= 0 else default_num_workers(False)
        for b in make_loader(view, SequentialBatches(len(view), batch_size), min(workers, len(view))):
            errors += [{"file": s.source, "error": s.reason} for s in b.skipped if not s.empty]
            for s in b.skipped:  # labelled as `--window` labels an empty window, never given a class
                if s.empty:
                    predictions.append({"file": s.source, "prediction": EMPTY, "probability": None, "top": []})
            if b.x is not None:
                for pos, p in zip(b.position.tolist(), run(b.x).softmax(1)):
                    report(files[pos], p)
        order = {str(f): i for i, f in enumerate(files)}
        errors.sort(key=lambda e: order[e["file"]])
        predictions.sort(key=lambda p: order[p["file"]])
    result = {"checkpoint": str(checkpoint) if checkpoint else None, "source": str(checkpoint or model),
              "model": predictor.name, "backend": backend, "predictions": predictions, "errors": errors}
    scored = score_labelled(paths, predictions, classes)
    if scored is not None:
        result["labelled"] = scored
    return result
