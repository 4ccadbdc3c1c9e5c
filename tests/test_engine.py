import json

import pytest
import torch

from spikmamba.cli import main
from spikmamba.engine import TrainConfig, apply_overrides, build_model, train


def test_overrides_cast_types_and_reject_unknown_keys():
    cfg = apply_overrides(TrainConfig(), ["epochs=3", "lr=0.01", "progress=false", "model=spikmamba_tiny_nosnn"])
    assert (cfg.epochs, cfg.lr, cfg.progress, cfg.model) == (3, 0.01, False, "spikmamba_tiny_nosnn")
    with pytest.raises(ValueError, match="unknown config key 'epoch'"):
        apply_overrides(TrainConfig(), ["epoch=3"])
    with pytest.raises(ValueError, match="'epochs' expects int"):
        apply_overrides(TrainConfig(), ["epochs=three"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(TrainConfig(), ["epochs"])


def test_train_end_to_end_writes_a_loadable_checkpoint(tmp_path):
    cfg = TrainConfig(num_train=60, num_test=30, epochs=3, batch_size=20, sensor_size=16, frames=4, patch_size=4,
                      out_dir=str(tmp_path), progress=False)
    summary = train(cfg)
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0], losses
    assert 0.0 <= summary["test_acc"] <= 1.0
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    model = build_model(TrainConfig(**ckpt["config"]), len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])  # strict: every key and shape must match
    assert json.loads((tmp_path / "summary.json").read_text())["config"]["epochs"] == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_train_bad_override_exits_2(capsys):
    assert main(["train", "nope=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err
