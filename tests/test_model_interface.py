"""One model interface (issue 20): every registered model answers forward_features / forward_head /
default_cfg, is built by `models` alone (no import of the engine), and round-trips through a
weights folder (model.safetensors + config.json) with clear errors for bad folders."""
import ast
import json
from pathlib import Path

import pytest
import torch

from spikmamba.models import WeightsError, create_model, default_cfg, list_models, load_pretrained, save_pretrained

SRC = Path(__file__).resolve().parents[1] / "src" / "spikmamba"


def small(name):
    """A registered model at a size that runs in a moment, and an input for it."""
    torch.manual_seed(0)
    if name.startswith("spikmamba"):
        frames = 2
        kw = dict(img_size=16, patch_size=8 if "tiny" not in name else 4, num_frames=frames, num_classes=5)
        m = create_model(name, **kw)
        return m, torch.rand(2, frames, m.in_chans, 16, 16)
    if name.startswith("scnn"):
        m = create_model(name, img_size=16, num_frames=2, num_classes=5)
        return m, torch.rand(2, 2, 2, 16, 16)
    if name.startswith("svmamba"):
        m = create_model(name, dims=(8, 16), depths=(1, 1), num_frames=2, num_classes=5)
        return m, torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8)
    m = create_model("respike_tiny" if name == "respike_r50_r18" else name, num_frames=8, num_classes=5)
    return m, torch.randint(0, 255, (2, 8, 3, 16, 16), dtype=torch.uint8)


@pytest.mark.parametrize("name", list_models())
def test_every_model_answers_the_one_interface(name):
    cfg = default_cfg(name)
    assert cfg.name == name and cfg.input.channels > 0 and cfg.input.frames > 0 and cfg.input.size, cfg
    assert cfg.input.representation and cfg.input.normalisation and cfg.num_classes > 0, cfg
    m, x = small(name)
    m.eval()
    with torch.no_grad():
        logits = m(x)
        features = m.forward_features(x)
        pooled = m.forward_head(features, pre_logits=True)
        assert features.dim() >= 3 and pooled.shape[0] == 2 and pooled.dim() == 2  # unpooled, then pooled
        torch.testing.assert_close(m.forward_head(features), logits)
    assert logits.shape == (2, 5) and m.model_cfg.input.representation == cfg.input.representation
    assert m.model_cfg.num_classes == 5 and m.model_cfg.weights is None  # what it was built with, random weights


def test_no_module_under_models_or_nn_imports_the_engine():
    offenders = []
    for folder in ("models", "nn"):
        for path in (SRC / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and "engine" in node.module.split("."):
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders, offenders


def test_a_weights_folder_round_trips_and_names_what_is_wrong(tmp_path):
    m, x = small("spikmamba_tiny_sps")
    m.eval()
    config = {"model": "spikmamba_tiny_sps", "kwargs": dict(img_size=16, patch_size=4, num_frames=2, num_classes=5),
              "classes": list("abcde")}
    folder = save_pretrained(m, tmp_path / "w", config, card="# test\n")
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    loaded, cfg = load_pretrained(folder)
    again = create_model("spikmamba_tiny_sps", pretrained=str(folder))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x), rtol=0, atol=0)
        torch.testing.assert_close(again.eval()(x), m(x), rtol=0, atol=0)
    assert cfg["classes"] == list("abcde")
    typed = loaded.model_cfg  # one typed description: the input as built, the classes, the source
    assert (typed.input.size, typed.input.frames, typed.input.channels, typed.num_classes) == (16, 2, 2, 5)
    assert typed.classes == tuple("abcde") and typed.weights == str(folder) and typed.record["kwargs"]["img_size"] == 16
    assert again.model_cfg == typed and default_cfg("spikmamba_tiny_sps").input.size == 64  # the defaults stay
    assert json.loads(json.dumps(typed.to_dict()))["input"]["representation"] == "frames"
    # an unknown model, tensors that do not fit, a truncated file: each named
    bad = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**bad, "model": "no_such_model"}))
    with pytest.raises(WeightsError, match="key 'model' names 'no_such_model'"):
        load_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**bad, "kwargs": {**bad["kwargs"], "num_classes": 7}}))
    with pytest.raises(
        WeightsError, match=r"does not match the weights.*kwargs.num_classes is 7 in it but 5 in the weights"
    ):
        load_pretrained(folder)
    from safetensors.torch import load_file, save_file

    save_file(load_file(folder / "model.safetensors"), folder / "model.safetensors")  # as written before the record
    with pytest.raises(
        WeightsError, match=r"model.safetensors does not fit .*shape mismatch head.weight \(5, 64\) vs \(7, 64\)"
    ):
        load_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(bad))
    blob = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_pretrained(folder)
    with pytest.raises(WeightsError, match="is not a weights folder"):
        load_pretrained(tmp_path)


def test_respike_reads_its_initial_weights_in_the_factory_not_in_the_model(tmp_path):
    from spikmamba.models.resnet import ResNet50Features

    trunk = ResNet50Features(8, (1, 1, 1, 1))
    torch.save(trunk.state_dict(), tmp_path / "r50.pth")
    m = create_model("respike_tiny", ann_weights=str(tmp_path / "r50.pth"))
    assert torch.equal(m.ann.conv1.weight, trunk.conv1.weight)
    create_model("respike_tiny", pretrained=False, ann_weights=str(tmp_path / "missing.pth"))  # no file is read
    with pytest.raises(WeightsError, match="missing.pth does not exist"):
        create_model("respike_tiny", ann_weights=str(tmp_path / "missing.pth"))
