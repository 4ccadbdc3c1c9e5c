"""The model zoo shipped in the package (issue 20): small, with cards, and usable with no training."""
import json
from pathlib import Path

import pytest
import torch

from spikmamba.cli import main
from spikmamba.models import create_model, pretrained_tags
from spikmamba.models.registry import ZOO

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane


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
        assert model.model_cfg.record["model"] == d.name.split(".")[0] and model.model_cfg.weights.endswith(d.name)
        assert model.model_cfg.classes == tuple(cfg["classes"]) and model.model_cfg.num_classes == len(cfg["classes"])
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


def _digest(model) -> list:
    return [v.clone() for v in model.state_dict().values()]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_a_shipped_name_is_not_shadowed_by_a_folder_of_the_tag_here(tmp_path, monkeypatch, capsys):
    """Issue 33, item 2: a weights folder `nmnist/` (other weights) in the working folder, and a
    plain folder `synth/` from `spikmamba synth`, leave NAME.TAG meaning the shipped zoo."""
    from spikmamba.models.weights import save_pretrained

    monkeypatch.chdir(tmp_path)
    shipped = _digest(create_model("spikmamba_tiny_sps.nmnist"))
    cfg = dict(create_model("spikmamba_tiny_sps.nmnist").model_cfg.record)
    torch.manual_seed(123)
    other = create_model("spikmamba_tiny_sps", **cfg["kwargs"])  # the same geometry, other (random) weights
    save_pretrained(other, tmp_path / "nmnist", {k: v for k, v in cfg.items() if k != "format"})
    assert main(["synth", "--out", "synth", "--count", "4"]) == 0
    capsys.readouterr()
    assert _same(_digest(create_model("spikmamba_tiny_sps.nmnist")), shipped)
    assert create_model("spikmamba_tiny_sps.synth").model_cfg.classes
    assert main(["predict", "--model", "spikmamba_tiny_sps.synth", "synth", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 4
    # a plain name that is both a shipped tag and a weights folder here is ambiguous: refused naming both
    with pytest.raises(ValueError, match="ambiguous.*spikmamba_tiny_sps.nmnist.*nmnist"):
        create_model("spikmamba_tiny_sps", pretrained="nmnist")
    # the folder as a path is the folder
    assert _same(_digest(create_model("spikmamba_tiny_sps", pretrained=Path("nmnist"))), _digest(other))
    assert _same(_digest(create_model("spikmamba_tiny_sps", pretrained="./nmnist")), _digest(other))


@pytest.mark.parametrize("arg", ["spikmamba_tiny_sps./abs/path", "spikmamba_tiny_sps.synth/../../..",
                                 "spikmamba_tiny_sps.nmnist/..", "spikmamba_tiny_sps..", "spikmamba_tiny_sps.~"])
def test_a_tag_that_is_a_path_is_refused(arg, tmp_path, capsys):
    with pytest.raises(ValueError, match="plain name"):
        create_model(arg)
    assert main(["predict", "--model", arg, str(tmp_path)]) == 2
    assert "plain name" in capsys.readouterr().err


def test_a_folder_named_like_a_shipped_model_is_ambiguous_and_an_unknown_tag_names_the_shipped(tmp_path, monkeypatch,
                                                                                                capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spikmamba_tiny_sps.nmnist").mkdir()
    assert main(["predict", "--model", "spikmamba_tiny_sps.nmnist", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ambiguous" in err and "./spikmamba_tiny_sps.nmnist" in err
    assert main(["predict", "--model", "spikmamba_tiny_sps.mnist", str(tmp_path)]) == 2
    assert "no shipped weights tagged 'mnist' (shipped: nmnist, synth)" in capsys.readouterr().err
