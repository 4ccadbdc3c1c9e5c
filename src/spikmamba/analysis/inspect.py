"""``spikmamba inspect``: the spikes of one sample made visible.

One file goes through the model exactly as ``predict`` would feed it (stored representation and
transforms). A forward hook on every spiking neuron records its output spikes: a multi-step
neuron returns ``[T, B, ...]`` (time first, as everywhere in ``nn``); a single-step neuron is
called once per step. From these come the firing rate of every layer at every time step
(``rates.csv``, ``rates.png``: a layers x steps heat map, because a model has dozens of layers)
and a spike raster of one layer (``raster.png``: neurons x steps, up to ``max_neurons``
neurons evenly spaced over the layer so the picture is not dominated by one channel).
"""
from __future__ import annotations

import csv
import difflib
import json
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..nn.functional import reset_net, spiking_layers


class SpikeRecorder:
    """Forward hooks keeping each spiking layer's output of one sample as a ``[T, neurons]`` bool array."""

    def __init__(self, model: torch.nn.Module):
        self.layers = [name for name, _ in spiking_layers(model)]
        self.steps: dict[str, list[np.ndarray]] = {name: [] for name in self.layers}
        self._hooks = [n.register_forward_hook(self._hook(name)) for name, n in spiking_layers(model)]

    def _hook(self, name):
        def record(module, _inputs, out):
            s = out.detach()
            if module.step_mode == "m":
                self.steps[name].extend(s[t, 0].reshape(-1).cpu().numpy() > 0 for t in range(s.shape[0]))
            else:
                self.steps[name].append(s[0].reshape(-1).cpu().numpy() > 0)
        return record

    def close(self) -> None:
        for h in self._hooks:
            h.remove()

    def spikes(self, name: str) -> np.ndarray:
        return np.stack(self.steps[name]) if self.steps[name] else np.zeros((0, 0), bool)


@torch.no_grad()
def inspect_spikes(file, out, checkpoint: str | None = None, model: str | None = None,
                   layer: str | None = None, max_neurons: int = 512, sensor_size=None,
                   event_format: str | None = None) -> dict:
    """Write ``rates.csv``, ``rates.png``, ``raster.png`` and ``inspect.json`` into ``out``
    (see the module docstring); ``layer`` defaults to the last spiking layer."""
    from ..engine.inputs import load_input_file
    from ..engine.predict import load_predictor

    predictor = load_predictor(checkpoint, model)
    net = predictor.module
    if net is None:
        raise InputError(f"{checkpoint or model} is an ONNX file: it holds no spiking layers to record; inspect the "
                         f"checkpoint or weights folder it was exported from")
    names = [name for name, _ in spiking_layers(net)]
    if not names:
        raise InputError(f"{predictor.name} has no spiking neurons to inspect (an ANN ablation?)")
    if layer is None:
        layer = names[-1]
    elif layer not in names:
        close = [n for n in names if layer in n][:3] or difflib.get_close_matches(layer, names, n=3, cutoff=0.4)
        hint = f"; did you mean {' or '.join(close)}?" if close else f"; the layers are: {', '.join(names)}"
        raise InputError(f"--layer {layer!r} is not a spiking layer of {predictor.name}{hint}")
    x = load_input_file(file, predictor.representation, predictor.transforms, sensor_size, event_format)
    from ..data.video import VideoRepresentation

    x = (
        x[:1] if isinstance(predictor.representation, VideoRepresentation) else x.unsqueeze(0)
    )  # a video: its first clip
    recorder = SpikeRecorder(net)
    try:
        reset_net(net)
        logits = net(x.to(next(net.parameters()).device)).float().cpu()
    finally:
        recorder.close()
    probs = logits.softmax(1)[0]
    top = int(probs.argmax())
    spikes_of = {name: recorder.spikes(name) for name in names}  # [T, neurons] each
    rates = {name: s.mean(axis=1) for name, s in spikes_of.items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "rates.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "step", "firing_rate", "neurons"])
        for name in names:
            w.writerows([name, t, f"{r:.6f}", spikes_of[name].shape[1]] for t, r in enumerate(rates[name]))
    title = f"{Path(file).name}: {predictor.name} predicts {predictor.classes[top]} ({float(probs[top]):.2f})"
    _plot_rates(out / "rates.png", names, rates, title)
    spikes = spikes_of[layer]
    shown = np.unique(np.linspace(0, spikes.shape[1] - 1, min(max_neurons, spikes.shape[1])).round().astype(int))
    _plot_raster(out / "raster.png", spikes[:, shown], layer, spikes.shape[1], title)
    summary = {"file": str(file), "model": predictor.name, "prediction": predictor.classes[top],
               "probability": float(probs[top]), "layer": layer, "layers": names,
               "rates": {name: [float(r) for r in rates[name]] for name in names},
               "raster_neurons": [int(i) for i in shown]}
    (out / "inspect.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "rates_png": str(out / "rates.png"), "rates_csv": str(out / "rates.csv"),
            "raster_png": str(out / "raster.png")}


def _plot_rates(path: Path, names, rates, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = max(len(r) for r in rates.values())
    grid = np.full((len(names), T), np.nan)
    for i, name in enumerate(names):
        grid[i, :len(rates[name])] = rates[name]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * T + 4), 0.28 * len(names) + 2))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("time step")
    ax.set_title(f"{title}\nfiring rate (spikes per neuron) per layer and time step", fontsize=9)
    fig.colorbar(im, ax=ax, label="firing rate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_raster(path: Path, spikes: np.ndarray, layer: str, total: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T, n = spikes.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.4 * T + 3), 6))
    ax.imshow(spikes.T, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    ax.set_xlabel("time step")
    ax.set_ylabel(f"neuron ({n} of {total}, evenly spaced)")
    ax.set_title(f"{title}\nspike raster of {layer}: {int(spikes.sum())} spikes, rate {spikes.mean():.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
