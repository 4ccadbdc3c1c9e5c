"""Energy and sparsity report: firing rates, MACs, SOPs and estimated energy per layer.

The estimate is the standard one of the SNN literature (45 nm CMOS, Horowitz 2014):
``E = E_MAC * MACs + E_AC * SOPs`` with ``E_MAC = 4.6 pJ`` and ``E_AC = 0.9 pJ`` (both
configurable). What counts as a MAC and as an SOP is defined in :mod:`.ops`. The numbers are per
sample, averaged over the samples run. The ANN run is the same weights with every spiking
neuron replaced by the identity (the ``nosnn`` ablation), so all of its layers count as MAC.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from ..nn.functional import record_firing_rates, reset_net
from .ops import OpCounter


@dataclass(frozen=True)
class EnergyConstants:
    e_mac_pj: float = 4.6
    e_ac_pj: float = 0.9


@torch.no_grad()
def energy_report(model: nn.Module, batches, constants: EnergyConstants = EnergyConstants()) -> dict:
    """Run ``model`` on every tensor in ``batches``; per-sample counts per layer and in total."""
    model.eval()
    samples = 0
    with record_firing_rates(model) as rates, OpCounter(model) as ops:
        for x in batches:
            reset_net(model)  # each batch starts from resting neurons
            model(x)
            samples += len(x)
    if samples == 0:
        raise InputError("energy_report needs at least one sample")
    layers = []
    for rec in sorted(ops.layers.values(), key=lambda r: r.order):
        macs, sops = rec.dense_macs / samples, rec.sops / samples
        layers.append({"layer": rec.name, "kind": rec.kind, "input": "spikes" if rec.spike_fed else "dense",
                       "input_rate": rec.input_rate if rec.spike_fed else None, "macs": macs, "sops": sops,
                       "energy_mj": (macs * constants.e_mac_pj + sops * constants.e_ac_pj) * 1e-9})
    total_macs = sum(r["macs"] for r in layers)
    total_sops = sum(r["sops"] for r in layers)
    spiking = dict(rates)
    parts: dict[str, dict] = {}  # per top-level module: e.g. ReSpike's ann / snn / fusions / head
    for r in layers:
        p = parts.setdefault(r["layer"].split(".")[0], {"macs": 0.0, "sops": 0.0, "energy_mj": 0.0})
        for key in p:
            p[key] += r[key]
    return {
        "samples": samples,
        "constants": asdict(constants),
        "firing_rates": spiking,
        "mean_firing_rate": sum(spiking.values()) / len(spiking) if spiking else None,
        "layers": layers,
        "parts": parts,
        "total": {"macs": total_macs, "sops": total_sops,
                  "dense_equivalent_macs": sum(r.macs for r in ops.layers.values()) / samples,
                  "energy_mj": sum(r["energy_mj"] for r in layers)},
    }


def format_report(snn: dict, ann: dict | None = None) -> str:
    """A terminal table: one row per counted layer, then firing rates and totals."""
    rows = [f"{'layer':<44} {'kind':<16} {'input':<7} {'rate':>6} {'MMACs':>10} {'MSOPs':>10} {'energy uJ':>10}"]
    for r in snn["layers"]:
        rate = "" if r["input_rate"] is None else f"{r['input_rate']:.3f}"
        rows.append(f"{r['layer'][:44]:<44} {r['kind']:<16} {r['input']:<7} {rate:>6} {r['macs'] / 1e6:>10.3f} "
                    f"{r['sops'] / 1e6:>10.3f} {r['energy_mj'] * 1e3:>10.3f}")
    t = snn["total"]
    rows.append(
        f"{'total (per sample)':<44} {'':<16} {'':<7} {'':>6} {t['macs'] / 1e6:>10.3f} {t['sops'] / 1e6:>10.3f} "
        f"{t['energy_mj'] * 1e3:>10.3f}"
    )
    if len(snn.get("parts", {})) > 1:
        rows.append("")
        rows.append("by part (top-level module): MMACs, MSOPs, energy uJ")
        rows += [f"  {name:<42} {p['macs'] / 1e6:>10.3f} {p['sops'] / 1e6:>10.3f} {p['energy_mj'] * 1e3:>10.3f}"
                 for name, p in snn["parts"].items()]
    if snn["firing_rates"]:
        rows.append("")
        rows.append(f"firing rates (spikes per neuron per time step), mean {snn['mean_firing_rate']:.4f}:")
        rows += [f"  {name:<60} {rate:.4f}" for name, rate in snn["firing_rates"].items()]
    rows.append("")
    rows.append(
        f"SNN: {t['energy_mj']:.6f} mJ per sample ({t['macs'] / 1e6:.2f} M MACs at {snn['constants']['e_mac_pj']} pJ "
        f"+ {t['sops'] / 1e6:.2f} M SOPs at {snn['constants']['e_ac_pj']} pJ)"
    )
    if ann is not None:
        a = ann["total"]
        ratio = a["energy_mj"] / t["energy_mj"] if t["energy_mj"] else float("inf")
        rows.append(f"ANN (same weights, neurons -> identity): {a['energy_mj']:.6f} mJ per sample "
                    f"({a['macs'] / 1e6:.2f} M MACs); the SNN uses {ratio:.2f}x less energy")
    return "\n".join(rows)


def save_report(out: str | Path, snn: dict, ann: dict | None = None, title: str = "") -> list[Path]:
    """``energy.json``, ``energy.csv`` (one row per layer and run) and ``energy.png``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "energy.json").write_text(json.dumps({"snn": snn, "ann": ann}, indent=2))
    with open(out / "energy.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "layer", "kind", "input", "input_rate", "macs", "sops", "energy_mj"])
        for run, rep in (("snn", snn), ("ann", ann)):
            for r in (rep or {}).get("layers", []):
                w.writerow([run, r["layer"], r["kind"], r["input"], "" if r["input_rate"] is None else r["input_rate"],
                            r["macs"], r["sops"], r["energy_mj"]])
            if rep:
                w.writerow(
                    [run, "total", "", "", "", rep["total"]["macs"], rep["total"]["sops"], rep["total"]["energy_mj"]]
                )
    _plot(out / "energy.png", snn, ann, title)
    return [out / "energy.json", out / "energy.csv", out / "energy.png"]


def _plot(path: Path, snn: dict, ann: dict | None, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = snn["firing_rates"]
    names = [r["layer"] for r in snn["layers"]]
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 0.35 * max(len(names), len(rates)) + 3), 9))
    ax = axes[0]
    ax.bar(range(len(rates)), list(rates.values()), color="tab:orange")
    ax.set_xticks(range(len(rates)), list(rates), rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("firing rate")
    ax.set_title(f"{title} firing rate per spiking layer".strip())
    ax = axes[1]
    xs = range(len(names))
    width = 0.4 if ann else 0.8
    ax.bar([x - (width / 2 if ann else 0) for x in xs], [r["energy_mj"] * 1e3 for r in snn["layers"]], width,
           label="SNN", color="tab:blue")
    if ann:
        by_name = {r["layer"]: r["energy_mj"] for r in ann["layers"]}
        ax.bar([x + width / 2 for x in xs], [by_name.get(n, 0.0) * 1e3 for n in names], width, label="ANN",
               color="tab:gray")
        ax.legend()
    ax.set_xticks(list(xs), names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("energy per sample (uJ)")
    ax.set_yscale("log")
    ax.set_title("estimated energy per layer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
