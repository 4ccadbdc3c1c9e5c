"""The streaming data path (issue 19): every dataset name trains through `spikmamba train`, results
do not depend on the number of loader workers, a run stopped at max_steps resumes exactly, a run
reads only the samples its steps need, and config transforms reach training, evaluation and predict."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, random_events
from datafixtures import write_cifar10, write_cifar100, write_image_tree, write_video

from spikmamba.cli import main
from spikmamba.data import DATASETS
from spikmamba.engine import TrainConfig, load_checkpoint, train
from spikmamba.events.io import write_events

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane

EVENT_ARGS = [
    "model.name=spikmamba_tiny",
    "data.frames=4",
    "model.patch_size=4",
    "data.resolution=16",
    "data.augment_shift=0",
]


def _nbin(path, sensor=(34, 34), n=60, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_events(path, random_events(n, sensor, 300_000, seed), format="nbin")


def make_nmnist(root):
    for split in ("Train", "Test"):
        for d in range(10):
            _nbin(root / split / str(d) / f"{d:05d}.bin", seed=d)
    return root, root, EVENT_ARGS


def make_ncaltech101(root):
    for c in ("accordion", "airplanes"):
        for k in range(3):
            _nbin(root / c / f"image_{k + 1:04d}.bin", sensor=(240, 180), seed=k)
    return root, root, EVENT_ARGS


def make_dvsgesture(root):
    root.mkdir(parents=True)
    ev = random_events(4000, (128, 128), 4_000_000, seed=2)
    for user in ("user01", "user24"):
        write_events(root / f"{user}_led.aedat", ev, sensor_size=(128, 128), format="aedat3")
        (root / f"{user}_led_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n1,0,1500000\n2,1500000,3000000\n11,3000000,4000000\n"
        )
    (root / "trials_to_train.txt").write_text("user01_led.aedat\n")
    (root / "trials_to_test.txt").write_text("user24_led.aedat\n")
    return root, root, EVENT_ARGS


def make_dvsgesture_clips(root):
    root.mkdir(parents=True)
    rows = ["file,class_id,class_name"]
    for i in range(4):
        _nbin(root / f"{i}.bs2", sensor=(128, 128), seed=i)
        rows.append(f"{i}.bs2,{i + 1},c{i}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root, root, EVENT_ARGS


def make_hardvs(root):
    lines = []
    for a in (1, 2, 300):
        folder = root / f"action_{a:03d}"
        folder.mkdir(parents=True)
        write_events(folder / "rec.npz", random_events(80, (346, 260), seed=a), format="npz")
        lines.append(f"action_{a:03d}/rec {a - 1}")
    for split in ("train", "test"):
        (root / f"{split}_label.txt").write_text("\n".join(lines) + "\n")
    return root, root, EVENT_ARGS


def make_paf(root):
    for c in ("1", "2"):
        (root / c).mkdir(parents=True)
        for k in range(2):
            write_events(
                root / c / f"clip{k}.aedat",
                random_events(100, (346, 260), seed=k),
                sensor_size=(346, 260),
                format="aedat2",
            )
    (root / "train.txt").write_text("1/clip0.aedat\n2/clip0.aedat\n")
    (root / "test.txt").write_text("1/clip1.aedat\n2/clip1.aedat\n")
    return root, root, EVENT_ARGS


def make_efaction(root):
    pytest.importorskip("aedat")
    sample = SHARED_DATA / "aedat4" / "data_sample.aedat4"
    if not sample.is_file():
        pytest.skip(f"no AEDAT 4 file to build E-FAction from ({sample} is absent)")
    for c in ("falling", "walking"):
        (root / c).mkdir(parents=True)
        shutil.copy(sample, root / c / "clip.aedat4")
    return root, root, EVENT_ARGS + ["data.batch_size=2"]


def make_event_folder(root):
    for c in ("a", "b"):
        for k in range(3):
            (root / c).mkdir(parents=True, exist_ok=True)
            write_events(root / c / f"{k}.npz", random_events(50, (20, 20), seed=k), sensor_size=(20, 20))
    return root, root, EVENT_ARGS


def make_sampled_frames(root):
    lines = []
    for c in (1, 2):
        d = root / "frames" / str(c)
        d.mkdir(parents=True)
        for k in range(2):
            np.savez(d / f"clip{k}.npz", images=np.full((4, 16, 16, 3), 60 * c + k, dtype=np.uint8))
            lines.append(f"frames/{c}/clip{k}.npz")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "test.txt").write_text("\n".join(lines[:2]) + "\n")
    (root / "classnames.json").write_text(json.dumps({"one": 0, "two": 1}))
    return root, root, ["model.name=spikmamba_tiny", "model.patch_size=4", "data.augment_shift=0"]


IMAGE_ARGS = ["model.name=svmamba_tiny", "data.frames=2", "data.images.augment=flip", "data.augment_shift=0"]
IMAGE_OVERRIDES = {"dims": [16, 32], "depths": [1, 1], "drop_path_rate": 0.0}


def make_cifar10(root):
    return write_cifar10(root, n_per_batch=4), root, IMAGE_ARGS


def make_cifar100(root):
    return write_cifar100(root, n=6), root, IMAGE_ARGS


def make_miniimagenet(root):
    return write_image_tree(root, n=2), root, IMAGE_ARGS + ["data.resolution=16"]


def make_image_folder(root):
    return write_image_tree(root, n=2), root, IMAGE_ARGS + ["data.resolution=16"]


VIDEO_ARGS = [
    "model.name=respike_tiny",
    "data.frames=8",
    "data.video.frame_stride=1",
    "data.resolution=16",
    "data.augment_shift=0",
    "data.batch_size=2",
]


def _videos(root, rels):
    pytest.importorskip("av")
    for i, rel in enumerate(rels):
        write_video(root / rel, i % 2, n=10, size=16, seed=i)


def make_ucf101(root):
    classes = ["ApplyEyeMakeup", "Basketball"]
    _videos(root, [f"{c}/v_{c}_g0{g}_c01.avi" for c in classes for g in (1, 2)])
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Basketball\n")
    (lists / "trainlist01.txt").write_text("".join(f"{c}/v_{c}_g01_c01.avi {k + 1}\n" for k, c in enumerate(classes)))
    (lists / "testlist01.txt").write_text("".join(f"{c}/v_{c}_g02_c01.avi\n" for c in classes))
    return root, root, VIDEO_ARGS


def make_hmdb51(root):
    _videos(root, [f"{c}/{n}.avi" for c in ("brush_hair", "cartwheel") for n in ("a", "b")])
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir()
    for c in ("brush_hair", "cartwheel"):
        (splits / f"{c}_test_split1.txt").write_text("a.avi 1\nb.avi 2\n")
    return root, root, VIDEO_ARGS


def make_kinetics400(root):
    rows = ["label,youtube_id,time_start,time_end,split"]
    rels = []
    for split in ("train", "val"):
        for k, label in enumerate(("abseiling", "air drumming")):
            rels.append(f"{split}/{label}/{split}{k}_000001_000011.mp4")
            rows.append(f"{label},{split}{k},1,11,{split}")
    _videos(root, rels)
    for split in ("train", "val"):
        (root / f"{split}.csv").write_text(
            "\n".join(r for r in rows if r.endswith(split) or r.startswith("label")) + "\n"
        )
    return root, root, VIDEO_ARGS


def make_video_folder(root):
    _videos(root, [f"{c}/{i}.avi" for c in ("left", "right") for i in range(2)])
    (root / "train.txt").write_text("left/0.avi\nright/0.avi\n")
    (root / "test.txt").write_text("left/1.avi\nright/1.avi\n")
    return root, root, VIDEO_ARGS


MAKERS = {
    "nmnist": make_nmnist,
    "ncaltech101": make_ncaltech101,
    "dvsgesture": make_dvsgesture,
    "dvsgesture-clips": make_dvsgesture_clips,
    "hardvs": make_hardvs,
    "paf": make_paf,
    "efaction": make_efaction,
    "event-folder": make_event_folder,
    "sampled-frames": make_sampled_frames,
    "cifar10": make_cifar10,
    "cifar100": make_cifar100,
    "miniimagenet": make_miniimagenet,
    "image-folder": make_image_folder,
    "ucf101": make_ucf101,
    "hmdb51": make_hmdb51,
    "kinetics400": make_kinetics400,
    "video-folder": make_video_folder,
}


def test_every_dataset_has_a_fixture_here():
    assert set(MAKERS) == set(DATASETS)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_every_dataset_name_trains_through_the_command(name, tmp_path, capsys):
    root, test_root, args = MAKERS[name](tmp_path / "data")
    out = tmp_path / "run"
    overrides = (
        IMAGE_OVERRIDES
        if "model.name=svmamba_tiny" in args
        else {"stride": 4}
        if "model.name=respike_tiny" in args
        else {}
    )
    config = tmp_path / "cfg.yaml"
    config.write_text(json.dumps({"model": {"overrides": overrides}}))  # YAML-only key; JSON is YAML
    argv = [
        "train",
        "--config",
        str(config),
        f"data.name={name}",
        f"data.root={root}",
        f"data.test_root={test_root}",
        "schedule.epochs=1",
        "schedule.max_steps=2",
        "data.batch_size=4",
        "data.num_workers=0",
        "run.progress=false",
        "run.tensorboard=false",
        f"run.out_dir={out}",
        *args,
    ]
    assert main(argv) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "test accuracy" in text and f"checkpoints: {out / 'last.pt'}" in text
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["progress"]["step"] == min(2, ckpt["progress"]["step"]) > 0


def _flat_nmnist(folder, n, events=60):
    folder.mkdir(parents=True)
    for i in range(n):
        _nbin(folder / f"{i}.bs2", n=events, seed=i)
    (folder / "labels.txt").write_text("h\n" + "".join(f"{i}\t{i % 10}\n" for i in range(n)))
    return folder


def _cfg(root, out, changes: dict | None = None) -> TrainConfig:
    base = {"data.name": "nmnist", "data.root": str(root), "model.name": "spikmamba_tiny", "data.frames": 4,
            "model.patch_size": 4, "data.resolution": 16, "data.batch_size": 4, "schedule.epochs": 2,
            "schedule.warmup_epochs": 0.0, "run.progress": False, "run.tensorboard": False, "run.out_dir": str(out),
            "data.transforms": ["Denoise", {"RandomFlip": {"p": 0.5}}, {"DropEvent": {"p": 0.2}},
                                {"TimeJitter": {"std": 50}}],
            "data.augment_shift": 2}
    return TrainConfig().replace({**base, **(changes or {})})


def test_results_do_not_depend_on_the_number_of_workers(tmp_path):
    root = _flat_nmnist(tmp_path / "data", 24)
    a = train(_cfg(root, tmp_path / "w0", {"data.num_workers": 0}))
    b = train(_cfg(root, tmp_path / "w2", {"data.num_workers": 2}))
    assert a["num_workers"] == 0 and b["num_workers"] == 2
    assert a["weights_sha256_per_rank"] == b["weights_sha256_per_rank"]
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    # and the random transforms really draw: another seed gives other weights
    c = train(_cfg(root, tmp_path / "seed1", {"data.num_workers": 0, "run.seed": 1}))
    assert c["weights_sha256_per_rank"] != a["weights_sha256_per_rank"]


def test_a_run_stopped_at_max_steps_resumes_to_the_uninterrupted_weights(tmp_path, capsys):
    root = _flat_nmnist(tmp_path / "data", 40)  # 30 training samples: 8 steps per epoch
    whole = train(_cfg(root, tmp_path / "whole", {"data.num_workers": 2, "data.val_fraction": 0.25}))
    part = train(_cfg(root, tmp_path / "part", {"data.num_workers": 2, "data.val_fraction": 0.25,
                                                "schedule.max_steps": 4}))
    assert part["stopped_at_max_steps"] == 4 and part["steps"] == 4 and part["final_val_acc"] is not None
    state = load_checkpoint(tmp_path / "part" / "last.pt")["progress"]
    assert (state["epoch"], state["batch"], state["step"]) == (0, 4, 4)  # mid-epoch
    assert main(["train", "--resume", str(tmp_path / "part" / "last.pt"), "schedule.max_steps=0"]) == 0
    resumed = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert resumed["weights_sha256_per_rank"] == whole["weights_sha256_per_rank"]
    assert resumed["history"][0]["resumed_at_step"] == 4  # its samples/s cover the steps run after the resume


def test_a_run_reads_only_the_samples_its_steps_need(tmp_path, monkeypatch):
    src = _flat_nmnist(tmp_path / "one", 1)
    big = tmp_path / "big"
    big.mkdir()
    n = 3000
    for i in range(n):
        os.symlink(src / "0.bs2", big / f"{i}.bs2")
    (big / "labels.txt").write_text("h\n" + "".join(f"{i}\t{i % 10}\n" for i in range(n)))
    import spikmamba.data.base as base

    reads, real = [], base.read_events
    monkeypatch.setattr(base, "read_events", lambda path, **kw: reads.append(path) or real(path, **kw))
    summary = train(
        _cfg(big, tmp_path / "run", {"data.num_workers": 0, "schedule.max_steps": 3, "data.transforms": [],
                                     "data.val_fraction": 0.1, "schedule.limit_val_batches": 2,
                                     "data.allow_outside_root": True})
    )
    assert summary["steps"] == 3
    # 3 steps of 4 samples and 2 validation batches of 4: nothing else of the 3,000 recordings is read
    assert len(reads) == 3 * 4 + 2 * 4, len(reads)
    assert summary["history"] == [] and summary["final_val_acc"] is not None


def test_eval_every_and_a_capped_validation(tmp_path):
    root = _flat_nmnist(tmp_path / "data", 40)
    s = train(
        _cfg(root, tmp_path / "run", {"schedule.epochs": 3, "schedule.eval_every": 2, "data.val_fraction": 0.5,
                                      "schedule.limit_val_batches": 2, "data.num_workers": 0, "data.transforms": []})
    )
    assert ["val_acc" in r for r in s["history"]] == [False, True, True]  # epoch 2, and the last
    assert {r["val_samples"] for r in s["history"] if "val_acc" in r} == {8}  # 2 batches of 4, of 20


def test_config_transforms_reach_evaluation_and_predict(tmp_path, capsys):
    root = _flat_nmnist(tmp_path / "data", 12)
    cfg = _cfg(root, tmp_path / "run", {"schedule.epochs": 1, "data.resolution": 0, "data.test_root": str(root),
                                        "data.num_workers": 0,
                                        "data.transforms": [{"RandomCrop": {"size": [24, 24]}}, "RandomFlip"]})
    summary = train(cfg)
    assert summary["geometry"] == {"in_chans": 2, "img_size": 24, "num_frames": 4}  # the crop set the input size
    from spikmamba.engine import model_from_checkpoint
    from spikmamba.engine.inputs import eval_view

    view, _, _ = eval_view(cfg, "test")
    model, _ = model_from_checkpoint(tmp_path / "run" / "last.pt")
    with torch.no_grad():
        expected = model(torch.stack([view[i][0] for i in range(3)])).softmax(1)
    capsys.readouterr()
    files = [str(tmp_path / "p.npz")]
    from spikmamba.events.io import read_events

    write_events(files[0], read_events(root / "0.bs2").events, sensor_size=(34, 34))  # predict needs a stated sensor
    assert main(["predict", "--checkpoint", str(tmp_path / "run" / "last.pt"), *files, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["predictions"][0]
    assert got["probability"] == pytest.approx(float(expected[0].max()), abs=1e-5)  # the centre crop, as evaluated
    for bad, why in [
        (["Nope"], "unknown transform 'Nope'"),
        ([{"DropEvent": {"q": 1}}], "unknown parameter"),
        ([{"RandomCrop": {"size": [99, 99]}}], "larger than the 34x34 sensor"),
    ]:
        assert (
            main(
                [
                    "train",
                    "data.name=nmnist",
                    f"data.root={root}",
                    f"data.transforms={json.dumps(bad)}",
                    f"run.out_dir={tmp_path / 'bad'}",
                    "run.progress=false",
                ]
            )
            == 2
        )
        assert why in capsys.readouterr().err


def test_a_run_on_a_tampered_cache_trains_bit_identically_to_a_run_without_one(tmp_path):
    """Issue 33, item 1: entries overwritten with zeros of the right shape (the digest left), and
    one sample's entry copied over another's, are recomputed, not trained on."""
    root = _flat_nmnist(tmp_path / "data", 16)
    kw = {"data.num_workers": 0, "data.transforms": [], "schedule.epochs": 1, "data.val_fraction": 0.25}
    plain = train(_cfg(root, tmp_path / "plain", kw))
    cache = tmp_path / "cache"
    first = train(_cfg(root, tmp_path / "fill", {"data.cache_dir": str(cache), **kw}))
    assert first["weights_sha256_per_rank"] == plain["weights_sha256_per_rank"]
    entries = sorted(cache.rglob("*.npz"))
    assert len(entries) == 16
    for e in entries[:8]:
        with np.load(e) as z:
            arrays = {k: z[k] for k in z.files}
        arrays = {k: (np.zeros_like(v) if k in ("value", "dense", "bits") else v) for k, v in arrays.items()}
        with open(e, "wb") as f:
            np.savez(f, **arrays)
    for e in entries[8:12]:
        shutil.copy(entries[12], e)
    with pytest.warns(UserWarning, match="is unreadable or does not match"):
        tampered = train(_cfg(root, tmp_path / "tampered", {"data.cache_dir": str(cache), **kw}))
    assert tampered["weights_sha256_per_rank"] == plain["weights_sha256_per_rank"]
    assert [r["train_loss"] for r in tampered["history"]] == [r["train_loss"] for r in plain["history"]]


@pytest.mark.parametrize("kind", ["frames", "afe", "voxel"])
def test_inputs_built_on_the_device_equal_the_workers_inputs_and_train(tmp_path, kind):
    """Issue 30, item 3: with data.represent_on=device the workers send events (and their
    shifts), and the batch built where the model is equals the batch the workers would build."""
    from spikmamba.engine.device_inputs import DeviceInputs, model_input
    from spikmamba.engine.inputs import load_data
    from spikmamba.engine.loader import SequentialBatches, ShuffledBatches, make_loader

    root = _flat_nmnist(tmp_path / "data", 24)
    extra = {"data.representation": kind, "data.num_workers": 0, "data.val_fraction": 0.25,
             "data.represent_on": "cpu"}
    if kind == "afe":
        extra["data.transforms"] = []  # AFE of 60 random events: one frame each, whatever the transforms
    cpu_cfg = _cfg(root, tmp_path / "cpu", extra)
    dev_cfg = cpu_cfg.replace({"data.represent_on": "device", "run.out_dir": str(tmp_path / "dev")})
    cpu, dev = load_data(cpu_cfg, device="cpu"), load_data(dev_cfg, device="cpu")
    assert (cpu.on_device, dev.on_device) == (False, True) and cpu.representation == dev.representation
    for split, sampler in (("train", ShuffledBatches(len(cpu.train), 4, seed=0)),
                           ("val", SequentialBatches(len(cpu.val), 4))):
        if split == "train":
            sampler.set_epoch(1)
        made = [make_loader(getattr(d, split), sampler, 0) for d in (cpu, dev)]
        for a, b in zip(*made, strict=True):
            assert isinstance(b.x, DeviceInputs) and (b.x.shifts is not None) == (split == "train")
            assert torch.equal(a.y, b.y)
            assert torch.allclose(model_input(b.x, dev.representation, torch.device("cpu")), a.x, atol=1e-6)
    summary = train(dev_cfg)
    losses = [h["train_loss"] for h in summary["history"]]
    assert summary["num_workers"] == 0 and losses[-1] < losses[0], losses


def test_represent_on_device_refuses_what_it_cannot_build(tmp_path):
    from spikmamba.engine.config import validate_config
    from spikmamba.engine.device_inputs import represent_on_device

    with pytest.raises(ValueError, match="'data.cache_dir' caches representations built on the CPU"):
        validate_config(_cfg(tmp_path, tmp_path, {"data.represent_on": "device", "data.cache_dir": str(tmp_path)}))
    with pytest.raises(ValueError, match="kept in memory as tensors"):
        represent_on_device("device", torch.device("cpu"), "events", True, "")
    with pytest.raises(ValueError, match="image, already built"):
        represent_on_device("device", torch.device("cpu"), "image", False, "")
    assert not represent_on_device("auto", torch.device("cpu"), "events", False, "")
    assert represent_on_device("auto", torch.device("cuda"), "events", False, "")
    assert not represent_on_device("auto", torch.device("cuda"), "events", False, str(tmp_path))  # the cache wins
    assert not represent_on_device("auto", torch.device("cuda"), "image", False, "")
