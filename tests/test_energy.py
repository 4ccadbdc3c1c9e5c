"""Energy report: exact hand counts on a tiny network, our attention/scan formulas, the CLI."""
import json

import pytest
import torch
from torch import nn

from spikmamba.analysis import EnergyConstants, OpCounter, energy_report
from spikmamba.cli import main
from spikmamba.nn import LIFNode


def _tiny_snn(H=5, W=6):
    """conv1 (dense input) -> LIF (only channel 0 fires) -> conv2 -> LIF (only channel 0 fires) -> linear."""
    conv1 = nn.Conv2d(2, 4, 3, padding=1)
    conv2 = nn.Conv2d(4, 3, 3, padding=1)
    with torch.no_grad():
        conv1.weight.zero_()
        conv1.bias.copy_(torch.tensor([10.0, -10, -10, -10]))
        conv2.weight.zero_()
        conv2.bias.copy_(torch.tensor([10.0, -10, -10]))
    return nn.Sequential(conv1, LIFNode(step_mode="s"), conv2, LIFNode(step_mode="s"), nn.Flatten(),
                         nn.Linear(3 * H * W, 5))


def test_tiny_network_report_equals_the_hand_count():
    B, H, W = 3, 5, 6
    net = _tiny_snn(H, W)
    x = torch.rand(B, 2, H, W) + 0.5  # dense, non-binary input
    rep = energy_report(net, [x], EnergyConstants(4.6, 0.9))
    conv1_macs = H * W * 4 * 2 * 9            # per sample
    conv2_macs = H * W * 3 * 4 * 9
    lin_macs = 3 * H * W * 5
    rows = {r["layer"]: r for r in rep["layers"]}
    assert rows["0"]["input"] == "dense" and rows["0"]["macs"] == conv1_macs and rows["0"]["sops"] == 0
    assert rows["2"]["input"] == "spikes" and rows["2"]["input_rate"] == 0.25
    assert rows["2"]["macs"] == 0 and rows["2"]["sops"] == conv2_macs / 4
    assert rows["5"]["input"] == "spikes" and rows["5"]["input_rate"] == pytest.approx(1 / 3)
    assert rows["5"]["sops"] == pytest.approx(lin_macs / 3)
    assert rep["firing_rates"] == {"1": 0.25, "3": pytest.approx(1 / 3)}
    expected_pj = conv1_macs * 4.6 + (conv2_macs / 4 + lin_macs / 3) * 0.9
    assert rep["total"]["energy_mj"] == pytest.approx(expected_pj * 1e-9)
    assert rep["total"]["dense_equivalent_macs"] == conv1_macs + conv2_macs + lin_macs


def test_first_layer_counts_as_mac_even_for_binary_input():
    net = _tiny_snn()
    x = (torch.rand(2, 2, 5, 6) > 0.5).float()
    rows = {r["layer"]: r for r in energy_report(net, [x])["layers"]}
    assert rows["0"]["input"] == "dense" and rows["0"]["sops"] == 0


def test_attention_and_scan_formulas():
    from spikmamba.nn.attention import SpikingWindowLinearAttention
    from spikmamba.nn.ssm.mamba import Mamba

    attn = SpikingWindowLinearAttention(8, num_heads=2, window_size=2)
    with OpCounter(attn) as ops:
        attn(torch.rand(2, 1, 4, 4, 8))
    windows, heads, n, hd = 2 * 1 * 4, 2, 4, 4
    assert ops.layers["attention-matmul"].macs == windows * heads * (n * hd + 2 * n * hd * hd)
    assert ops.layers["qk"].macs == 2 * 16 * 8 * 16

    m = Mamba(d_model=8, d_state=4, expand=2)
    Bsz, L = 2, 7
    with OpCounter(m) as ops:
        m(torch.rand(Bsz, L, 8))
    D, R = m.d_inner, m.fwd.dt_rank
    assert ops.layers["fwd"].kind == "selective-scan"
    assert ops.layers["fwd"].macs == Bsz * L * (R * D + 4 * D * 4 + D)


def test_spikmamba_snn_and_ann_runs_share_dense_counts():
    from spikmamba.analysis import run_energy

    r = run_energy(
        model_name="spikmamba_tiny",
        overrides=["data.synth.sensor_size=16", "data.frames=4", "model.patch_size=4"],
        samples=4,
        batch_size=2,
    )
    snn, ann = r["snn"], r["ann"]
    assert snn["samples"] == 4 and ann is not None
    assert set(snn["firing_rates"]) >= {"patch_embed.lif", "sla_blocks.0.attn.qk_lif"}
    assert all(0.0 <= v <= 1.0 for v in snn["firing_rates"].values())
    assert ann["firing_rates"] == {}
    # the ANN twin does the same dense work; all of it is MAC
    assert ann["total"]["macs"] == pytest.approx(snn["total"]["dense_equivalent_macs"])
    assert snn["total"]["energy_mj"] <= ann["total"]["energy_mj"] * (1 + 1e-9)


def test_energy_command_writes_table_csv_json_png(tmp_path, capsys):
    out = tmp_path / "energy"
    rc = main(
        [
            "energy",
            "--model",
            "spikmamba_tiny",
            "--samples",
            "2",
            "--out",
            str(out),
            "data.synth.sensor_size=16",
            "data.frames=4",
            "model.patch_size=4",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "firing rates" in printed and "mJ per sample" in printed
    doc = json.loads((out / "energy.json").read_text())
    assert doc["snn"]["samples"] == 2 and doc["ann"]["samples"] == 2
    assert (out / "energy.csv").read_text().startswith("run,layer,kind,input")
    assert (out / "energy.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):  # neither --checkpoint nor --model
        main(["energy", "--samples", "2"])
