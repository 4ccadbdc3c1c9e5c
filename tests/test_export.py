"""Export (issue 20): weights folders, ONNX for every family (checked with ONNX Runtime), predict
through ONNX Runtime, and NIR for the spiking CNN with its LIF parameters mapped as documented."""
import json

import numpy as np
import pytest
import torch

from spikmamba.cli import main
from spikmamba.engine import TrainConfig, train
from spikmamba.models import create_model

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane

onnxruntime = pytest.importorskip("onnxruntime")

TINY = {"data.synth.sensor_size": 16, "data.frames": 4, "model.patch_size": 4, "data.synth.num_train": 32,
        "data.synth.num_test": 16, "data.batch_size": 16, "schedule.epochs": 1, "run.progress": False,
        "run.tensorboard": False, "model.name": "spikmamba_tiny"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig().replace({**TINY, "run.out_dir": str(out)}))
    return out


def test_a_checkpoint_becomes_a_weights_folder_that_predicts_the_same(run, tmp_path, capsys):
    assert (
        main(["export", "--checkpoint", str(run / "last.pt"), "--format", "folder", "--out", str(tmp_path / "w")]) == 0
    )
    assert {p.name for p in (tmp_path / "w").iterdir()} == {"model.safetensors", "config.json", "README.md"}
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())
    assert cfg["model"] == "spikmamba_tiny" and len(cfg["classes"]) == 10 and cfg["representation"]["kind"] == "frames"
    assert main(["synth", "--out", str(tmp_path / "clips"), "--count", "6", "--sensor-size", "16"]) == 0
    capsys.readouterr()
    outs = []
    for source in (["--checkpoint", str(run / "last.pt")], ["--model", str(tmp_path / "w")],
                   ["--checkpoint", str(run / "last.pt"), "--backend", "onnxruntime"]):
        assert main(["predict", *source, str(tmp_path / "clips"), "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out)["predictions"])
    for a, b in zip(outs[0], outs[1]):
        assert a["prediction"] == b["prediction"] and a["probability"] == pytest.approx(b["probability"], abs=1e-6)
    for a, b in zip(outs[0], outs[2]):  # ONNX Runtime
        assert a["prediction"] == b["prediction"] and a["probability"] == pytest.approx(b["probability"], abs=1e-4)


def _families():
    from spikmamba.models.adaptive import adaptive_front_end

    yield "spikmamba_tiny_sps", create_model("spikmamba_tiny_sps", img_size=16, patch_size=4, num_frames=2), \
        torch.rand(2, 2, 2, 16, 16)
    yield "svmamba_tiny", create_model("svmamba_tiny", dims=(8, 16), depths=(1, 1), num_frames=2), \
        torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8)
    yield "respike_tiny", create_model("respike_tiny", num_frames=8), torch.randint(0, 255, (2, 8, 3, 16, 16),
                                                                                     dtype=torch.uint8)
    yield "adaptive front-end", adaptive_front_end(create_model("spikmamba_tiny", img_size=16, patch_size=4,
                                                                num_frames=2), in_chans=2, channels=2, fine_steps=2), \
        torch.rand(2, 4, 2, 16, 16)
    yield "scnn_nmnist", create_model("scnn_nmnist", img_size=16, num_frames=3), torch.rand(2, 3, 2, 16, 16)


@pytest.mark.parametrize("family", [f[0] for f in _families()])
def test_every_family_exports_to_onnx_with_a_dynamic_batch(family, tmp_path, capfd):
    from spikmamba.engine.export import export_onnx

    name, model, x = next(f for f in _families() if f[0] == family)
    model.eval()
    r = export_onnx(model, x, tmp_path / "m.onnx", {"model": name})
    printed = capfd.readouterr()  # ReSpike's failing TorchScript export printed 260-450 kB of IR (issue 33, item 13)
    assert len(printed.out) + len(printed.err) < 1000, (printed.out[:300], printed.err[:300])
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    for batch in (1, 5):  # neither is the batch it was exported with
        xb = torch.cat([x] * 3)[:batch]
        with torch.no_grad():
            ref = model(xb).numpy()
        got = session.run(None, {"input": xb.numpy()})[0]
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert r["exporter"] in ("torchscript", "torch.export")


def test_nir_export_of_the_spiking_cnn_maps_every_parameter_and_simulates_the_same(tmp_path):
    nir = pytest.importorskip("nir")
    from spikmamba.engine.nir_export import to_nir

    torch.manual_seed(0)
    m = create_model("scnn_nmnist", img_size=16, num_frames=6, channels=(4, 8), tau=2.5, v_threshold=0.7)
    for bn in (m.layers[1], m.layers[5]):  # non-trivial statistics, so the folding is tested
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.1, 0.1)
    m.eval()
    nir.write(str(tmp_path / "m.nir"), to_nir(m, (2, 16, 16)))
    g = nir.read(str(tmp_path / "m.nir"))
    chain = ["input", "layers_0", "layers_2", "layers_3", "layers_4", "layers_6", "layers_7", "layers_8", "layers_9",
             "output"]
    assert sorted(g.edges) == sorted(zip(chain[:-1], chain[1:]))
    assert [type(g.nodes[k]).__name__ for k in chain] == ["Input", "Conv2d", "LIF", "AvgPool2d", "Conv2d", "LIF",
                                                          "AvgPool2d", "Flatten", "Affine", "Output"]
    lif = g.nodes["layers_2"]  # tau in time steps (dt = 1), r = 1 for decay_input, v_leak = v_reset
    assert np.all(lif.tau == 2.5) and np.all(lif.r == 1.0) and np.all(lif.v_leak == 0.0)
    assert np.all(lif.v_threshold == 0.7) and np.all(lif.v_reset == 0.0) and lif.tau.shape == (4, 16, 16)
    # simulate the read-back graph step by step (forward Euler, dt = 1) and compare with the model
    x = torch.rand(2, 6, 2, 16, 16) * 3
    with torch.no_grad():
        expected = m(x)
    out = []
    state = {}
    for t in range(6):
        h = x[:, t].double()
        for k in chain[1:-1]:
            node = g.nodes[k]
            kind = type(node).__name__
            if kind == "Conv2d":
                h = torch.nn.functional.conv2d(h, torch.from_numpy(node.weight), torch.from_numpy(node.bias),
                                               stride=tuple(node.stride), padding=tuple(node.padding))
            elif kind == "LIF":
                v = state.get(k, torch.zeros_like(h))
                tau, r, leak = (torch.from_numpy(a) for a in (node.tau, node.r, node.v_leak))
                v = v + (leak - v + r * h) / tau
                s = (v >= torch.from_numpy(node.v_threshold)).double()
                state[k] = torch.where(s.bool(), torch.from_numpy(node.v_reset).expand_as(v), v)
                h = s
            elif kind == "AvgPool2d":
                h = torch.nn.functional.avg_pool2d(h, tuple(node.kernel_size), tuple(node.stride))
            elif kind == "Flatten":
                h = h.flatten(1)
            else:
                h = h @ torch.from_numpy(node.weight).T + torch.from_numpy(node.bias)
        out.append(h)
    torch.testing.assert_close(torch.stack(out).mean(0).float(), expected, atol=1e-4, rtol=1e-4)


def test_models_nir_cannot_express_are_refused_naming_the_module(run, capsys):
    pytest.importorskip("nir")
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--format", "nir"]) == 2
    err = capsys.readouterr().err
    assert "SpikMamba is not a plain chain of layers that NIR can express" in err
    assert "the first module NIR cannot express is" in err


def test_the_spiking_cnn_trains_and_exports_from_the_command(tmp_path, capsys):
    pytest.importorskip("nir")
    cfg = {**TINY, "model.name": "scnn_nmnist", "schedule.epochs": 3, "data.synth.num_train": 48, "optim.lr": 0.01,
           "model.patch_size": 0}
    summary = train(TrainConfig().replace({**cfg, "run.out_dir": str(tmp_path / "run")}))
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0], losses
    assert main(["export", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--format", "nir"]) == 0
    assert (tmp_path / "run" / "last.nir").is_file() and "NIR nodes" in capsys.readouterr().out


def test_exports_leave_nothing_behind_and_never_replace_another_model(run, tmp_path, monkeypatch, capsys):
    """Issue 33, item 5: every ONNX export left /tmp/spikmamba-onnx-*/model.onnx; `--out DIR` left
    .DIR.tmpPID; `--format folder --out EXISTING` replaced another model's weights silently."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ckpt = str(run / "last.pt")
    assert main(["export", "--checkpoint", ckpt, "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").is_file() and not list(scratch.iterdir())
    odir = tmp_path / "odir"
    odir.mkdir()
    assert main(["export", "--checkpoint", ckpt, "--format", "onnx", "--out", str(odir)]) == 2
    assert "is a folder; an ONNX export is one file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "odir", "tmp"] and not list(scratch.iterdir())
    other = tmp_path / "other"
    assert main(["export", "--checkpoint", ckpt, "--format", "folder", "--out", str(other)]) == 0
    (other / "model.safetensors").write_bytes(b"another model's weights")
    assert main(["export", "--checkpoint", ckpt, "--format", "folder", "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert "already exists and holds README.md, config.json, model.safetensors" in err and "--overwrite" in err
    assert (other / "model.safetensors").read_bytes() == b"another model's weights"
    assert main(["export", "--checkpoint", ckpt, "--format", "folder", "--out", str(other), "--overwrite"]) == 0
    assert (other / "model.safetensors").stat().st_size > 1000


def test_predict_through_onnxruntime_exports_once(run, tmp_path, monkeypatch, capsys, user_cache):
    import tempfile

    import spikmamba.engine.export as export

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("SPIKMAMBA_CACHE", str(tmp_path / "cache"))
    assert main(["synth", "--out", str(tmp_path / "clips"), "--count", "2", "--sensor-size", "16"]) == 0
    capsys.readouterr()
    calls, real = [], export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    outs = []
    for _ in range(2):
        assert main(["predict", "--checkpoint", str(run / "last.pt"), "--backend", "onnxruntime",
                     str(tmp_path / "clips"), "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out)["predictions"])
    assert len(calls) == 1 and outs[0] == outs[1]
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1 and not list(scratch.iterdir())


def test_the_adaptive_model_of_its_config_exports_and_predicts_through_onnxruntime(tmp_path, capfd):
    """Issue 33, item 13: configs/synth_adaptive.yaml's model (SAT and RPD on) failed both ONNX
    exporters after 81 s (the batch size was baked into the graph behind the sampler)."""
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / "synth_adaptive.yaml"
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "data.synth.sensor_size=16",
                "model.patch_size=4",
                "data.synth.num_train=32",
                "data.synth.num_test=16",
                "data.batch_size=16",
                "schedule.epochs=1",
                "run.progress=false",
                "run.tensorboard=false",
                f"run.out_dir={out}",
            ]
        )
        == 0
    )
    capfd.readouterr()
    assert (
        main(["export", "--checkpoint", str(out / "last.pt"), "--format", "onnx", "--out", str(tmp_path / "a.onnx")])
        == 0
    )
    printed = capfd.readouterr()
    assert "torchscript exporter" in printed.out and len(printed.out + printed.err) < 2000, printed
    assert main(["synth", "--out", str(tmp_path / "clips"), "--count", "5", "--sensor-size", "16"]) == 0
    capfd.readouterr()
    outs = []
    for source in (
        ["--checkpoint", str(out / "last.pt")],
        ["--checkpoint", str(out / "last.pt"), "--backend", "onnxruntime"],
        ["--model", str(tmp_path / "a.onnx")],
    ):
        assert main(["predict", *source, str(tmp_path / "clips"), "--json", "--batch-size", "2"]) == 0
        outs.append(json.loads(capfd.readouterr().out)["predictions"])
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert a["prediction"] == b["prediction"] and a["probability"] == pytest.approx(b["probability"], abs=1e-4)
