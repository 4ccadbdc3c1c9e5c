"""A run never writes into another run's folder, and two live processes never share one (issue 25)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spikmamba.cli import main
from spikmamba.engine import TrainConfig, load_checkpoint, train
from spikmamba.engine.run_dir import LOCK_NAME, RunDirBusy, RunLock, fresh_run_dir

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "nmnist-small" / "train"
TINY = {"data.synth.sensor_size": 16, "data.frames": 4, "model.patch_size": 4, "data.synth.num_train": 32,
        "data.synth.num_test": 16, "data.batch_size": 16, "schedule.epochs": 1, "run.progress": False,
        "run.tensorboard": False}


def tiny(out, changes: dict | None = None) -> TrainConfig:
    return TrainConfig().replace({**TINY, "run.out_dir": str(out), **(changes or {})})


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_recorded_data_key_with_synth_data_is_an_error_and_writes_nothing(tmp_path, capsys):
    # the newcomer's command: data.root without data.name silently trained on synth before
    root = SHARED if SHARED.is_dir() else tmp_path
    out = tmp_path / "runs"
    assert main(["train", f"data.root={root}", "schedule.epochs=1", f"run.out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "'data.root'" in err and "data.name" in err and "spikmamba datasets" in err
    assert not out.exists()


def test_a_second_run_goes_to_a_fresh_folder_and_leaves_the_first_intact(tmp_path, capsys):
    first = tmp_path / "synth"
    train(tiny(first))
    before = snapshot(first)
    summary = train(tiny(first, {"run.seed": 1}))
    assert summary["out_dir"] == str(tmp_path / "synth-2")
    assert snapshot(first) == before  # config.yaml, log.csv, last.pt, summary.json byte-identical
    assert (tmp_path / "synth-2" / "last.pt").is_file()
    assert load_checkpoint(tmp_path / "synth-2" / "last.pt")["config"]["run"]["out_dir"] == str(tmp_path / "synth-2")
    assert "holds another run" in capsys.readouterr().err
    assert fresh_run_dir(first) == tmp_path / "synth-3"
    # overwrite=true replaces the first run's files instead
    summary = train(tiny(first, {"run.seed": 2, "run.overwrite": True}))
    assert summary["out_dir"] == str(first) and snapshot(first)["last.pt"] != before["last.pt"]


def test_a_live_process_holding_the_folder_refuses_a_second_one(tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny(out))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(f"{holder.pid}\n{os.uname().nodename}\n2026-11-30 00:00:00\n")
        with pytest.raises(RunDirBusy, match=f"process {holder.pid}"):
            train(tiny(out, {"run.overwrite": True}))
        assert main(["train", "--resume", str(out / "last.pt"), "schedule.epochs=2"]) == 2
        assert f"being written by process {holder.pid}" in capsys.readouterr().err
        assert load_checkpoint(out / "last.pt")["progress"]["epoch"] == 1  # untouched
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and the resume takes over
    assert main(["train", "--resume", str(out / "last.pt"), "schedule.epochs=2"]) == 0
    assert "took over" in capsys.readouterr().err
    assert load_checkpoint(out / "last.pt")["progress"]["epoch"] == 2
    assert not (out / LOCK_NAME).exists()  # released at the end


def test_lock_is_exclusive_within_one_machine(tmp_path):
    with RunLock(tmp_path):
        child = subprocess.run([sys.executable, "-c", "from spikmamba.engine.run_dir import RunLock; import sys; "
                                "RunLock(sys.argv[1]).acquire()", str(tmp_path)], capture_output=True, text=True)
        assert child.returncode != 0 and "RunDirBusy" in child.stderr
    assert not (tmp_path / LOCK_NAME).exists()


def test_under_torchrun_a_busy_folder_stops_every_process(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / LOCK_NAME).write_text(f"{holder.pid}\n{os.uname().nodename}\n2026-11-30 00:00:00\n")
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "spikmamba",
            "train",
            f"run.out_dir={out}",
            "run.overwrite=true",
            "data.synth.sensor_size=16",
            "data.synth.num_train=16",
            "data.synth.num_test=16",
            "run.progress=false",
            "run.tensorboard=false",
        ]
        run = subprocess.run(
            cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120
        )
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode != 0  # neither rank hangs: both got rank 0's refusal and stopped
    # rank 0 says why; rank 1 says it too unless torchrun's agent, seeing rank 0 exit with an error,
    # ends it first (it did on a loaded machine), so one or two lines
    assert run.stderr.count(f"being written by process {holder.pid}") in (1, 2), run.stderr[-1500:]


@pytest.mark.parametrize("content", [b"", b"\x00\xffgarbage", b"not-a-pid\nhost\n"], ids=["empty", "binary", "text"])
def test_an_unreadable_lock_is_treated_as_live_and_overwrite_deletes_nothing(content, tmp_path, capsys):
    """Issue 33, item 4: an empty lock is exactly what a starting run's lock looked like between
    its create and its write; it was taken over and overwrite=true then deleted the run's files."""
    out = tmp_path / "run"
    train(tiny(out))
    before = snapshot(out)
    (out / LOCK_NAME).write_bytes(content)
    with pytest.raises(RunDirBusy, match=f"{out / LOCK_NAME} exists but cannot be read as a lock"):
        train(tiny(out, {"run.overwrite": True}))
    assert main(["train", "--resume", str(out / "last.pt"), "schedule.epochs=2"]) == 2
    assert "cannot be read as a lock" in capsys.readouterr().err
    assert {k: v for k, v in snapshot(out).items() if k != LOCK_NAME} == {
        k: v for k, v in before.items() if k != LOCK_NAME
    }


def test_the_lock_is_never_seen_empty(tmp_path, monkeypatch):
    """The lock appears whole: at the moment it comes into being it already holds pid and host."""
    seen = []
    real = os.link

    def watching(src, dst, *a, **kw):
        seen.append(Path(src).read_text())
        assert not Path(dst).exists()
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "link", watching)
    with RunLock(tmp_path) as lock:
        assert seen and seen[0].split("\n")[0] == str(os.getpid())
        assert (tmp_path / LOCK_NAME).read_text() == seen[0] and lock._held
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # no temporary file left
    assert not list(tmp_path.iterdir())
