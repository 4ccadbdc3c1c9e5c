"""ReSpike and the video data: key/residual split, fusion, weights from a local file, the official
UCF-101 / HMDB-51 / Kinetics layouts on tiny videos written here with PyAV, and a short training
run with clip- and video-level accuracy, predict and the ANN/SNN energy split."""
import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane

av = pytest.importorskip("av")

from datafixtures import write_video  # noqa: E402

from spikmamba.cli import main  # noqa: E402
from spikmamba.data import HMDB51, UCF101, DatasetLayoutError, Kinetics400, VideoFolder, VideoReadError  # noqa: E402
from spikmamba.data.video import VideoRepresentation, read_video  # noqa: E402
from spikmamba.engine import TrainConfig, train  # noqa: E402
from spikmamba.models import create_model  # noqa: E402
from spikmamba.models.resnet import ResNet50Features, load_torchvision_weights  # noqa: E402
from spikmamba.models.respike import split_key_and_residual  # noqa: E402


def test_read_video_and_clip_cutting(tmp_path):
    v = read_video(write_video(tmp_path / "a.avi", 1, n=20))
    assert v.shape == (20, 32, 32, 3) and v.dtype == np.uint8
    rep = VideoRepresentation(frames=4, frame_stride=3, size=16, clips_per_video=3)
    assert rep.clip_starts(20) == [0, 5, 10]  # span 10, evenly spread
    clips = rep.clips(v)
    assert clips.shape == (3, 4, 3, 16, 16) and clips.dtype == torch.uint8
    short = rep.clips(v[:5])  # shorter than one clip: the last frame repeats
    assert short.shape == (1, 4, 3, 16, 16) and torch.equal(short[0, 2], short[0, 3])
    (tmp_path / "bad.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI junk")
    with pytest.raises(VideoReadError, match="bad.avi: cannot decode"):
        read_video(tmp_path / "bad.avi")


def test_key_and_residual_frames():
    x = torch.arange(2 * 8 * 1 * 1 * 1, dtype=torch.float32).reshape(2, 8, 1, 1, 1)
    key, res = split_key_and_residual(x, 4)
    assert key.shape == (2, 2, 1, 1, 1) and res.shape == (2, 2, 3, 1, 1, 1)
    assert key[0, :, 0, 0, 0].tolist() == [0, 4] and res[0, 1, :, 0, 0, 0].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="stride 3"):
        split_key_and_residual(x, 3)


def test_respike_shapes_zero_init_fusion_and_gradients():
    torch.manual_seed(0)
    m = create_model("respike_tiny", num_classes=4, num_frames=8)
    x = torch.randint(0, 256, (2, 8, 3, 32, 32), dtype=torch.uint8)
    out = m(x)
    assert out.shape == (2, 4)
    # the zero-initialised output projection makes each fusion an identity at the start
    s, a = torch.randn(3, 2, 8, 8, 8), torch.randn(2, 32, 8, 8)
    assert torch.equal(m.fusions[0](s, a), s)
    out.logsumexp(1).sum().backward()
    for part in ("ann", "snn", "head"):
        grads = [p.grad for n, p in m.named_parameters() if n.startswith(part)]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0, part
    assert all(float(f.out.weight.grad.abs().sum()) > 0 for f in m.fusions)
    with pytest.raises(ValueError, match=r"clips \[B, F, 3, H, W\]"):
        m(torch.rand(2, 3, 32, 32))


def test_ann_weights_load_from_a_local_torchvision_file(tmp_path):
    src = ResNet50Features(base=8, depths=(1, 1, 1, 1))
    state = {**src.state_dict(), "fc.weight": torch.zeros(10, 256), "fc.bias": torch.zeros(10)}
    torch.save(state, tmp_path / "resnet50.pth")
    m = create_model("respike_tiny", num_classes=3, num_frames=8, ann_weights=str(tmp_path / "resnet50.pth"))
    assert all(torch.equal(m.ann.state_dict()[k], v) for k, v in src.state_dict().items())
    # a checkpoint of a model initialised from the file loads without it (predict on another machine)
    from spikmamba.engine import model_from_checkpoint, save_checkpoint

    cfg = TrainConfig().replace({"model.name": "respike_tiny", "data.frames": 8,
                                 "model.overrides": {"ann_weights": str(tmp_path / "resnet50.pth")}})
    save_checkpoint(
        tmp_path / "ckpt.pt",
        {
            "model_name": "respike_tiny",
            "model": m.state_dict(),
            "classes": ["a", "b", "c"],
            "config": dataclasses.asdict(cfg),
            "geometry": {"in_chans": 3, "img_size": 32, "num_frames": 8},
        },
    )
    (tmp_path / "resnet50.pth").unlink()
    restored, _ = model_from_checkpoint(str(tmp_path / "ckpt.pt"))
    assert all(torch.equal(restored.state_dict()[k], v) for k, v in m.state_dict().items())
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision ResNet-50"):
        load_torchvision_weights(ResNet50Features(8, (1, 1, 1, 1)), str(tmp_path / "other.pth"))
    with pytest.raises(Exception, match="does not exist"):
        load_torchvision_weights(ResNet50Features(8, (1, 1, 1, 1)), str(tmp_path / "nope.pth"))


def test_ucf101_hmdb51_kinetics_layouts(tmp_path):
    rep = VideoRepresentation(frames=4, frame_stride=2, size=16)
    ucf = tmp_path / "ucf"
    for k, cls in enumerate(["ApplyEyeMakeup", "Basketball"]):
        for g in (1, 2):
            write_video(ucf / cls / f"v_{cls}_g0{g}_c01.avi", k, n=10)
    (ucf / "ucfTrainTestlist").mkdir()
    (ucf / "ucfTrainTestlist" / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Basketball\n")
    (ucf / "ucfTrainTestlist" / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\nBasketball/v_Basketball_g01_c01.avi 2\n")
    (ucf / "ucfTrainTestlist" / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi\nBasketball/v_Basketball_g02_c01.avi\n")
    test = UCF101(ucf, "test", representation=rep)
    assert (
        test.classes == ["ApplyEyeMakeup", "Basketball"]
        and test.targets == [0, 1]
        and test[1][0].shape == (4, 3, 16, 16)
    )
    with pytest.raises(DatasetLayoutError, match="trainlist02"):
        UCF101(ucf, "train", fold=2)

    hmdb = tmp_path / "hmdb"
    (hmdb / "testTrainMulti_7030_splits").mkdir(parents=True)
    for k, cls in enumerate(["brush_hair", "cartwheel"]):
        for name in ("a.avi", "b.avi", "c.avi"):
            write_video(hmdb / cls / name, k, n=10)
        (hmdb / "testTrainMulti_7030_splits" / f"{cls}_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    train_set = HMDB51(hmdb, "train", representation=rep)
    assert [p.name for p, _ in train_set.videos] == ["a.avi", "a.avi"] and train_set.targets == [0, 1]

    kin = tmp_path / "kinetics"
    write_video(kin / "val" / "abseiling" / "abc_000010_000020.mp4", 0, n=10)
    (kin / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,10,20,val\n"
                                 "air drumming,gone,1,11,val\n")
    with pytest.warns(UserWarning, match="1 of 2 annotated videos are not in"):
        k400 = Kinetics400(kin, "test", representation=rep)  # no test.csv: the validation set
    assert k400.classes == ["abseiling", "air drumming"] and k400.targets == [0]


def test_unreadable_videos_stop_or_are_skipped_only_when_asked(tmp_path, capsys):
    from spikmamba.data import SampleError

    for k in range(2):
        for i in range(3):
            write_video(tmp_path / f"c{k}" / f"ok{i}.avi", k, n=10, seed=i)
    (tmp_path / "c1" / "broken.avi").write_bytes(b"not a video at all")
    rep = VideoRepresentation(frames=4, frame_stride=2, size=16)
    ds = VideoFolder(tmp_path, "train", representation=rep)  # nothing is decoded yet
    assert len(ds) == 7 and ds.targets == [0, 0, 0, 1, 1, 1, 1]
    broken = [i for i in range(len(ds)) if ds.source(i).endswith("broken.avi")][0]
    with pytest.raises(SampleError, match="broken.avi.*skip_unreadable=true"):
        ds[broken]
    cfg = TrainConfig().replace({"model.name": "respike_tiny", "data.name": "video-folder", "data.root": str(tmp_path),
                                 "data.frames": 4, "data.video.frame_stride": 2, "data.resolution": 16,
                                 "data.batch_size": 4, "schedule.epochs": 1, "data.augment_shift": 0,
                                 "run.progress": False, "run.tensorboard": False,
                                 "run.out_dir": str(tmp_path / "run")})
    with pytest.raises(SampleError, match="broken.avi"):
        train(cfg)
    # one of 7 is 14%: allowed with max_skipped_fraction=0.2, listed in skipped.csv
    summary = train(cfg.replace({"data.skip_unreadable": True, "data.max_skipped_fraction": 0.2,
                                 "run.out_dir": str(tmp_path / "run2")}))
    assert summary["skipped_samples"] == 1
    rows = (tmp_path / "run2" / "skipped.csv").read_text().splitlines()
    assert rows[0] == "epoch,split,sample,reason" and len(rows) == 2 and "broken.avi" in rows[1]
    from spikmamba.engine.train import TooManySkipped

    with pytest.raises(TooManySkipped, match="1 of 7 training samples .*skipped.csv"):
        train(cfg.replace({"data.skip_unreadable": True, "data.max_skipped_fraction": 0.1,
                           "run.out_dir": str(tmp_path / "run3")}))
    with pytest.raises(DatasetLayoutError, match="no test.txt"):
        VideoFolder(tmp_path, "test")


def test_respike_trains_on_a_tiny_video_folder(tmp_path, capsys):
    root = tmp_path / "videos"
    names = {0: "left", 1: "right"}
    lines = {"train": [], "test": []}
    for k in (0, 1):
        for i in range(10):
            split = "test" if i >= 8 else "train"
            write_video(root / names[k] / f"{i}.avi", k, n=18, seed=10 * k + i)
            lines[split].append(f"{names[k]}/{i}.avi")
    for split, rel in lines.items():
        (root / f"{split}.txt").write_text("\n".join(rel) + "\n")
    cfg = TrainConfig().replace({"model.name": "respike_tiny", "data.name": "video-folder", "data.root": str(root),
                                 "data.test_root": str(root), "data.frames": 8, "data.video.frame_stride": 2,
                                 "data.video.clips_per_video": 2, "data.resolution": 32, "data.batch_size": 8,
                                 "schedule.epochs": 4, "optim.lr": 2e-3, "schedule.warmup_epochs": 0.5,
                                 "data.augment_shift": 0, "run.progress": False,
                                 "run.tensorboard": False, "run.out_dir": str(tmp_path / "run"),
                                 "model.overrides": {"stride": 4}})
    summary = train(cfg)
    losses = [r["train_loss"] for r in summary["history"]]
    assert losses[-1] < losses[0], losses
    assert 0.0 <= summary["test_video_acc"] <= 1.0 and 0.0 <= summary["test_acc"] <= 1.0
    capsys.readouterr()
    assert main(["test", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "test-last" / "metrics.json").read_text())
    assert metrics["level"] == "clip" and metrics["samples"] == 8 and metrics["per_video"]["samples"] == 4
    assert "per video (mean of its clips' logits)" in capsys.readouterr().out
    assert main(["predict", "--checkpoint", str(tmp_path / "run" / "last.pt"), str(root / "right" / "9.avi"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["file"].endswith("9.avi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["energy", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--samples", "2",
                     "--out", str(tmp_path / "energy")]) == 0
    parts = json.loads((tmp_path / "energy" / "energy.json").read_text())["snn"]["parts"]
    assert parts["ann"]["macs"] > 0 and parts["ann"]["sops"] == 0  # the ANN path: multiply-accumulates
    assert parts["snn"]["sops"] > 0  # the SNN path: spike-driven accumulates


def test_validation_split_keeps_each_videos_clips_together(tmp_path):
    """Each video is one flat grey level, so a clip's mean names its video: no video may have
    clips in both the training and the validation part."""
    from spikmamba.engine.inputs import load_data

    for k in (0, 1):
        for i in range(4):
            path = tmp_path / f"c{k}" / f"{i}.avi"
            path.parent.mkdir(parents=True, exist_ok=True)
            with av.open(str(path), "w") as c:
                s = c.add_stream("mpeg4", rate=10)
                s.width = s.height = 16
                s.pix_fmt = "yuv420p"
                for _ in range(12):
                    frame = np.full((16, 16, 3), 40 + 20 * (4 * k + i), np.uint8)
                    for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        c.mux(p)
                for p in s.encode():
                    c.mux(p)
    cfg = TrainConfig().replace({"model.name": "respike_tiny", "data.name": "video-folder", "data.root": str(tmp_path),
                                 "data.frames": 4, "data.video.frame_stride": 1, "data.video.clips_per_video": 3,
                                 "data.resolution": 16, "data.val_fraction": 0.25, "run.progress": False})
    data = load_data(cfg)
    x_tr = [data.train[i][0] for i in range(len(data.train))]
    x_va = [data.val[i][0] for i in range(len(data.val))]
    assert len(x_tr) == 18 and len(x_va) == 6  # 6 + 2 videos, 3 clips each
    video_of = lambda clips: {round(float(c.float().mean()) / 20) for c in clips}  # noqa: E731
    assert len(video_of(x_tr)) == 6 and len(video_of(x_va)) == 2 and not video_of(x_tr) & video_of(x_va)
