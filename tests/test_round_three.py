"""Reliability, round three (issue 33): weights folders whose config.json was edited apart from
their weights, hostile values in config.json, and the folder loader's bounds. Each case ends in
one clear message naming the file and key, never a traceback or a wrong answer with rc 0."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_events

from spikmamba.cli import main
from spikmamba.events.io import write_events
from spikmamba.models import WeightsError, create_model, save_pretrained
from spikmamba.models.factory import load_folder

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane

REP = {"sensor_size": [16, 16], "kind": "frames", "frames": 2, "split_by": "time", "binary": False,
       "normalize": "log1p", "resolution": None, "afe_threshold": 50.0, "afe_min_events": 100000, "fine_steps": 1}
KWARGS = dict(img_size=16, patch_size=4, num_frames=2, num_classes=3, in_chans=2)


def weights_folder(path, record: bool = True):
    torch.manual_seed(0)
    model = create_model("spikmamba_tiny_sps", **KWARGS).eval()
    config = {
        "model": "spikmamba_tiny_sps",
        "kwargs": dict(KWARGS),
        "adaptive": None,
        "classes": ["a", "b", "c"],
        "representation": dict(REP),
        "transforms": [],
        "geometry": {"in_chans": 2, "img_size": 16, "num_frames": 2},
    }
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
        from spikmamba.engine.predict import load_predictor

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
    assert len(str(info.value)) < 2000 and "1,000,000 characters" in str(info.value)
    with pytest.raises(ValueError, match="did you mean 'spikmamba_tiny'"):
        create_model("spikmamba_tiyn")


# ---- bounded work on hostile input (items 6-10, 12, 14): a clear message before the work is done ----

MODEL = ["--model", "spikmamba_tiny_sps.synth"]


def _clip(path, t, sensor=(32, 32)):
    from spikmamba.events import make_events

    t = np.asarray(t, dtype=np.int64)
    rng = np.random.default_rng(0)
    write_events(path, make_events(t, rng.integers(0, sensor[0], len(t)), rng.integers(0, sensor[1], len(t)),
                                   rng.integers(0, 2, len(t))), sensor_size=sensor)
    return path


def _refused(argv, capsys, *needles, peak_mib=256):
    """``argv`` is refused (exit 2, a short message naming ``needles``) before the work it asks
    for is done: Python and NumPy never hold more than ``peak_mib`` (tracemalloc) on the way."""
    import tracemalloc

    tracemalloc.start()
    try:
        rc = main(argv)
    except SystemExit as exit:  # refused by the argument parser, which names the option
        rc = exit.code
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert rc == 2 and peak < peak_mib * 2**20, (rc, peak, err)
    assert "Traceback" not in err and len(err) < 2000, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("last", [2**40, 2**63 - 1], ids=["jump 2^40", "int64 max"])
def test_a_timestamp_jump_is_refused_quickly_naming_the_jump(last, tmp_path, capsys):
    clip = _clip(tmp_path / "jump.npz", list(range(0, 1_000_000, 1000)) + [last])
    _refused(["predict", *MODEL, str(clip), "--window", "500"], capsys, "the timestamps jump by", "--stride")
    out = tmp_path / "s.gif"
    _refused(["show", str(clip), "--out", str(out)], capsys, "frames")
    assert not out.exists()


@pytest.mark.parametrize("argv,needle", [
    (["--window", "0.0001"], "--window 0.0001 ms is below 1 µs"),
    (["--window", "100", "--stride", "0.0004"], "--stride 0.0004 ms is below 1 µs"),
    (["--window", "inf"], "--window must be a finite number"),
    (["--window", "nan"], "--window must be a finite number"),
    (["--window", "1e30"], "--window 1e+30 ms is longer than"),
    (["--window", "100", "--stride", "inf"], "--stride must be a finite number"),
    (["--window", "100", "--stride", "nan"], "--stride must be a finite number"),
    (["--top", "-3"], "--top must be >= 1"),
    (["--window", "100", "--top", "-3"], "--top must be >= 1"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_predict_time_options_are_checked_naming_the_option(argv, needle, tmp_path, capsys):
    clip = _clip(tmp_path / "c.npz", range(0, 1_000_000, 1000))
    _refused(["predict", *MODEL, str(clip), *argv], capsys, needle)


@pytest.mark.parametrize("argv,needle", [
    (["--frame-ms", "0.0001"], "--frame-ms 0.0001 ms is below 1 µs"),
    (["--frame-ms", "inf"], "--frame-ms must be a finite number"),
    (["--frame-ms", "nan"], "--frame-ms must be a finite number"),
    (["--frame-ms", "1e9"], None),
    (["--fps", "-1"], "--fps must be from 0.01 to 1000"),
    (["--fps", "1e-9"], "--fps must be from 0.01 to 1000"),
    (["--fps", "nan"], "--fps must be from 0.01 to 1000"),
    (["--scale", "-3"], "--scale must be a whole number"),
    (["--scale", "200"], "--scale must be a whole number"),
    (["--start-ms", "5000"], "nothing to show"),
    (["--start-ms", "nan"], "--start-ms must be a finite number"),
    (["--model", "spikmamba_tiny_sps.synth", "--window", "inf"], "--window must be a finite number"),
    (["--model", "spikmamba_tiny_sps.synth", "--window", "100", "--stride", "0.0001"], "--stride 0.0001 ms is below"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_show_options_are_checked_naming_the_option(argv, needle, tmp_path, capsys):
    clip = _clip(tmp_path / "c.npz", range(0, 1_000_000, 1000))
    out = tmp_path / "s.gif"
    if needle is None:  # a frame longer than the recording: one frame, not an OverflowError
        assert main(["show", str(clip), "--out", str(out), *argv]) == 0
        assert out.is_file()
        return
    _refused(["show", str(clip), "--out", str(out), *argv], capsys, needle)
    assert not out.exists()


def test_a_stride_longer_than_the_window_is_not_blamed_on_timestamps(tmp_path, capsys):
    clip = _clip(tmp_path / "c.npz", range(0, 3_000_000, 1000))
    assert main(["predict", *MODEL, str(clip), "--window", "100", "--stride", "1e12", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["late_events"] == 0 and any("between windows" in n for n in data["notes"]), data["notes"]
    assert len(data["windows"]) == 1 and data["windows"][0]["events"] == 100


def test_an_hdf5_file_declaring_a_trillion_events_is_refused_at_once(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        g.attrs["width"], g.attrs["height"] = 32, 32
        for k, dtype in (("t", "i8"), ("x", "u2"), ("y", "u2"), ("p", "i1")):
            g.create_dataset(k, shape=(10**12,), dtype=dtype, chunks=(1 << 16,))
    assert path.stat().st_size < 100_000
    for argv in (["predict", *MODEL, str(path)], ["predict", *MODEL, str(path), "--window", "100"],
                 ["show", str(path), "--out", str(tmp_path / "s.gif")]):
        rc = main(argv)
        err = capsys.readouterr()
        text = err.err + err.out
        assert rc in (1, 2) and "declares 1,000,000,000,000 values" in text and "unwritten space" in text, text


def test_a_huge_sensor_is_refused_before_allocating(tmp_path, capsys):
    from spikmamba.events import make_events

    write_events(tmp_path / "c.npy", make_events(np.arange(100) * 100, np.arange(100), np.arange(100), np.ones(100)))
    _refused(["predict", *MODEL, str(tmp_path / "c.npy"), "--sensor-size", "100000", "100000"], capsys,
             "1 to 65536 pixels")
    for argv in (
        ["predict", *MODEL, str(tmp_path / "c.npy")],
        ["predict", *MODEL, str(tmp_path / "c.npy"), "--window", "1"],
        ["show", str(tmp_path / "c.npy"), "--out", str(tmp_path / "s.gif")],
        ["inspect", *MODEL, str(tmp_path / "c.npy"), "--out", str(tmp_path / "insp")],
    ):
        rc = main([*argv, "--sensor-size", "60000", "60000"])
        captured = capsys.readouterr()
        assert rc in (1, 2) and "GiB, more than the" in captured.err, (argv, captured.err)
        assert "Traceback" not in captured.err


def test_show_memory_is_bounded_by_bytes_not_only_frames(tmp_path, capsys):
    clip = _clip(tmp_path / "vga.npz", range(0, 100_000, 10), sensor=(640, 480))
    _refused(["show", str(clip), "--out", str(tmp_path / "s.gif"), "--frame-ms", "0.005"], capsys,
             "frames of 640x480 pixels (the most that fit in 2 GiB")


def test_an_empty_recording_gets_no_class(tmp_path, capsys):
    from spikmamba.events import make_events

    write_events(tmp_path / "empty.npz", make_events([], [], [], []), sensor_size=(32, 32))
    clip = _clip(tmp_path / "full.npz", range(0, 1_000_000, 1000))
    assert main(["predict", *MODEL, str(tmp_path / "empty.npz"), str(clip), "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["file"] for p in preds] == [str(tmp_path / "empty.npz"), str(clip)]
    assert preds[0]["prediction"] == "(no events)" and preds[0]["probability"] is None and preds[0]["top"] == []
    assert preds[1]["probability"] > 0
    assert main(["predict", *MODEL, str(tmp_path / "empty.npz")]) == 0
    assert capsys.readouterr().out.strip() == f"{tmp_path / 'empty.npz'}: (no events)"
    _refused(["inspect", *MODEL, str(tmp_path / "empty.npz"), "--out", str(tmp_path / "i")], capsys, "holds no events")


# ---- configs (items 11, 14): bounded, strict YAML; values echoed in errors are cut ----

BOMB = "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9 if p else ['x'] * 9)}]\n"
               for p, c in zip([None, "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi"))


@pytest.mark.parametrize("key", ["data.root", "run.out_dir", "model.overrides"])
def test_a_yaml_alias_bomb_is_refused_at_once(key, tmp_path, capsys):
    section, _, leaf = key.partition(".")
    value = "*i"
    doc = BOMB + (f"{section}:\n  {leaf}: {value}\n" if leaf else f"{key}: {value}\n")
    (tmp_path / "bomb.yaml").write_text(doc)
    _refused(["train", "--config", str(tmp_path / "bomb.yaml"), f"run.out_dir={tmp_path / 'run'}"], capsys,
                   "alias bomb", str(tmp_path / "bomb.yaml"))
    assert not (tmp_path / "run").exists()


def test_a_bomb_or_deep_nesting_on_the_command_line_is_refused_briefly(tmp_path, capsys):
    deep = "[" * 5000 + "]" * 5000
    argv = ["train", f"model.overrides={deep}", f"run.out_dir={tmp_path / 'r'}"]
    _refused(argv, capsys, "nested more than 50 levels")
    _refused(
        ["train", "model.overrides=" + "&a [" + ", ".join(["x"] * 9) + "]", f"run.out_dir={tmp_path / 'r'}"],
        capsys,
        "model.overrides",
    )
    (tmp_path / "deep.yaml").write_text(f"model:\n  overrides: {{a: {deep}}}\n")
    _refused(["train", "--config", str(tmp_path / "deep.yaml")], capsys, "nested more than 50 levels")
    err = _refused(["train", "run.out_dir=" + "x" * 200_000, "schedule.epochs=-1"], capsys, "epochs")
    assert len(err) < 2000


@pytest.mark.parametrize(
    "text,needle",
    [
        ("epochs: 1\nepochs: 2\n", "key 'epochs' is given twice (lines 1 and 2)"),
        ("data:\n  root: a\n  root: b\n", "key 'root' is given twice (lines 2 and 3)"),
    ],
)
def test_duplicate_yaml_keys_are_refused(text, needle, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(text)
    _refused(["train", "--config", str(tmp_path / "c.yaml")], capsys, needle, str(tmp_path / "c.yaml"))


def test_a_non_utf8_or_missing_config_names_its_file(tmp_path, capsys):
    (tmp_path / "latin1.yaml").write_bytes("model: spikmamba_tiny  # réglé\n".encode("latin-1"))
    _refused(
        ["train", "--config", str(tmp_path / "latin1.yaml")], capsys, str(tmp_path / "latin1.yaml"), "not UTF-8 text"
    )
    err = _refused(
        ["train", "--config", str(tmp_path / "nope.yaml")],
        capsys,
        f"config file {tmp_path / 'nope.yaml'} does not exist",
    )
    assert "Errno" not in err


def test_an_empty_out_dir_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(["train", "run.out_dir=", "schedule.epochs=1"], capsys, "config key 'run.out_dir' is empty")
    assert not list(tmp_path.iterdir())


# ---- what a newcomer hit (items 15-21) ----


def test_a_misspelt_model_is_refused_first_with_a_suggestion_and_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _refused(["train", "model.name=spikmamba_tiyn"], capsys, "did you mean 'spikmamba_tiny'")
    assert "'model.name'" in err and not (tmp_path / "runs").exists()


def test_a_refused_run_removes_the_folder_it_made(tmp_path, capsys):
    empty = tmp_path / "data"
    empty.mkdir()
    out = tmp_path / "runs" / "nm"
    _refused(
        ["train", "data.name=nmnist", f"data.root={empty}", f"run.out_dir={out}", "run.progress=false"],
        capsys,
        "expected layout",
    )
    assert not out.exists()
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")  # a folder the user made is never removed
    _refused(
        ["train", "data.name=nmnist", f"data.root={empty}", f"run.out_dir={out}", "run.progress=false"],
        capsys,
        "expected layout",
    )
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def _nmnist_tree(root, n=12):
    from conftest import random_events

    (root / "train").mkdir(parents=True)
    for i in range(n):
        write_events(root / "train" / f"{i}.bs2", random_events(60, (34, 34), 300_000, i), format="nbin")
    (root / "train" / "labels.txt").write_text("h\n" + "".join(f"{i}\t{i % 3}\n" for i in range(n)))
    return root


def test_the_runs_next_line_works_and_test_without_a_test_set_uses_the_validation_split(tmp_path, capsys):
    root = _nmnist_tree(tmp_path / "data")
    out = tmp_path / "run"
    common = [
        "data.name=nmnist",
        f"data.root={root}",
        "model.name=spikmamba_tiny",
        "data.frames=2",
        "model.patch_size=4",
        "data.resolution=16",
        "schedule.epochs=1",
        "data.batch_size=4",
        "run.progress=false",
        "run.tensorboard=false",
        "data.num_workers=0",
    ]
    assert main(["train", *common, "data.val_fraction=0.25", f"run.out_dir={out}"]) == 0
    next_line = [line for line in capsys.readouterr().out.splitlines() if "next:" in line][0]
    command = next_line.split("next: spikmamba ", 1)[1].split()
    assert command == ["test", "--checkpoint", str(out / "last.pt")]
    assert main([*command, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "evaluated on its validation split instead (3 samples" in captured.err
    assert "nmnist validation: 3 samples" in captured.out
    # the training folder as test_root: no test split there, said with the way out
    _refused(
        ["test", "--checkpoint", str(out / "last.pt"), f"data.test_root={root}"],
        capsys,
        "test_root is the training folder",
        "evaluates the run's validation split",
    )
    # the training files as a test set: evaluated, with a warning and the count
    assert main(["test", "--checkpoint", str(out / "last.pt"), f"data.test_root={root / 'train'}", "--quiet"]) == 0
    assert "12 of the 12 test samples are files of the training set" in capsys.readouterr().err
    # no validation split and no test set: the next line says what `test` needs
    assert main(["train", *common, "data.val_fraction=0", f"run.out_dir={tmp_path / 'novali'}"]) == 0
    next_line = [line for line in capsys.readouterr().out.splitlines() if "next:" in line][0]
    assert next_line.endswith(f"--checkpoint {tmp_path / 'novali' / 'last.pt'} data.test_root=<folder of a test set>")
    summary = json.loads((tmp_path / "novali" / "summary.json").read_text())
    assert summary.get("test_acc") is None and summary.get("final_val_acc") is None
    _refused(["test", "--checkpoint", str(tmp_path / "novali" / "last.pt")], capsys, "no validation split")


def _start_train(tmp_path, *args):
    import os
    import signal
    import subprocess
    import sys

    # Ctrl-C as a terminal delivers it: the default disposition, whatever this test process inherited
    # (a process started with SIGINT ignored keeps ignoring it, by design)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spikmamba",
            "train",
            f"run.out_dir={tmp_path / 'run'}",
            "run.progress=false",
            "run.tensorboard=false",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _kill(proc):
    """A test that fails leaves no training process behind."""
    import os
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_for(path, proc, seconds=120):
    import time

    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)


def test_ctrl_c_during_data_preparation_is_quiet_and_leaves_no_folder(tmp_path):
    import os
    import signal

    proc = _start_train(tmp_path, "data.synth.num_train=3000", "data.synth.num_test=500")
    try:
        _wait_for(tmp_path / "run", proc)  # the folder is claimed, the clips are being simulated
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        out, err = proc.communicate(timeout=60)
    finally:
        _kill(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3, err
    assert "stopped while simulating" in err or "spikmamba train: interrupted" in err, err
    assert not (tmp_path / "run").exists()


def test_two_quick_ctrl_c_mid_epoch_save_and_stop_quietly(tmp_path):
    import os
    import signal
    import time

    from spikmamba.engine import load_checkpoint

    proc = _start_train(
        tmp_path,
        "data.synth.sensor_size=16",
        "data.frames=4",
        "model.patch_size=4",
        "data.synth.num_train=4000",
        "data.synth.num_test=16",
        "data.batch_size=8",
        "schedule.epochs=3",
        "data.num_workers=0",
        "data.val_fraction=0",
    )
    try:
        _wait_for(tmp_path / "run" / "config.yaml", proc)  # training has begun
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        _kill(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert "Ctrl-C: stopping after this step" in err, err  # acknowledged at once
    assert "Continue with: spikmamba train --resume" in err
    progress = load_checkpoint(tmp_path / "run" / "last.pt", resume=True)["progress"]
    assert progress["epoch"] == 0 and progress["step"] > 0, progress  # saved mid-epoch: no step lost


def test_a_second_press_never_interrupts_and_a_third_waits_for_the_save():
    import signal

    from spikmamba.engine.stop import StopFlag

    flag = StopFlag("run")
    flag._handle(signal.SIGINT, None)
    flag._handle(signal.SIGINT, None)  # two quick presses: still a clean stop with the save
    assert flag.raised and not flag.hurry
    flag.saving = True
    flag._handle(signal.SIGINT, None)  # a third during the save: the save finishes first
    assert flag.hurry
    flag.saving = False
    with pytest.raises(KeyboardInterrupt):
        flag._handle(signal.SIGINT, None)  # outside a save: stop now


def test_the_epoch_bar_counts_its_epoch_and_summary_lists_no_lock(tmp_path):
    import re
    import subprocess
    import sys

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "spikmamba",
            "train",
            f"run.out_dir={tmp_path / 'run'}",
            "data.synth.sensor_size=16",
            "data.frames=4",
            "model.patch_size=4",
            "data.synth.num_train=32",
            "data.synth.num_test=16",
            "data.batch_size=16",
            "schedule.epochs=2",
            "data.val_fraction=0",
            "run.progress=true",
            "run.tensorboard=false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    counts = set(re.findall(r"epoch [12]/2: +\d+%\|[^|]*\| (\d+/\d+)", run.stderr))
    assert counts and all(c.endswith("/2") for c in counts), counts  # 2 steps an epoch, not 4 for the run
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert ".lock" not in summary["files"] and "last.pt" in summary["files"]


def test_a_warning_is_one_line_without_python_source(tmp_path):
    import subprocess
    import sys

    (tmp_path / "garbage.bs2").write_bytes(np.random.default_rng(1).bytes(500))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "spikmamba",
            "predict",
            "--model",
            "spikmamba_tiny_sps.nmnist",
            str(tmp_path / "garbage.bs2"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = run.stderr.strip().splitlines()
    assert lines[0].startswith("spikmamba: warning: ") and "timestamps go backwards" in lines[0], run.stderr
    assert "UserWarning" not in run.stderr and "warnings.warn" not in run.stderr and len(lines) == 2, run.stderr


def test_predicting_a_labelled_folder_reports_accuracy_and_confusion(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "clips"), "--count", "12"]) == 0
    capsys.readouterr()
    assert main(["predict", *MODEL, str(tmp_path / "clips"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    right = sum(p["prediction"] == Path(p["file"]).stem.split("_", 1)[1] for p in r["predictions"])
    s = r["labelled"]
    assert s["labels"] == [str(tmp_path / "clips" / "labels.csv")] and s["samples"] == 12
    assert s["top1"] == pytest.approx(right / 12) and sum(map(sum, s["confusion"])) == 12
    assert sum(s["confusion"][i][i] for i in range(len(s["confusion"]))) == right
    assert main(["predict", *MODEL, str(tmp_path / "clips")]) == 0
    out = capsys.readouterr().out
    assert (
        f"accuracy on the labelled files: {right / 12 * 100:.2f}% (12 files" in out and "confusion (rows: true" in out
    )


def test_nmnist_labels_txt_is_read_too(shared_data, tmp_path, capsys):
    import shutil

    source = shared_data / "nmnist-small" / "train"
    folder = tmp_path / "train"
    folder.mkdir()
    lines = source.joinpath("labels.txt").read_text().splitlines()
    for line in lines[1:201]:
        shutil.copy(source / f"{line.split()[0]}.bs2", folder)
    (folder / "labels.txt").write_text("\n".join(lines[:201]) + "\n")
    assert main(["predict", "--model", "spikmamba_tiny_sps.nmnist", str(folder), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)["labelled"]
    assert s["samples"] == 200 and s["top1"] > 0.8  # samples it was trained on


def test_an_exported_onnx_file_predicts_like_its_checkpoint(tmp_path, capsys):
    pytest.importorskip("onnxruntime")

    from spikmamba.engine import TrainConfig, train

    train(
        TrainConfig().replace({"data.synth.sensor_size": 16, "data.frames": 4, "model.patch_size": 4,
                               "data.synth.num_train": 32, "data.synth.num_test": 16, "data.batch_size": 16,
                               "schedule.epochs": 1, "run.progress": False, "run.tensorboard": False,
                               "model.name": "spikmamba_tiny", "run.out_dir": str(tmp_path / "run")})
    )
    ckpt = str(tmp_path / "run" / "last.pt")
    assert main(["export", "--checkpoint", ckpt, "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["synth", "--out", str(tmp_path / "clips"), "--count", "4", "--sensor-size", "16"]) == 0
    capsys.readouterr()
    outs = []
    for source in (
        ["--checkpoint", ckpt],
        ["--model", str(tmp_path / "m.onnx")],
        ["--checkpoint", str(tmp_path / "m.onnx")],
    ):
        assert main(["predict", *source, str(tmp_path / "clips"), "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out)["predictions"])
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert a["prediction"] == b["prediction"] and a["probability"] == pytest.approx(b["probability"], abs=1e-4)
    (tmp_path / "bad.onnx").write_bytes(b"not onnx at all")
    _refused(
        ["predict", "--model", str(tmp_path / "bad.onnx"), str(tmp_path / "clips")],
        capsys,
        "is not a readable ONNX file",
    )
    assert "pickled" not in capsys.readouterr().err
    clip = next((tmp_path / "clips").glob("*.npz"))
    _refused(
        ["inspect", "--model", str(tmp_path / "m.onnx"), str(clip), "--out", str(tmp_path / "i")],
        capsys,
        "is an ONNX file",
    )


def test_the_format_hint_names_an_option_that_exists(tmp_path, capsys):
    from conftest import random_events

    write_events(tmp_path / "digit.nbin", random_events(300, (34, 34), 300_000, 3), format="nbin")
    (tmp_path / "digit.nbin").rename(tmp_path / "digit.rec")  # an extension nothing recognises
    assert main(["predict", "--model", "spikmamba_tiny_sps.nmnist", str(tmp_path / "digit.rec")]) == 1  # a file's error
    err = capsys.readouterr().err
    assert "unknown event file format" in err and "(--format on the command line)" in err
    for argv in (
        ["predict", "--model", "spikmamba_tiny_sps.nmnist"],
        ["predict", "--model", "spikmamba_tiny_sps.nmnist", "--window", "100"],
    ):
        assert main([*argv, str(tmp_path / "digit.rec"), "--format", "nbin", "--sensor-size", "34", "34"]) == 0
        assert "digit.rec" in capsys.readouterr().out
    assert (
        main(
            [
                "show",
                str(tmp_path / "digit.rec"),
                "--format",
                "nbin",
                "--sensor-size",
                "34",
                "34",
                "--out",
                str(tmp_path / "d.gif"),
            ]
        )
        == 0
    )
    assert (tmp_path / "d.gif").is_file()


def test_a_stop_leaves_the_process_signal_handlers_as_they_were():
    """An in-process run that was interrupted left SIGINT ignored for the rest of the process (a
    notebook lost Ctrl-C; every later subprocess of the test session inherited the ignore)."""
    import signal

    from spikmamba.engine.stop import Interrupted, StopFlag

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted):
        with StopFlag("run") as flag:
            flag._handle(signal.SIGINT, None)
            raise Interrupted("stopped")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # started with Ctrl-C ignored: it stays so
    try:
        with StopFlag("run"):
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before[0])
