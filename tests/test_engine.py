import json

import pytest
import torch

from spikmamba.cli import main
from spikmamba.engine import TrainConfig, apply_overrides, build_model, train
from spikmamba.engine.checkpoint import stored_config


def test_overrides_cast_types_and_reject_unknown_keys():
    cfg = apply_overrides(
        TrainConfig(), ["schedule.epochs=3", "optim.lr=0.01", "run.progress=false", "model.name=spikmamba_tiny_nosnn"]
    )
    assert (cfg.schedule.epochs, cfg.optim.lr, cfg.run.progress, cfg.model.name) == (
        3, 0.01, False, "spikmamba_tiny_nosnn")
    with pytest.raises(ValueError, match="unknown config key 'epoch'"):
        apply_overrides(TrainConfig(), ["epoch=3"])
    with pytest.raises(ValueError, match="'schedule.epochs' expects int"):
        apply_overrides(TrainConfig(), ["schedule.epochs=three"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(TrainConfig(), ["epochs"])


def test_old_flat_keys_still_work_for_a_release_with_a_note_naming_the_new_key(tmp_path):
    import warnings

    from spikmamba.engine import load_config
    from spikmamba.engine.config import config_from_dict

    with pytest.warns(FutureWarning, match="config key 'lr' is now 'optim.lr'"):
        assert apply_overrides(TrainConfig(), ["lr=0.25"]).optim.lr == 0.25
    old = tmp_path / "old.yaml"  # a config written before sections: flat keys and data.root-style keys
    old.write_text("model: spikmamba_tiny_nosnn\ndata:\n  name: nmnist\n  root: /d\ntest_root: /t\nepochs: 4\n"
                   "adaptive_fine_steps: 3\nmodel_overrides: {depth: 1}\n")
    with pytest.warns(FutureWarning) as notes:
        cfg = load_config(old)
    said = " ".join(str(n.message) for n in notes)
    for flat, new in (("model", "model.name"), ("test_root", "data.test_root"), ("epochs", "schedule.epochs"),
                      ("adaptive_fine_steps", "data.adaptive.fine_steps"), ("model_overrides", "model.overrides")):
        assert f"'{flat}' is now '{new}'" in said
    assert (cfg.model.name, cfg.data.root, cfg.data.test_root, cfg.schedule.epochs, cfg.data.adaptive.fine_steps,
            cfg.model.overrides) == (
        "spikmamba_tiny_nosnn", "/d", "/t", 4, 3, {"depth": 1})
    with warnings.catch_warnings():  # a checkpoint's stored config is flat: it loads without a note
        warnings.simplefilter("error")
        assert config_from_dict({"epochs": 4, "lr": 0.5}, "stored", note_old_keys=False).optim.lr == 0.5


def test_a_saved_config_is_in_sections_and_loads_back_equal(tmp_path):
    import yaml

    from spikmamba.engine import load_config
    from spikmamba.engine.config import config_keys, save_config

    cfg = TrainConfig().replace({"optim.lr": 0.125, "schedule.epochs": 3, "data.adaptive.fine_steps": 2})
    save_config(cfg, tmp_path / "c.yaml")
    doc = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert set(doc) == {key.split(".")[0] for key in config_keys()} == {"model", "data", "optim", "schedule",
                                                                      "device", "run"}
    assert doc["optim"]["lr"] == 0.125 and doc["data"]["adaptive"]["fine_steps"] == 2
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.slow  # a 3-epoch training run
def test_train_end_to_end_writes_a_loadable_checkpoint(tmp_path):
    cfg = TrainConfig().replace({"data.synth.num_train": 60, "data.synth.num_test": 30, "schedule.epochs": 3,
                                 "data.batch_size": 20, "data.synth.sensor_size": 16, "data.frames": 4,
                                 "model.patch_size": 4, "run.out_dir": str(tmp_path), "run.progress": False})
    summary = train(cfg)
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0], losses
    assert 0.0 <= summary["test_acc"] <= 1.0
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    model = build_model(stored_config(ckpt, "last.pt"), len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])  # strict: every key and shape must match
    assert json.loads((tmp_path / "summary.json").read_text())["config"]["schedule"]["epochs"] == 3
    assert not list(tmp_path.glob("*tmp*"))


def test_cli_train_bad_override_exits_2(capsys):
    assert main(["train", "nope=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err


def test_yaml_config_is_validated_and_names_key_and_file(tmp_path):
    from spikmamba.engine import load_config

    good = tmp_path / "good.yaml"
    good.write_text("model:\n  name: spikmamba_tiny_nosnn\ndata:\n  name: nmnist\n  root: /data/nmnist\n"
                    "schedule:\n  epochs: 4\noptim:\n  lr: 1\n")
    cfg = load_config(good)
    assert (cfg.model.name, cfg.data.name, cfg.data.root, cfg.schedule.epochs, cfg.optim.lr) == (
        "spikmamba_tiny_nosnn",
        "nmnist",
        "/data/nmnist",
        4,
        1.0,
    )
    assert apply_overrides(cfg, ["data.root=/elsewhere"]).data.root == "/elsewhere"
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match=r"unknown config key 'epochz' \(in .*bad.yaml\)"):
        load_config(bad)
    bad.write_text("schedule:\n  epochs: three\n")
    with pytest.raises(ValueError, match=r"'schedule.epochs' expects int.*bad.yaml"):
        load_config(bad)
    bad.write_text("run:\n  progress: 1\n")
    with pytest.raises(ValueError, match="'run.progress' expects bool"):
        load_config(bad)
    bad.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(Exception, match="could not determine a constructor|python/object"):
        load_config(bad)  # the safe loader refuses code-executing tags


def test_config_files_in_repo_load(tmp_path):
    from pathlib import Path

    from spikmamba.data import DATASETS
    from spikmamba.engine import load_config
    from spikmamba.models import list_models

    files = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
    assert len(files) >= 9
    for f in files:
        cfg = load_config(f)
        assert cfg.model.name in list_models(), f
        assert cfg.data.name == "synth" or cfg.data.name in DATASETS, f


@pytest.mark.slow  # 4 epochs on real recordings
def test_few_epochs_on_100_real_nmnist_samples_beat_chance_on_unseen_samples(shared_data, tmp_path):
    # 4 epochs (80 steps) of spikmamba_tiny_sps reach 25.5% on 200 unseen samples here. Chance is
    # 10%, and a one-class predictor scores about that; P(>= 30/200 correct | p = 0.1) is about 0.01.
    src = shared_data / "nmnist-small" / "train"
    lines = (src / "labels.txt").read_text().splitlines()[1:]
    for name, part in (("data", lines[:100]), ("unseen", lines[500:700])):
        (tmp_path / name).mkdir()
        for line in part:
            sid = line.split()[0]
            (tmp_path / name / f"{sid}.bs2").symlink_to(src / f"{sid}.bs2")
        (tmp_path / name / "labels.txt").write_text("#sample #class\n" + "\n".join(part) + "\n")
    cfg = TrainConfig().replace({"data.name": "nmnist", "data.root": str(tmp_path / "data"),
                                 "data.test_root": str(tmp_path / "unseen"), "data.resolution": 32, "data.frames": 4,
                                 "model.patch_size": 8, "schedule.epochs": 4, "data.batch_size": 4,
                                 "data.augment_shift": 0, "schedule.warmup_epochs": 0.0, "data.val_fraction": 0.2,
                                 "run.out_dir": str(tmp_path / "run"), "run.progress": False, "run.tensorboard": False,
                                 "data.allow_outside_root": True})  # the folders are links to the shared samples
    summary = train(cfg)
    assert summary["geometry"] == {"in_chans": 2, "img_size": 32, "num_frames": 4}
    assert summary["test_acc"] >= 0.15, summary  # 200 samples never seen in training
    assert {"final_val_acc", "best_val_acc", "best_epoch"} <= set(summary)
    assert (tmp_path / "run" / "best.pt").is_file()


def test_weight_decay_skips_biases_norms_and_marked_parameters():
    from spikmamba.engine.train import param_groups
    from spikmamba.models import create_model

    model = create_model("spikmamba_tiny", num_classes=3, in_chans=2, img_size=16, num_frames=2, patch_size=4)
    decay, keep = param_groups(model, 0.05)
    kept = {id(p) for p in keep["params"]}
    named = dict(model.named_parameters())
    assert decay["weight_decay"] == 0.05 and keep["weight_decay"] == 0.0
    for name in ("pos_embed", "mamba_blocks.0.mixer.fwd.A_log", "mamba_blocks.0.mixer.fwd.D", "head.bias"):
        assert id(named[name]) in kept, name
    assert id(named["head.weight"]) not in kept
    assert len(decay["params"]) + len(keep["params"]) == len(named)


def test_each_section_checks_its_own_keys_and_the_root_checks_what_spans_sections():
    import dataclasses

    from spikmamba.engine.config import DataSection, OptimSection, ScheduleSection, VideoSection, validate_config

    with pytest.raises(ValueError, match=r"'optim.lr' is 0.0; it must be > 0 \(t\)"):
        OptimSection(lr=0.0).check("optim", "t")
    with pytest.raises(ValueError, match="'schedule.warmup_epochs' is 5.0, longer than schedule.epochs=2"):
        ScheduleSection(epochs=2, warmup_epochs=5.0).check("schedule", "t")
    with pytest.raises(ValueError, match=r"'data.video.fold' is 4; it must be in \[1, 3\]"):
        DataSection(name="ucf101", video=VideoSection(fold=4)).check("data", "t")  # a subsection, from its parent
    OptimSection(lr=0.5).check("optim", "t")
    with pytest.raises(ValueError, match="'schedule.min_lr' is 1.0, above optim.lr=0.5"):
        validate_config(TrainConfig().replace({"optim.lr": 0.5, "schedule.min_lr": 1.0}))
    a = TrainConfig()
    b = a.replace({"optim.lr": 0.5})
    assert (a.optim.lr, b.optim.lr) == (5e-3, 0.5) and b.data is a.data  # a new config; untouched sections shared
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.optim.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("changes, message", [
    ({"data.video.fold": 2}, r"'data.video.fold' is set \(2\) but data.video keys are used only by video datasets; "
                             r"data.name='synth' holds events; drop it"),
    ({"data.adaptive.channels": 4}, r"'data.adaptive.channels' is set \(4\) but .* only with "
                                    r"data.representation=adaptive \(it is 'frames'\)"),
    ({"data.name": "cifar10", "data.root": "/x", "data.video.frame_stride": 3},
     "'data.video.frame_stride'.*holds image"),
    ({"data.name": "ucf101", "data.root": "/x", "data.images.augment": "none"}, "'data.images.augment'.*holds video"),
    ({"data.name": "nmnist", "data.root": "/x", "data.synth.num_train": 5}, "'data.synth.num_train'.*synth data"),
])
def test_a_subsection_that_does_not_apply_to_the_run_is_refused_by_name(changes, message):
    from spikmamba.engine.config import validate_config

    with pytest.raises(ValueError, match=message):
        validate_config(TrainConfig().replace(changes))


def test_subsections_that_apply_to_the_run_are_accepted():
    from spikmamba.engine.config import validate_config

    for changes in ({"data.name": "ucf101", "data.root": "/x", "data.video.fold": 2},
                    {"data.name": "cifar10", "data.root": "/x", "data.images.augment": "published"},
                    {"data.representation": "adaptive", "data.adaptive.channels": 4},
                    {"data.synth.num_train": 5}):
        validate_config(TrainConfig().replace(changes))


def test_every_key_has_help_and_one_flat_name_of_earlier_versions():
    from spikmamba.engine.config import config_keys, config_leaves

    leaves = list(config_leaves())
    old = [f.metadata["old"] or key.rsplit(".", 1)[1] for key, f in leaves]
    assert len(set(old)) == len(old) == len(config_keys())
    before = (  # every key of the last flat release, by its flat name
        "model patch_size model_overrides data_name data_root test_root val_fraction representation "
        "adaptive_fine_steps adaptive_channels adaptive_sat adaptive_rpd split_by frames resolution "
        "frame_stride clips_per_video fold skip_unreadable allow_outside_root max_skipped_fraction "
        "transforms cache_dir num_workers sensor_size num_train num_test augment_shift image_augment "
        "batch_size epochs max_steps eval_every limit_val_batches optimizer lr momentum weight_decay "
        "schedule min_lr step_epochs step_gamma warmup_epochs label_smoothing ema_decay clip_grad "
        "skip_nonfinite amp device compile compile_mode seed out_dir overwrite checkpoint_every "
        "tensorboard progress"
    ).split()
    assert len(before) == 57 and set(before) <= set(old)
    assert all(f.metadata["help"] for _, f in leaves)
    named = dict(zip(old, config_keys()))
    assert (named["optimizer"], named["schedule"], named["device"], named["data_name"], named["image_augment"]) == (
        "optim.name", "schedule.name", "device.name", "data.name", "data.images.augment")
