"""Reliability, round three (issue 33): weights folders whose config.json was edited apart from
their weights, hostile values in config.json, and the folder loader's bounds. Each case ends in
one clear message naming the file and key, never a traceback or a wrong answer with rc 0."""
import json

import numpy as np
import pytest
import torch

from conftest import random_events
from spikmamba.cli import main
from spikmamba.events.io import write_events
from spikmamba.models import WeightsError, create_model, save_pretrained
from spikmamba.models.factory import load_folder

REP = {"sensor_size": [16, 16], "kind": "frames", "frames": 2, "split_by": "time", "binary": False,
       "normalize": "log1p", "resolution": None, "afe_threshold": 50.0, "afe_min_events": 100000, "fine_steps": 1}
KWARGS = dict(img_size=16, patch_size=4, num_frames=2, num_classes=3, in_chans=2)


def weights_folder(path, record: bool = True):
    torch.manual_seed(0)
    model = create_model("spikmamba_tiny_sps", **KWARGS).eval()
    config = {"model": "spikmamba_tiny_sps", "kwargs": dict(KWARGS), "adaptive": None, "classes": ["a", "b", "c"],
              "representation": dict(REP), "transforms": [], "geometry": {"in_chans": 2, "img_size": 16, "num_frames": 2}}
    save_pretrained(model, path, config)
    if not record:  # as a folder written before config fields were recorded in the weights file
        from safetensors.torch import load_file, save_file

        save_file(load_file(path / "model.safetensors"), str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def edit(folder, change):
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.fixture
def event_file(tmp_path):
    path = tmp_path / "clip.npz"
    write_events(path, random_events(400, (16, 16), 200_000, 1), sensor_size=(16, 16))
    return path


EDITS = {  # config.json edited apart from its weights: (change, what the message names)
    "frames": (lambda c: c["representation"].update(frames=4), "num_frames"),
    "resolution": (lambda c: c["representation"].update(resolution=[32, 32]), "img_size"),
    "binary": (lambda c: c["representation"].update(binary=True), "representation.binary"),
    "classes": (lambda c: c.update(classes=["a", "b"]), "classes"),
}


@pytest.mark.parametrize("record", [True, False], ids=["recorded", "unrecorded"])
@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_config_edited_apart_from_its_weights_is_refused(name, record, tmp_path, event_file, capsys):
    change, named = EDITS[name]
    folder = weights_folder(tmp_path / "w", record)
    assert main(["predict", "--model", str(folder), str(event_file)]) == 0
    capsys.readouterr()
    edit(folder, change)
    if not record and name == "binary":  # nothing in the tensors can tell binary frames from counts
        pytest.skip("binary frames are told apart only by the record in the weights file")
    assert main(["predict", "--model", str(folder), str(event_file)]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and named in err and "Traceback" not in err, err


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64])
def test_tensors_of_the_wrong_type_are_refused(dtype, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = weights_folder(tmp_path / "w", record=False)
    t = load_file(folder / "model.safetensors")
    t["head.weight"] = t["head.weight"].to(dtype)
    save_file(t, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match="tensor 'head.weight' is (BOOL|I64); the model holds float32"):
        create_model("spikmamba_tiny_sps", pretrained=folder)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(value, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = weights_folder(tmp_path / "w")
    t = load_file(folder / "model.safetensors")
    t["head.weight"][0, 0] = value
    save_file(t, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="tensor 'head.weight' holds NaN or infinite values"):
        load_folder(folder)


HOSTILE = {  # key: values that once gave TypeError, AttributeError, IndexError or an allocation abort
    "format": ["1", -1, 99, None, [1]],
    "model": [5, None, [], {"a": 1}, "spikmamba_tiyn"],
    "kwargs": [[], "x", {"img_size": -1}, {"img_size": 10**9}, {"num_frames": 0}, {"patch_size": 0},
               {"num_classes": "a"}, {"depth": -1}, {"embed_dim": 10**7}, {"no_such_argument": 1}, {"img_size": [1, 2]},
               {"num_classes": 1e300}, {"in_chans": True}, {"patch_size": {"a": 1}}],
    "classes": ["abc", [1, 2, 3], [], [""], {"a": 1}],
    "representation": [[], "frames", {"kind": "nonsense"}, {"sensor_size": "x"}, {"frames": -3}],
    "transforms": [{}, 3],
    "geometry": [{"in_chans": 2}, [], {"in_chans": 2, "img_size": 10**9, "num_frames": 2}],
    "adaptive": [3, "yes", {"no_such": 1}],
    "extra": [1],
}


@pytest.mark.parametrize("key,value", [(k, v) for k, vs in HOSTILE.items() for v in vs],
                         ids=lambda v: repr(v)[:30])
def test_hostile_config_values_are_one_clear_error(key, value, tmp_path, event_file, capsys):
    folder = weights_folder(tmp_path / "w", record=False)
    edit(folder, lambda c: c.__setitem__(key, value))
    with pytest.raises(ValueError) as info:
        create_model("spikmamba_tiny_sps", pretrained=folder)
        from spikmamba.engine.evaluate import load_predictor

        load_predictor(None, str(folder))
    assert isinstance(info.value, ValueError) and "config.json" in str(info.value) or "does not fit" in str(info.value)
    assert main(["predict", "--model", str(folder), str(event_file)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err) < 2000, err


def test_a_huge_config_is_not_read_and_a_huge_name_is_not_echoed(tmp_path):
    folder = weights_folder(tmp_path / "w")
    with open(folder / "config.json", "r+b") as f:
        f.truncate(1 << 30)  # a sparse 1 GB file: refused by its size, not read
    with pytest.raises(WeightsError, match="1,073,741,824 bytes"):
        load_folder(folder)
    with pytest.raises(ValueError) as info:
        create_model("x" * 10**6)
    assert len(str(info.value)) < 2000 and "1,000,002 characters" in str(info.value)
    with pytest.raises(ValueError, match="did you mean 'spikmamba_tiny'"):
        create_model("spikmamba_tiyn")
