"""train -> checkpoint -> test -> predict -> resume, DDP with real torchrun processes, AMP, logs."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from spikmamba.cli import main
from spikmamba.engine import (
    CheckpointError,
    ClassificationMetrics,
    TrainConfig,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    train,
)
from spikmamba.engine.checkpoint import state_digest
from spikmamba.engine.config import as_overrides, config_from_dict, config_keys, config_leaves, value_at
from spikmamba.engine.inputs import eval_view
from spikmamba.engine.train import lr_factor, resume_config

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane

TINY = {"data.synth.sensor_size": 16, "data.frames": 4, "model.patch_size": 4, "data.synth.num_train": 48,
        "data.synth.num_test": 24, "data.batch_size": 16, "schedule.epochs": 3, "run.progress": False,
        "run.tensorboard": False}


def tiny_cfg(out, changes: dict | None = None) -> TrainConfig:
    return TrainConfig().replace({**TINY, "run.out_dir": str(out), **(changes or {})})


def as_args(cfg: TrainConfig) -> "list[str]":
    default = TrainConfig()
    return as_overrides({k: value_at(cfg, k) for k in config_keys()
                         if k != "model.overrides" and value_at(cfg, k) != value_at(default, k)})


def first_test_inputs(cfg, n):
    """The first ``n`` test inputs exactly as evaluation reads them, and the class names."""
    view, classes, _ = eval_view(cfg, "test")
    return torch.stack([view[i][0] for i in range(n)]), classes


def weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = tiny_cfg(out, {"schedule.epochs": 4, "data.val_fraction": 0.25})
    return cfg, train(cfg)


def test_training_writes_config_logs_and_both_checkpoints(trained):
    cfg, summary = trained
    out = cfg.run.out_dir
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0], losses
    with open(f"{out}/log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[0]["train_loss"]) == pytest.approx(losses[0])
    from spikmamba.engine import load_config
    assert load_config(f"{out}/config.yaml") == cfg  # the resolved config reloads to the same run
    best = load_checkpoint(f"{out}/best.pt")
    assert best["epoch"] == summary["best_epoch"] and "optimizer" not in best
    last = load_checkpoint(f"{out}/last.pt")
    assert last["progress"]["epoch"] == 4 and last["representation"]["frames"] == 4


def test_test_command_reports_topk_per_class_and_confusion(trained, tmp_path, capsys):
    cfg, summary = trained
    assert main(["test", "--checkpoint", f"{cfg.run.out_dir}/last.pt", "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "top-1" in printed and "move_right" in printed
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["top1"] == pytest.approx(summary["test_acc"])  # the same model on the same test set
    assert m["samples"] == cfg.data.synth.num_test and sum(map(sum, m["confusion"])) == cfg.data.synth.num_test
    assert m["top5"] >= m["top1"]
    with open(tmp_path / "confusion.csv") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 11 and sum(int(v) for r in rows[1:] for v in r[1:]) == cfg.data.synth.num_test
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    per_class = {r["class"]: r for r in m["per_class"]}
    c = m["confusion"]
    assert per_class["move_left"]["samples"] == sum(c[1])
    if sum(c[1]):
        assert per_class["move_left"]["accuracy"] == pytest.approx(c[1][1] / sum(c[1]))


def test_predict_classifies_files_like_the_test_pipeline(trained, tmp_path, capsys):
    from spikmamba.data.synthetic import SynthActions
    from spikmamba.events.io import write_events

    cfg, _ = trained
    ds = SynthActions("test", num_samples=cfg.data.synth.num_test, sensor_size=(16, 16), seed=cfg.run.seed, cache=False)
    for i in range(5):
        write_events(tmp_path / f"clip{i}.npz", ds.events(i), sensor_size=(16, 16))
    (tmp_path / "broken.npz").write_bytes(b"not an npz file")
    rc = main(["predict", "--checkpoint", f"{cfg.run.out_dir}/last.pt", str(tmp_path), "--json", "--top", "3"])
    out = capsys.readouterr()
    assert rc == 1 and "broken.npz" in out.err  # the bad file is named, the others still classified
    result = json.loads(out.out)
    assert [os.path.basename(p["file"]) for p in result["predictions"]] == [f"clip{i}.npz" for i in range(5)]
    assert len(result["errors"]) == 1 and result["errors"][0]["file"].endswith("broken.npz")
    model, ckpt = model_from_checkpoint(f"{cfg.run.out_dir}/last.pt")
    x, classes = first_test_inputs(cfg, 5)
    with torch.no_grad():
        probs = model(x).softmax(1)
    for p, ref in zip(result["predictions"], probs):
        assert p["prediction"] == classes[int(ref.argmax())]
        assert p["probability"] == pytest.approx(float(ref.max()), abs=1e-5)
        assert len(p["top"]) == 3 and p["top"][0]["class"] == p["prediction"]


def test_synth_clips_written_as_files_are_classified_like_the_test_split(trained, tmp_path, capsys):
    cfg, _ = trained
    assert main(["synth", "--out", str(tmp_path / "clips"), "--count", "6", "--sensor-size", "16"]) == 0
    rows = (tmp_path / "clips" / "labels.csv").read_text().splitlines()
    assert rows[0] == "file,class_id,class_name" and rows[5].startswith("0004_rotate_cw.npz,4,")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", f"{cfg.run.out_dir}/last.pt", str(tmp_path / "clips"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    model, _ = model_from_checkpoint(f"{cfg.run.out_dir}/last.pt")
    x, classes = first_test_inputs(cfg, 6)
    with torch.no_grad():
        expected = [classes[int(i)] for i in model(x).argmax(1)]
    assert [p["prediction"] for p in result["predictions"]] == expected  # clip i is test sample i


def test_predict_rejects_events_beyond_the_trained_sensor(trained, tmp_path, capsys):
    from spikmamba.events import make_events
    from spikmamba.events.io import write_events

    cfg, _ = trained
    write_events(tmp_path / "big.npy", make_events(x=[40], y=[3], t=[10], p=[1]))
    assert main(["predict", "--checkpoint", f"{cfg.run.out_dir}/last.pt", str(tmp_path / "big.npy")]) == 1
    err = capsys.readouterr().err
    assert "beyond the 16x16 sensor" in err and err.count("big.npy") == 1, err  # the file named once


@pytest.mark.parametrize("how, every", [("SIGKILL", 1), ("SIGTERM", 1), ("SIGKILL", 0)])
def test_killed_run_resumes_to_the_same_weights(tmp_path, how, every):
    # every=1: last.pt after each step, so the kill lands mid-epoch; every=0: only at epoch ends
    cfg = tiny_cfg(tmp_path / "whole", {"schedule.epochs": 4, "run.checkpoint_every": every})
    train(cfg)
    reference = weights(tmp_path / "whole" / "last.pt")

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "spikmamba", "train", *as_args(cfg.replace({"run.out_dir": str(out)}))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, getattr(signal, how))
    _, err = proc.communicate(timeout=120)
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130 and "--resume" in err, err
    state = load_checkpoint(out / "last.pt")
    steps_total = 4 * 3
    assert 0 < state["progress"]["step"] < steps_total, "the run was not interrupted mid-way"

    assert main(["train", "--resume", str(out / "last.pt")]) == 0
    resumed = weights(out / "last.pt")
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
    with open(out / "log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


def test_resume_can_extend_a_finished_run(tmp_path):
    cfg = tiny_cfg(tmp_path, {"schedule.epochs": 1})
    train(cfg)
    assert main(["train", "--resume", str(tmp_path / "last.pt"), "schedule.epochs=2"]) == 0
    assert load_checkpoint(tmp_path / "last.pt")["progress"]["epoch"] == 2
    assert main(["train", "--resume", str(tmp_path / "last.pt"), "--config", "x.yaml"]) == 2


def test_two_torchrun_processes_match_one_process(tmp_path):
    # 49 samples in batches of 16: the last global batch has one sample, so one process gets an
    # empty shard. SGD keeps rounding differences small (Adam rescales near-zero gradients, so
    # rounding can move a weight by up to one learning rate there).
    # The one-conv tubelet stem: with the deeper SPS stem, a rounding-level difference can flip a
    # spike whose membrane sits at the threshold, and the runs then drift apart legitimately.
    cfg = tiny_cfg(tmp_path / "single", {"model.name": "spikmamba_tiny", "data.synth.num_train": 49,
                                         "schedule.epochs": 2, "optim.name": "sgd", "optim.lr": 0.05})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp_out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "spikmamba", "train", *as_args(cfg.replace({"run.out_dir": str(ddp_out)}))]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "spikmamba", "train", *as_args(cfg)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp_summary = json.loads((ddp_out / "summary.json").read_text())
    one_summary = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert ddp_summary["world_size"] == 2
    digests = ddp_summary["weights_sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both processes hold bit-identical weights
    assert digests[0] == state_digest(weights(ddp_out / "last.pt"))
    a, b = weights(ddp_out / "last.pt"), weights(tmp_path / "single" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
    assert ddp_summary["test_acc"] == one_summary["test_acc"]
    for h1, h2 in zip(ddp_summary["history"], one_summary["history"]):
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-5)
        assert h1["train_acc"] == h2["train_acc"]


def test_bf16_autocast_trains_and_fp16_on_cpu_is_refused(tmp_path):
    summary = train(tiny_cfg(tmp_path, {"schedule.epochs": 1, "device.amp": "bf16"}))
    assert np.isfinite(summary["history"][0]["train_loss"])
    with pytest.raises(ValueError, match="device.amp=fp16 needs a CUDA device"):
        train(tiny_cfg(tmp_path / "fp16", {"schedule.epochs": 1, "device.amp": "fp16", "device.name": "cpu"}))


def test_tensorboard_scalars_are_readable(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = train(tiny_cfg(tmp_path, {"schedule.epochs": 2, "run.tensorboard": True, "data.val_fraction": 0.25}))
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    loss = acc.Scalars("train/train_loss")
    assert [e.step for e in loss] == [1, 2]
    assert loss[1].value == pytest.approx(summary["history"][1]["train_loss"], rel=1e-6)
    assert len(acc.Scalars("val/val_acc")) == 2


def test_bad_checkpoints_are_clear_errors(trained, tmp_path):
    cfg, _ = trained
    last = f"{cfg.run.out_dir}/last.pt"
    blob = open(last, "rb").read()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="not a readable spikmamba checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="lacks the checkpoint keys"):
        load_checkpoint(tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    # weights for a different model shape under the same name
    ckpt = load_checkpoint(last)
    ckpt["config"]["model"]["overrides"] = {"embed_dim": 32}
    save_checkpoint(tmp_path / "other.pt", ckpt)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        model_from_checkpoint(tmp_path / "other.pt")
    ckpt = load_checkpoint(last)
    ckpt["model_name"] = "spikmamba_tiny_nosnn"
    save_checkpoint(tmp_path / "renamed.pt", ckpt)
    with pytest.raises(CheckpointError, match="weights are for 'spikmamba_tiny_nosnn'"):
        model_from_checkpoint(tmp_path / "renamed.pt")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


def test_checkpoint_loading_never_runs_pickled_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model_name": "x", "model": {}, "config": {}, "classes": [], "geometry": _Exploit()}, "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint("evil.pt")
    assert not (tmp_path / "pwned_by_checkpoint").exists()


def test_refusals_explain_and_never_suggest_the_unsafe_loader(tmp_path, capsys):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled module
    (tmp_path / "notes.pt").write_text("hello")
    (tmp_path / "empty.pt").write_bytes(b"")
    expected = {"module.pt": "pickled Python objects (such as torch.nn.modules.linear.Linear)",
                "notes.pt": "torch.save writes a zip archive", "empty.pt": "the file is empty"}
    for name, why in expected.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        text = str(info.value)
        assert why in text and "weights_only" not in text and "False" not in text and "\x1b" not in text, text
        assert main(["predict", "--checkpoint", str(tmp_path / name), str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert why in err and "weights_only" not in err, err


def test_classification_metrics_match_a_hand_count():
    m = ClassificationMetrics(3, topk=2)
    logits = torch.tensor([[3.0, 2, 1], [1, 3, 2], [1, 2, 3], [3, 1, 2], [2, 3, 1]])
    target = torch.tensor([0, 2, 2, 1, 0])
    m.update(logits, target)
    # predictions 0, 1, 2, 0, 1; top-2 sets {0,1} {1,2} {2,1} {0,2} {1,0}
    assert m.confusion.tolist() == [[1, 1, 0], [1, 0, 0], [0, 1, 1]]
    assert m.top1 == pytest.approx(2 / 5)
    assert m.topk_acc == pytest.approx(4 / 5)  # sample 4 (true 1, top-2 {0, 2}) is the only miss
    assert m.per_class() == [0.5, 0.0, 0.5]


def test_schedules_warm_up_then_decay():
    cfg = TrainConfig().replace({"schedule.epochs": 4, "schedule.warmup_epochs": 1, "schedule.name": "cosine"})
    f = lr_factor(cfg, steps_per_epoch=10)
    assert [f(0), f(9)] == [pytest.approx(0.1), pytest.approx(1.0)]
    assert f(10) == pytest.approx(1.0) and f(25) == pytest.approx(0.5) and f(39) < 0.01
    floor = lr_factor(cfg.replace({"optim.lr": 1e-5, "schedule.min_lr": 1e-6}), 10)
    assert floor(39) == pytest.approx(0.1, abs=5e-3) and floor(39) > 0.1 and floor(10) == pytest.approx(1.0)
    g = lr_factor(cfg.replace({"schedule.name": "step", "schedule.step_epochs": 2, "schedule.step_gamma": 0.5,
                               "schedule.warmup_epochs": 0}), 10)
    assert [g(0), g(19), g(20), g(39)] == [1.0, 1.0, 0.5, 0.5]


def test_config_choices_are_checked_and_help_shows_defaults(capsys):
    from spikmamba.engine import apply_overrides

    with pytest.raises(ValueError, match="'optim.name' must be one of adamw, adam, sgd"):
        apply_overrides(TrainConfig(), ["optim.name=lamb"])
    for command in ("train", "test", "predict"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "default" in text
    epilog = main.__globals__["_train_help"]()
    assert "[0.005]" in epilog
    for section in ("model", "data", "data.synth", "data.video", "data.images", "data.adaptive", "optim", "schedule",
                    "device", "run"):
        assert f"\n  {section}: " in epilog, section  # each section with what it is for


def test_gesture_clips_smoke_config_runs_read_frames_model_prediction(shared_data, tmp_path, capsys):
    from pathlib import Path

    from spikmamba.data.gesture import GESTURE_CLASSES
    from spikmamba.engine import load_config

    config = Path(__file__).resolve().parents[1] / "configs" / "dvsgesture_clips_smoke.yaml"
    cfg = load_config(config).replace({"data.root": str(shared_data / "dvsgesture-clips"), "run.out_dir": str(tmp_path),
                                       "run.progress": False, "run.tensorboard": False, "schedule.epochs": 1})
    summary = train(cfg)
    assert np.isfinite(summary["history"][0]["train_loss"])
    rc = main(["predict", "--checkpoint", str(tmp_path / "last.pt"), str(shared_data / "dvsgesture-clips"), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 0 and not result["errors"]
    assert len(result["predictions"]) == 10
    assert {p["prediction"] for p in result["predictions"]} <= set(GESTURE_CLASSES)


def _nan_model(monkeypatch, bad_calls):
    """Patch the trainer's model factory: the model's training forward returns NaN logits on the
    listed call numbers (1-based). A forward hook, so checkpoints keep the model's own keys."""
    T = sys.modules["spikmamba.engine.trainer"]
    built, calls, real = [], [0], T.build_model

    def poison(module, inputs, out):
        if module.training:
            calls[0] += 1
            if calls[0] in bad_calls:
                return out * float("nan")
        return out

    def build(*a, **kw):
        built.append(real(*a, **kw))
        built[-1].register_forward_hook(poison)
        return built[-1]
    monkeypatch.setattr(T, "build_model", build)
    return built


def test_nonfinite_loss_stops_naming_the_step_and_the_last_good_checkpoint(tmp_path, monkeypatch):
    # 48 samples / batch 16 = 3 steps per epoch: call 5 is epoch 2, step 2; last.pt was written after epoch 1
    built = _nan_model(monkeypatch, {5})
    cfg = tiny_cfg(tmp_path)
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 2 \(global step 5\).*Last good checkpoint: "
                                                 r".*last.pt \(epoch 2, step 0\).*skip_nonfinite"):
        train(cfg)
    assert all(torch.isfinite(p).all() for p in built[0].parameters())  # the NaN step never reached the weights
    # the checkpoint on disk is the good one, and resuming from it works
    assert torch.load(tmp_path / "last.pt", weights_only=True)["progress"]["step"] == 3
    monkeypatch.undo()
    summary = train(cfg.replace({"schedule.epochs": 2}), resume=str(tmp_path / "last.pt"))
    assert len(summary["history"]) == 2


def test_skip_nonfinite_skips_exactly_that_many_steps(tmp_path, monkeypatch):
    built = _nan_model(monkeypatch, {2, 4})
    summary = train(tiny_cfg(tmp_path, {"optim.skip_nonfinite": 2}))
    assert all(torch.isfinite(p).all() for p in built[0].parameters())
    assert all(np.isfinite(r["train_loss"]) for r in summary["history"])
    assert torch.load(tmp_path / "last.pt", weights_only=True)["progress"]["nonfinite_steps"] == 2
    built = _nan_model(monkeypatch, {2, 4, 6})
    with pytest.raises(FloatingPointError, match="global step 6"):
        train(tiny_cfg(tmp_path / "again", {"optim.skip_nonfinite": 2}))


class _Killed(BaseException):
    """The process dying at a given point (nothing after it runs, unlike an exception handled)."""


def test_an_epoch_checkpointed_just_before_a_kill_keeps_its_log_row(tmp_path, monkeypatch):
    # last.pt of epoch 2 is written, then the process dies before epoch 2's CSV row: the resumed
    # run's log.csv must still list every epoch once (it is rebuilt from the checkpoint's history)
    from spikmamba.engine import logs

    cfg = tiny_cfg(tmp_path, {"schedule.epochs": 4})
    real_log = logs.RunLogger.log

    def dying_log(self, record):
        if record["epoch"] == 2:
            raise _Killed
        real_log(self, record)

    monkeypatch.setattr(logs.RunLogger, "log", dying_log)
    with pytest.raises(_Killed):
        train(cfg)
    assert load_checkpoint(tmp_path / "last.pt")["progress"]["epoch"] == 2
    with open(tmp_path / "log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1]  # the row the kill took
    monkeypatch.setattr(logs.RunLogger, "log", real_log)
    assert main(["train", "--resume", str(tmp_path / "last.pt")]) == 0
    summary_rows = json.loads((tmp_path / "summary.json").read_text())["history"]
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    for row, record in zip(rows, summary_rows):
        assert float(row["train_loss"]) == pytest.approx(record["train_loss"], rel=1e-12)


def _flat_as_before_sections(doc: dict) -> dict:
    """A config in sections, stored the way versions before sections stored it: flat old names."""
    return {f.metadata["old"] or key.rsplit(".", 1)[1]: value_at(config_from_dict(doc, "t", note_old_keys=False), key)
            for key, f in config_leaves()}


@pytest.mark.slow  # two one-epoch resumes
def test_a_checkpoint_with_the_flat_config_of_earlier_versions_tests_and_resumes_the_same(trained, tmp_path):
    cfg, _ = trained
    ckpt = load_checkpoint(f"{cfg.run.out_dir}/last.pt")
    flat = {**ckpt, "config": _flat_as_before_sections(ckpt["config"])}
    assert "lr" in flat["config"] and "optim" not in flat["config"]
    for name, body in (("nested", ckpt), ("flat", flat)):
        (tmp_path / name).mkdir()
        save_checkpoint(tmp_path / name / "last.pt", {k: v for k, v in body.items() if k not in ("format", "digest")})
        assert main(["test", "--checkpoint", str(tmp_path / name / "last.pt"), "--out", str(tmp_path / name / "t"),
                     "--quiet"]) == 0
    metrics = [json.loads((tmp_path / name / "t" / "metrics.json").read_text()) for name in ("nested", "flat")]
    assert metrics[0]["confusion"] == metrics[1]["confusion"] and metrics[0]["top1"] == metrics[1]["top1"]
    resumed = [train(resume_config(str(tmp_path / name / "last.pt"), ["schedule.epochs=5", "run.progress=false"]),
                     resume=str(tmp_path / name / "last.pt")) for name in ("nested", "flat")]
    assert len(resumed[1]["history"]) == 5
    assert resumed[0]["weights_sha256_per_rank"] == resumed[1]["weights_sha256_per_rank"]
    assert [h["train_loss"] for h in resumed[0]["history"]] == [h["train_loss"] for h in resumed[1]["history"]]
