"""The loop runs any task (issue 30): a new objective is a new task, not an edit to the Trainer."""
import json

import pytest
import torch

from spikmamba.engine import TrainConfig, train
from spikmamba.engine.checkpoint import stored_config
from spikmamba.engine.task import ClassificationTask

TINY = {"data.synth.sensor_size": 16, "data.frames": 4, "model.patch_size": 4, "data.synth.num_train": 48,
        "data.synth.num_test": 16, "data.batch_size": 16, "schedule.epochs": 3, "run.progress": False,
        "run.tensorboard": False, "optim.lr": 3e-3, "schedule.warmup_epochs": 0.0}


def test_the_classification_task_is_summed_cross_entropy_and_top_class_counts():
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    task = ClassificationTask(label_smoothing=0.1)
    want = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(task.loss(logits, y), want)
    assert task.correct(logits, y).item() == (logits.argmax(1) == y).sum().item()
    assert task.loss(logits.bfloat16(), y).dtype == torch.float32  # the loss is taken in fp32 under autocast


class BrierTask:
    """Squared error between the softmax and the one-hot target: an objective the loop was not written for."""

    def __init__(self):
        self.calls = 0

    def loss(self, outputs, targets):
        self.calls += 1
        onehot = torch.nn.functional.one_hot(targets, outputs.shape[1]).float()
        return ((outputs.float().softmax(1) - onehot) ** 2).sum()

    def correct(self, outputs, targets):
        return (outputs.argmax(1) == targets).sum()


@pytest.mark.slow  # two tiny training runs
def test_a_new_task_trains_through_the_unchanged_loop(tmp_path):
    task = BrierTask()
    summary = train(TrainConfig().replace({**TINY, "run.out_dir": str(tmp_path / "brier")}), task=task)
    losses = [h["train_loss"] for h in summary["history"]]
    assert task.calls == summary["steps"] == 9
    assert losses[-1] < losses[0], losses
    assert all(0 <= h["train_loss"] <= 2 for h in summary["history"])  # a Brier score per sample is within [0, 2]
    default = train(TrainConfig().replace({**TINY, "run.out_dir": str(tmp_path / "ce")}))
    assert default["history"][0]["train_loss"] != summary["history"][0]["train_loss"]  # the task was the one used


@pytest.mark.slow  # torch.compile of a small spiking CNN: about 20 s
def test_a_compiled_run_trains_evaluates_and_saves_plain_weights(tmp_path, capsys):
    from spikmamba.cli import main
    from spikmamba.engine import build_model, load_checkpoint

    out = tmp_path / "compiled"
    argv = ["train", "model.name=scnn_nmnist", "data.synth.sensor_size=16", "data.frames=4", "data.synth.num_train=32",
            "data.synth.num_test=16", "data.batch_size=16", "schedule.epochs=3", "schedule.warmup_epochs=0",
            "optim.lr=0.01", "device.compile=true", f"run.out_dir={out}", "run.tensorboard=false"]
    assert main(argv) == 0
    assert "the first step takes longer: torch.compile (mode default) compiles the model" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0], losses
    ckpt = load_checkpoint(out / "last.pt")
    assert not any("_orig_mod" in k for k in ckpt["model"])  # the plain model's keys: loads without compile
    model = build_model(stored_config(ckpt, "last.pt"), len(ckpt["classes"]), **ckpt["geometry"])
    model.load_state_dict(ckpt["model"])
    assert 0.0 <= summary["test_acc"] <= 1.0
