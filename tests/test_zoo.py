"""The model zoo shipped in the package (issue 20): small, with cards, and usable with no training."""
import json
from pathlib import Path

import pytest
import torch

from spikmamba.cli import main
from spikmamba.models import create_model, pretrained_tags
from spikmamba.models.registry import ZOO


def test_every_shipped_model_is_small_documented_and_loads():
    folders = sorted(d for d in ZOO.iterdir() if d.is_dir())
    assert {d.name for d in folders} >= {"spikmamba_tiny_sps.synth", "spikmamba_tiny_sps.nmnist"}
    for d in folders:
        assert (d / "model.safetensors").stat().st_size < 2_000_000, d.name
        card = (d / "README.md").read_text()
        assert "## Reproduce" in card and "spikmamba train" in card and "%" in card, d.name
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["classes"] and cfg["representation"], d.name
        model = create_model(d.name)  # "name.tag"
        assert model.pretrained_cfg["model"] == d.name.split(".")[0]
    assert pretrained_tags("spikmamba_tiny_sps") == ["nmnist", "synth"]


def test_models_command_marks_the_shipped_weights(capsys):
    assert main(["models", "--filter", "tiny_sps"]) == 0
    out = capsys.readouterr().out
    assert "nmnist, synth" in out and "spikmamba predict --model spikmamba_tiny_sps" in out


def test_the_synth_model_classifies_simulated_clips_with_no_training(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--count", "40"]) == 0  # test clips of seed 0: held out
    capsys.readouterr()
    assert main(["predict", "--model", "spikmamba_tiny_sps.synth", str(tmp_path), "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"]
    right = sum(p["prediction"] == Path(p["file"]).stem.split("_", 1)[1] for p in preds)  # NNNN_<class>.npz
    assert len(preds) == 40 and right >= 32, right  # 91.6% on the 500 test clips


def test_the_nmnist_model_prints_one_line_per_file(shared_data, capsys):
    files = sorted((shared_data / "nmnist-small" / "train").glob("*.bs2"))[:5]
    assert main(["predict", "--model", "spikmamba_tiny_sps.nmnist", *map(str, files)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith(str(f)) and ": " in line for line, f in zip(lines, files))
    labels = dict(line.split() for line in (shared_data / "nmnist-small" / "train" / "labels.txt").read_text()
                  .splitlines()[1:])
    predicted = [line.split(": ")[1].split()[0] for line in lines]
    assert sum(p == labels[f.stem] for p, f in zip(predicted, files)) >= 4  # samples it was trained on
