"""Image data and the image workflow: CIFAR-10/100 folders written in the official pickle layout,
a Mini-ImageNet-style folder of PNGs, batch augmentation, and SVMamba trained end to end."""
import json
import pickle
import signal
import sys

import numpy as np
import pytest
import torch
from datafixtures import CLASSES10, _images, write_cifar10, write_cifar100, write_image_tree
from PIL import Image

from spikmamba.cli import main
from spikmamba.data import CIFAR10, CIFAR100, DatasetLayoutError, MiniImageNet
from spikmamba.engine import TrainConfig, train
from spikmamba.engine.augment import augment_batch, random_erasing, random_flip, random_resized_crop
from spikmamba.engine.ema import EMA

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane


def test_cifar10_reads_the_official_layout(tmp_path):
    write_cifar10(tmp_path)
    train_set, test_set = CIFAR10(tmp_path, "train"), CIFAR10(tmp_path / "cifar-10-batches-py", "test")
    assert len(train_set) == 5 * 24 and len(test_set) == 24 and train_set.classes == CLASSES10
    x, y = train_set[3]
    expected, labels = _images(24, 0)
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32)
    np.testing.assert_array_equal(x.numpy(), expected[3]) and y == labels[3]


def test_cifar100_fine_labels(tmp_path):
    write_cifar100(tmp_path, n=10, label_offset=97)
    ds = CIFAR100(tmp_path, "test")
    assert len(ds.classes) == 100 and ds.targets == (_images(10, 1)[1] + 97).tolist()


def test_cifar_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetLayoutError, match="(?s)data_batch_1.*expected layout"):
        CIFAR10(tmp_path)
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x02}q\x00(truncated")
    with pytest.raises(ValueError, match="data_batch_2: not a readable CIFAR batch"):
        CIFAR10(tmp_path)


def test_a_cifar_pickle_that_runs_code_is_refused(tmp_path):
    write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        CIFAR10(tmp_path, "test")


def test_miniimagenet_folder_tree_resizes_to_84(tmp_path):
    write_image_tree(tmp_path)
    ds = MiniImageNet(tmp_path, "val")
    x, y = ds[5]
    assert ds.classes == ["n00", "n01"] and len(ds) == 8 and x.shape == (3, 84, 84) and y == 1
    assert x[1].float().mean() > 200 and x[0].float().mean() < 50
    with pytest.raises(DatasetLayoutError, match="no nope/ folder"):
        MiniImageNet(tmp_path, "nope")
    (tmp_path / "test" / "n07").mkdir()
    (tmp_path / "test" / "n07" / "a.png").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match="classes not in train"):
        MiniImageNet(tmp_path, "test")


def test_batch_augmentations_are_seeded_and_do_what_they_say():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).reshape(2, 3, 8, 8).to(torch.uint8)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    flipped = random_flip(x, g())
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    same = random_resized_crop(x, g(), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.equal(same, x)  # the whole image, resized to itself
    crop = random_resized_crop(x, g())
    assert crop.shape == x.shape and crop.dtype == torch.uint8
    erased = random_erasing(x, g(), p=1.0)
    changed = (erased != x).any(0)
    assert changed.any(dim=(1, 2)).all()  # every image got a rectangle
    assert torch.equal(augment_batch(x, 2, "published", g()), augment_batch(x, 2, "published", g()))
    frames = torch.rand(2, 4, 2, 8, 8)  # event frames: only the shift applies
    assert torch.equal(augment_batch(frames, 0, "published", g()), frames)


def test_ema_tracks_and_swaps_weights():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, 0.5)
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], before + 1.0)
    with ema.swapped_in(model):
        torch.testing.assert_close(model.weight, before + 1.0)
    torch.testing.assert_close(model.weight, before + 2.0)


IMAGE_CFG = {"model.name": "svmamba_tiny", "data.name": "cifar10", "data.frames": 2, "data.batch_size": 16,
             "schedule.epochs": 4, "optim.lr": 3e-3, "schedule.warmup_epochs": 0.5, "data.augment_shift": 2,
             "data.images.augment": "flip", "run.progress": False, "run.tensorboard": False,
             "model.overrides": {"dims": [16, 32], "depths": [1, 1], "drop_path_rate": 0.0}}


def test_svmamba_trains_on_a_tiny_cifar_folder_then_tests_predicts_and_reports_energy(tmp_path, capsys):
    root = write_cifar10(tmp_path / "data", n_per_batch=32)
    cfg = TrainConfig().replace({**IMAGE_CFG, "data.root": str(root), "data.test_root": str(root),
                                 "run.out_dir": str(tmp_path / "run"), "optim.ema_decay": 0.9})
    summary = train(cfg)
    losses = [r["train_loss"] for r in summary["history"]]
    assert losses[-1] < losses[0] - 0.2, losses
    assert summary["test_acc"] > 0.5  # 3 learnable classes; chance is 1/3
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["representation"]["kind"] == "image" and "train_model" in ckpt  # "model" is the EMA
    # predict on PNG files, with a class-index JSON
    pics = tmp_path / "pics"
    pics.mkdir()
    x, y = _images(6, 99)
    for i in range(6):
        Image.fromarray(x[i].transpose(1, 2, 0)).save(pics / f"img{i}_label{y[i]}.png")
    (tmp_path / "idx.json").write_text(json.dumps({str(i): f"name-{c}" for i, c in enumerate(CLASSES10)}))
    (pics / "broken.jpg").write_bytes(b"not a jpeg")
    capsys.readouterr()
    code = main(["predict", "--checkpoint", str(tmp_path / "run" / "last.pt"), str(pics), "--json",
                 "--class-index", str(tmp_path / "idx.json")])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and len(out["errors"]) == 1 and out["errors"][0]["file"].endswith("broken.jpg") \
        and out["errors"][0]["error"].startswith("not a readable image")
    right = sum(p["prediction"] == f"name-{CLASSES10[int(p['file'].split('label')[1][0])]}" for p in out["predictions"])
    assert len(out["predictions"]) == 6 and right >= 4
    assert main(["test", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--quiet"]) == 0
    assert main(["energy", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--samples", "4",
                 "--out", str(tmp_path / "energy")]) == 0
    report = json.loads((tmp_path / "energy" / "energy.json").read_text())
    kinds = {layer["kind"] for layer in report["snn"]["layers"]}
    assert "selective-scan" in kinds and report["snn"]["total"]["sops"] > 0


def test_resume_with_ema_is_exact(tmp_path, monkeypatch):
    """Interrupted by a real SIGTERM mid-epoch (raised from inside the 4th forward), then resumed:
    weights and EMA equal an uninterrupted run's, bit for bit."""
    from spikmamba.engine.train import Interrupted

    root = write_cifar10(tmp_path / "data", n_per_batch=8)
    base = TrainConfig().replace({**{**IMAGE_CFG, "schedule.epochs": 2, "data.images.augment": "published"},
                                  "data.root": str(root), "optim.ema_decay": 0.8})
    full = train(base.replace({"run.out_dir": str(tmp_path / "full")}))
    T = sys.modules["spikmamba.engine.trainer"]
    real, calls = T.build_model, [0]

    def build(*a, **kw):
        model = real(*a, **kw)

        def hook(module, inputs, out):
            calls[0] += module.training
            if calls[0] == 4 and module.training:
                signal.raise_signal(signal.SIGTERM)
        model.register_forward_hook(hook)
        return model
    monkeypatch.setattr(T, "build_model", build)
    with pytest.raises(Interrupted):
        train(base.replace({"run.out_dir": str(tmp_path / "part")}))
    monkeypatch.undo()
    resumed = train(
        base.replace({"run.out_dir": str(tmp_path / "part")}), resume=str(tmp_path / "part" / "last.pt")
    )
    assert resumed["weights_sha256_per_rank"] == full["weights_sha256_per_rank"]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]  # the EMA weights
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resized_cifar_arrays_match_resized_image_files(tmp_path):
    """Training data (CIFAR arrays) and predict input (image files) go through one resize."""
    write_cifar10(tmp_path)
    ds = CIFAR10(tmp_path, "test", size=48)
    x, _ = ds[2]
    Image.fromarray(_images(24, 5)[0][2].transpose(1, 2, 0)).save(tmp_path / "same.png")
    assert x.shape == (3, 48, 48) and torch.equal(x, ds.representation.load(tmp_path / "same.png"))
