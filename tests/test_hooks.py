"""Hooks: code of one's own at the loop's points, without an edit to the loop (issue 30)."""
import csv
from types import SimpleNamespace

import pytest

from spikmamba.engine import EarlyStopping, Hook, TrainConfig, load_checkpoint, train

TINY = {"data.synth.sensor_size": 16, "data.frames": 4, "model.patch_size": 4, "data.synth.num_train": 48,
        "data.synth.num_test": 16, "data.batch_size": 16, "schedule.epochs": 3, "run.progress": False,
        "run.tensorboard": False, "schedule.warmup_epochs": 0.0, "data.val_fraction": 0.25}


class Recorder(Hook):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append(("fit_start", trainer.state.step))

    def on_step_end(self, trainer):
        self.calls.append(("step", trainer.state.step))

    def on_epoch_end(self, trainer, record):
        self.calls.append(("epoch", record["epoch"], "val_acc" in record))

    def on_checkpoint(self, trainer, path):
        self.calls.append(("checkpoint", path.name, trainer.state.epoch))

    def on_fit_end(self, trainer, summary):
        self.calls.append(("fit_end", "test_acc" in summary))
        summary["seen_by_hook"] = True


@pytest.mark.slow  # a tiny training run
def test_hooks_see_every_point_of_the_loop_in_order(tmp_path):
    hook = Recorder()
    summary = train(TrainConfig().replace({**TINY, "run.out_dir": str(tmp_path)}), hooks=[hook])
    calls = hook.calls
    assert calls[0] == ("fit_start", 0) and calls[-1] == ("fit_end", True) and summary["seen_by_hook"]
    assert [c[1] for c in calls if c[0] == "step"] == list(range(1, summary["steps"] + 1))
    epochs = [c for c in calls if c[0] == "epoch"]
    assert epochs == [("epoch", e, True) for e in (1, 2, 3)]
    lasts = [c for c in calls if c[:2] == ("checkpoint", "last.pt")]
    assert [c[2] for c in lasts] == [1, 2, 3]  # one last.pt per epoch, each before its epoch's hooks
    for e in (1, 2, 3):
        assert calls.index(("checkpoint", "last.pt", e)) < calls.index(("epoch", e, True))
    assert any(c[:2] == ("checkpoint", "best.pt") for c in calls)
    with open(tmp_path / "log.csv") as f:  # the run's own log is a hook too, and still writes
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


@pytest.mark.slow  # a tiny run stopped early, then resumed
def test_early_stopping_ends_the_run_as_a_finished_one_that_can_be_resumed(tmp_path):
    frozen = {**TINY, "optim.lr": 1e-12, "schedule.epochs": 8, "run.out_dir": str(tmp_path)}  # val acc never moves
    summary = train(TrainConfig().replace(frozen), hooks=[EarlyStopping(patience=2)])
    assert len(summary["history"]) == 3, summary["history"]  # epoch 1 sets the best; 2 and 3 do not beat it
    assert "val_acc has not improved" in summary["stopped_early"] and "patience 2" in summary["stopped_early"]
    assert "test_acc" in summary  # the final test still runs
    assert load_checkpoint(tmp_path / "last.pt")["progress"]["epoch"] == 3
    more = train(TrainConfig().replace({**frozen, "schedule.epochs": 4}), resume=str(tmp_path / "last.pt"))
    assert len(more["history"]) == 4 and "stopped_early" not in more


def test_early_stopping_counts_epochs_without_improvement():
    stops = []
    trainer = SimpleNamespace(request_stop=stops.append)
    hook = EarlyStopping(patience=2, monitor="train_loss", mode="min", min_delta=0.01)
    for loss in (1.0, 0.5, 0.495, 0.3, 0.299, 0.298):  # 0.495 and 0.299/0.298 are within min_delta
        hook.on_epoch_end(trainer, {"train_loss": loss})
    assert len(stops) == 1 and "train_loss has not improved on 0.3 for 2 epoch(s)" in stops[0]
    hook.on_epoch_end(trainer, {"val_acc": 1.0})  # an epoch without the monitored key counts for nothing
    assert hook.waited == 2
    with pytest.raises(ValueError, match="patience >= 1"):
        EarlyStopping(patience=0)
