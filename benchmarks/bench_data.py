"""The streaming data pipeline at scale (issue 19): memory, time to the first step, throughput.

Run as ``python benchmarks/bench_data.py [--recordings 20000] [--json FILE]``. It

1. builds a folder of ``--recordings`` N-MNIST recordings (default 20,000: the 1,000 real samples
   of ``../shared/data/nmnist-small`` linked over and over) and a folder of 1,000 the same way;
2. trains ``spikmamba_tiny_sps`` at ``resolution=128 frames=16`` for ``--steps`` steps on each,
   in a fresh process, sampling the resident memory of that process and of each of its loader
   workers (``/proc``, Linux): peak RSS of the main process and of the largest worker, time to
   the first optimizer step, samples/s. The two folder sizes side by side show whether memory
   grows with the number of recordings;
3. times the loader alone (frames and AFE at 128x128, T=16; 0, 1 and 2 workers; cold, and with
   a warm representation cache) next to the train step's samples/s, so it shows whether the
   loader or the model limits training;
4. writes everything as JSON (``--json``) and prints a table.

Nothing here is downloaded. The harness entry ``loader`` (``spikmamba bench loader``) is the
loader-alone part on 200 recordings, for quick checks.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "nmnist-small" / "train"


def build_folder(n: int, dest: Path, source: Path = SHARED) -> Path:
    """``dest`` with ``n`` recordings (symbolic links to the real samples, cycled) and labels.txt."""
    lines = (source / "labels.txt").read_text().splitlines()[1:]
    dest.mkdir(parents=True, exist_ok=True)
    rows = ["#sample\t#class"]
    for i in range(n):
        sid, digit = lines[i % len(lines)].split()
        link = dest / f"{i}.bs2"
        if not link.exists():
            os.symlink(source / f"{sid}.bs2", link)
        rows.append(f"{i}\t{digit}")
    (dest / "labels.txt").write_text("\n".join(rows) + "\n")
    return dest


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def train_run(root: Path, out: Path, steps: int, batch_size: int, workers: int, extra=()) -> dict:
    """One ``spikmamba train`` in a fresh process; its peak memory and that of its workers."""
    cmd = [sys.executable, "-m", "spikmamba", "train", "data.name=nmnist", f"data.root={root}",
           "model.name=spikmamba_tiny_sps", "data.resolution=128", "data.frames=16", f"schedule.max_steps={steps}",
           f"data.batch_size={batch_size}", f"data.num_workers={workers}", f"run.out_dir={out}", "run.overwrite=true",
           "run.progress=false", "run.tensorboard=false", "data.allow_outside_root=true",
           *extra]  # the folder is links to the real samples
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_main, peak_worker = 0, {}
    while proc.poll() is None:
        peak_main = max(peak_main, _status_kb(proc.pid, "VmHWM"))
        for child in _children(proc.pid):
            peak_worker[child] = max(peak_worker.get(child, 0), _status_kb(child, "VmHWM"))
        time.sleep(0.2)
    wall = time.perf_counter() - start
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}): {stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    steps_after = summary["steps"] - 1
    rate = steps_after * batch_size / max(summary["train_s"] - summary["first_step_s"], 1e-9)
    return {
        "recordings": sum(1 for _ in root.glob("*.bs2")),
        "workers": summary["num_workers"],
        "batch_size": batch_size,
        "steps": summary["steps"],
        "wall_s": wall,
        "first_step_s_in_train": summary["first_step_s"],
        "train_s": summary["train_s"],
        "train_samples_per_s": rate,
        "peak_rss_main_mb": peak_main / 1024,
        "peak_rss_largest_worker_mb": max(peak_worker.values(), default=0) / 1024,
        "loader_workers_seen": len(peak_worker),
    }


def loader_throughput(root: Path, kind: str, workers: int, cache_dir: str | None, samples: int,
                      batch_size: int = 16) -> float:
    """Samples/s of the loader alone: read + represent ``samples`` recordings at 128x128, T=16."""

    from spikmamba.engine.config import TrainConfig
    from spikmamba.engine.inputs import load_data
    from spikmamba.engine.loader import ShuffledBatches, make_loader

    cfg = TrainConfig().replace({"data.name": "nmnist", "data.root": str(root), "data.resolution": 128,
                                 "data.frames": 16, "data.representation": kind, "data.cache_dir": cache_dir or "",
                                 "data.augment_shift": 0, "data.allow_outside_root": True})  # links to the real samples
    data = load_data(cfg)
    sampler = ShuffledBatches(min(samples, len(data.train)), batch_size, seed=0)
    loader = make_loader(data.train, sampler, workers)
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch.y)
    return n / (time.perf_counter() - start)


def loader_table(root: Path, samples: int, workers=(0, 1, 2)) -> list[dict]:
    rows = []
    for kind in ("frames", "afe"):
        with tempfile.TemporaryDirectory() as cache:
            for w in workers:
                rows.append({"kind": kind, "workers": w, "cache": "none",
                             "samples_per_s": loader_throughput(root, kind, w, None, samples)})
            loader_throughput(root, kind, 0, cache, samples)  # fill the cache
            for w in workers:
                rows.append({"kind": kind, "workers": w, "cache": "warm",
                             "samples_per_s": loader_throughput(root, kind, w, cache, samples)})
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recordings", type=int, default=20_000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=-1, help="num_workers of the training runs (-1: the default)")
    p.add_argument("--loader-samples", type=int, default=320)
    p.add_argument("--json", default=None)
    p.add_argument("--keep", default=None, help="folder for the recordings and runs (default: a temporary one)")
    args = p.parse_args(argv)
    if not (SHARED / "labels.txt").is_file():
        print(f"skipped: the real N-MNIST samples ({SHARED}) are not here")
        return {"skipped": f"{SHARED} absent"}
    work = Path(args.keep or tempfile.mkdtemp(prefix="spikmamba-bench-data-"))
    report = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "runs": [], "loader": []}
    for n in (1_000, args.recordings):
        root = build_folder(n, work / f"nmnist-{n}")
        r = train_run(root, work / f"run-{n}", args.steps, args.batch_size, args.workers)
        report["runs"].append(r)
        print(f"{n:>6} recordings, {r['workers']} workers: first step {r['first_step_s_in_train']:.1f} s after start "
              f"(process {r['wall_s']:.0f} s in all for {r['steps']} steps), {r['train_samples_per_s']:.2f} samples/s, "
              f"peak RSS main {r['peak_rss_main_mb']:.0f} MB, largest worker {r['peak_rss_largest_worker_mb']:.0f} MB")
    report["loader"] = loader_table(work / f"nmnist-{args.recordings}", args.loader_samples)
    for row in report["loader"]:
        print(f"loader {row['kind']:<6} {row['workers']} workers, cache {row['cache']:<4}: "
              f"{row['samples_per_s']:8.1f} samples/s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def synthetic_folder(n: int, dest: Path) -> Path:
    """``n`` N-MNIST-like recordings (random events on a 34x34 sensor, about 4,000 each) when the
    real samples are not here, so the harness entry runs anywhere."""
    import numpy as np

    from spikmamba.events import make_events
    from spikmamba.events.io import write_events

    dest.mkdir(parents=True, exist_ok=True)
    rows = ["#sample\t#class"]
    for i in range(n):
        rng = np.random.default_rng(i)
        k = 4000
        write_events(dest / f"{i}.bs2", make_events(np.sort(rng.integers(0, 300_000, k)), rng.integers(0, 34, k),
                                                     rng.integers(0, 34, k), rng.integers(0, 2, k)), format="nbin")
        rows.append(f"{i}\t{i % 10}")
    (dest / "labels.txt").write_text("\n".join(rows) + "\n")
    return dest


def _loader_setup(quick: bool):
    n = 32 if quick else 200
    folder = Path(tempfile.mkdtemp(prefix="spikmamba-loader-"))
    real = (SHARED / "labels.txt").is_file()
    root = build_folder(n, folder) if real else synthetic_folder(n, folder)
    what = "real N-MNIST recordings" if real else "N-MNIST-like random recordings (the real ones are not here)"
    return {"what": f"loader alone: {n} {what} -> frames 128x128, T=16 (samples/s = {n} / time)",
            "impls": {"loader, 2 workers": lambda: loader_throughput(root, "frames", 2, None, n),
                      "loader, 0 workers": lambda: loader_throughput(root, "frames", 0, None, n)}}


def e2e_steps(root: Path, out: Path, kind: str, size: int, frames: int, model: str = "spikmamba_tiny_sps",
              batch_size: int = 16, device: str = "cpu", amp: str = "none", represent_on: str = "cpu"):
    """``(trainer, from_files, from_memory)``: one optimizer step of ``spikmamba train``'s own loop
    (its Trainer, loader and workers) on the recordings in ``root``, and the same step on one batch
    kept in memory (as the model's input, already built). Their time ratio is the fraction of the
    model's own rate that the data path delivers (issue 30's target: 0.9). ``represent_on``: where
    the frames are built (``data.represent_on``). Also used by gpu_check.py on a GPU."""
    from types import SimpleNamespace

    import torch
    from tqdm import tqdm

    from spikmamba.engine.config import TrainConfig
    from spikmamba.engine.device_inputs import model_input
    from spikmamba.engine.distributed import DistEnv
    from spikmamba.engine.inputs import load_data
    from spikmamba.engine.trainer import Trainer

    cfg = TrainConfig().replace({"model.name": model, "data.name": "nmnist", "data.root": str(root),
                                 "data.resolution": size, "data.frames": frames, "data.representation": kind,
                                 "data.allow_outside_root": True, "run.out_dir": str(out), "run.progress": False,
                                 "run.tensorboard": False, "device.name": device, "device.amp": amp,
                                 "data.batch_size": batch_size, "schedule.epochs": 1000,
                                 "data.represent_on": represent_on})
    trainer = Trainer(cfg, load_data(cfg, device=device), DistEnv(), torch.device(device))
    trainer.bar = tqdm(disable=True)  # fit() makes it; these steps run outside fit
    stop = SimpleNamespace(raised=False, raised_everywhere=False)
    batches = iter(trainer.train_loader)
    fixed = next(batches)
    fixed = fixed._replace(x=model_input(fixed.x, trainer.data.representation, torch.device(device)))

    def from_files():
        nonlocal batches
        try:
            batch = next(batches)
        except StopIteration:  # the loader's epoch is over: the next one, as training does
            batches = iter(trainer.train_loader)
            batch = next(batches)
        trainer._step(batch, stop)

    return trainer, from_files, lambda: trainer._step(fixed, stop)


def _train_e2e(kind: str, represent_on: str = "cpu"):
    def setup(quick: bool):
        from spikmamba.threads import usable_cpus

        n, size, T = (32, 32, 4) if quick else (400, 128, 16)
        folder = Path(tempfile.mkdtemp(prefix="spikmamba-e2e-"))
        atexit.register(shutil.rmtree, folder, True)
        real = (SHARED / "labels.txt").is_file()
        root = build_folder(n, folder / "data") if real else synthetic_folder(n, folder / "data")
        trainer, from_files, from_memory = e2e_steps(root, folder / "run", kind, size, T, represent_on=represent_on)
        what = "real N-MNIST recordings" if real else "N-MNIST-like random recordings"
        return {"what": f"a train step of spikmamba_tiny_sps, batch 16 of {kind} {T}x{size}x{size} built on the "
                        f"{represent_on} (data.represent_on), from {n} {what} ({trainer.num_workers} loader workers, "
                        f"{usable_cpus()} CPUs) vs from memory",
                "impls": {"from event files (spikmamba train's loop)": from_files,
                          "from memory (the model's own rate)": from_memory}}
    return setup


BENCHMARKS = {"loader": _loader_setup, "train-e2e-frames": _train_e2e("frames"), "train-e2e-afe": _train_e2e("afe"),
              "train-e2e-frames-device": _train_e2e("frames", "device"),
              "train-e2e-afe-device": _train_e2e("afe", "device")}

if __name__ == "__main__":
    main()
