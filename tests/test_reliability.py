"""Reliability, round two (issue 23): crafted checkpoints and configs, full disks, damaged files
and escapes from the dataset folder end in one clear message, never a traceback or silent nonsense."""
import dataclasses
import errno
import os
import resource
import subprocess
import sys
import zipfile

import pytest
import torch

from spikmamba.cli import main
from spikmamba.engine import CheckpointError, TrainConfig, load_checkpoint, train

TINY = dict(sensor_size=16, frames=4, patch_size=4, num_train=32, num_test=16, batch_size=16, epochs=2,
            progress=False, tensorboard=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(dataclasses.replace(TrainConfig(), **TINY, out_dir=str(out)))
    return out


def crafted(run, tmp_path, name, change):
    """last.pt with ``change(ckpt)`` applied, written with plain torch.save (no digest: the field
    checks alone must catch it)."""
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt.pop("digest")
    change(ckpt)
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


CASES = {
    "config-a-string": (lambda c: c.__setitem__("config", "epochs: 3"), "field 'config' must be a mapping"),
    "geometry-extra-key": (lambda c: c["geometry"].__setitem__("depth", 3), "field 'geometry' must have exactly"),
    "img-size-200000": (lambda c: c["geometry"].__setitem__("img_size", 200_000), "'geometry.img_size' is 200000"),
    "tensor-a-string": (lambda c: c["model"].__setitem__(next(iter(c["model"])), "weights"), "must be a tensor"),
    "classes-empty": (lambda c: c.__setitem__("classes", []), "field 'classes'"),
    "model-name-a-number": (lambda c: c.__setitem__("model_name", 7), "field 'model_name'"),
    "unknown-override": (lambda c: c["config"].__setitem__("model_overrides", {"unknown": 1}),
                         "does not take these arguments"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_checkpoints_are_refused_by_name(case, run, tmp_path, capsys):
    change, why = CASES[case]
    path = crafted(run, tmp_path, f"{case}.pt", change)
    for argv in (["test", "--checkpoint", str(path), "--quiet"], ["predict", "--checkpoint", str(path), str(path)],
                 ["energy", "--checkpoint", str(path), "--samples", "2", "--out", str(tmp_path / "e")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err, (argv, err)


@pytest.mark.parametrize("missing", ["optimizer", "scheduler", "rng", "progress"])
def test_resume_names_the_missing_training_state(missing, run, tmp_path, capsys):
    path = crafted(run, tmp_path, "last.pt", lambda c: c.pop(missing))
    assert main(["train", "--resume", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"lacks {missing}" in err and "Traceback" not in err


@pytest.mark.parametrize("change, why", [
    (lambda c: c["progress"].__setitem__("epoch", 10**6), "does not fit this data"),
    (lambda c: c["progress"].__setitem__("step", -1), "'progress.step' is -1"),
    (lambda c: c.__setitem__("scheduler", "fast"), "field 'scheduler' must be a mapping"),
    (lambda c: c["optimizer"].__setitem__("state", "gone"), "field 'optimizer'"),
    (lambda c: c["rng"].__setitem__("per_rank", []), "'rng.per_rank'"),
])
def test_resume_refuses_an_inconsistent_training_state(change, why, run, tmp_path, capsys):
    path = crafted(run, tmp_path, "last.pt", change)
    assert main(["train", "--resume", str(path), "epochs=3"]) == 2
    err = capsys.readouterr().err
    assert why in err and "Traceback" not in err, err


def test_a_flipped_byte_inside_the_weights_is_detected(run, tmp_path):
    blob = bytearray((run / "last.pt").read_bytes())
    with zipfile.ZipFile(run / "last.pt") as z:  # the first tensor's bytes: a member under data/
        info = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size > 64)
    name_len, extra_len = int.from_bytes(blob[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(blob[info.header_offset + 28:info.header_offset + 30], "little")  # the local header's own
    start = info.header_offset + 30 + name_len + extra_len
    blob[start + 17] ^= 0x5A
    (tmp_path / "flipped.pt").write_bytes(bytes(blob))
    assert torch.load(tmp_path / "flipped.pt", weights_only=True)["model"]  # torch itself loads it
    with pytest.raises(CheckpointError, match="is damaged"):
        load_checkpoint(tmp_path / "flipped.pt")


def test_a_full_disk_during_training_ends_clearly_with_the_last_checkpoint_intact(tmp_path, monkeypatch, capsys):
    import spikmamba.engine.checkpoint as C

    out = tmp_path / "run"
    writes, real_open = [], open

    def filling_open(path, mode="r", *a, **kw):
        if "w" in mode and ".last.pt.tmp" in str(path):
            writes.append(path)
            if len(writes) > 1:  # epoch 1's checkpoint fits; then the disk is full
                f = real_open(path, mode, *a, **kw)
                f.write = lambda data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
                return f
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr(C, "open", filling_open, raising=False)
    rc = main(["train", *[f"{k}={v}" for k, v in TINY.items()], f"out_dir={out}"])
    err = capsys.readouterr().err
    assert rc == 2 and "no space left on the device" in err and "MB needed" in err and "is intact" in err, err
    assert "Traceback" not in err and "inline_container" not in err
    assert load_checkpoint(out / "last.pt")["progress"]["epoch"] == 1  # the previous checkpoint, whole
    assert not list(out.glob(".*.tmp*"))


def test_a_real_file_size_limit_is_reported_with_the_size_needed(tmp_path):
    out = tmp_path / "run"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # config.yaml fits, a checkpoint does not

    run = subprocess.run([sys.executable, "-m", "spikmamba", "train", *[f"{k}={v}" for k, v in TINY.items()],
                          f"out_dir={out}", "num_workers=0"], capture_output=True, text=True, preexec_fn=limit,
                         timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "larger than this process may write" in run.stderr and "no last.pt was written" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (out / "last.pt").exists() and not list(out.glob(".*.tmp*"))


def test_model_overrides_unknown_to_the_model_are_an_error_before_training(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_overrides: {unknown: 1}\n")
    assert main(["train", "--config", str(cfg), f"out_dir={tmp_path / 'r'}", "progress=false"]) == 2
    assert "does not take these arguments" in capsys.readouterr().err


@pytest.mark.parametrize("override, why", [
    ("batch_size=0", "'batch_size' is 0"), ("batch_size=-3", "'batch_size' is -3"), ("epochs=0", "'epochs' is 0"),
    ("epochs=-1", "'epochs' is -1"), ("sensor_size=0", "'sensor_size' is 0"), ("label_smoothing=2", "'label_smoothing'"),
    ("device=bogus", "'device' is 'bogus'"), ("resolution=-5", "'resolution' is -5"), ("val_fraction=-0.1", "val_fraction"),
    ("ema_decay=-1", "ema_decay"), ("warmup_epochs=-1", "warmup_epochs"), ("clip_grad=-1", "clip_grad"),
    ("checkpoint_every=-2", "checkpoint_every"), ("weight_decay=-0.1", "weight_decay"), ("skip_nonfinite=-1", "skip_nonfinite"),
    ("augment_shift=-2", "augment_shift"), ("step_gamma=0", "step_gamma"), ("min_lr=1", "above lr"), ("lr=nan", "'lr'"),
    ("num_workers=-2", "num_workers"), ("max_steps=-1", "max_steps"), ("seed=-1", "'seed'"),
])
def test_nonsense_config_values_are_refused_naming_the_key(override, why, tmp_path, capsys):
    assert main(["train", override, f"out_dir={tmp_path / 'r'}", "progress=false"]) == 2
    err = capsys.readouterr().err
    assert why in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()
