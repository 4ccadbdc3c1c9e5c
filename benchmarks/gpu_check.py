"""The GPU check of issue 22: kernel timings against baselines measured in the same run, and a
published-size train step. Run by ``benchmarks/gpu_check.sh`` (which runs the CUDA tests first).

Needs only PyTorch, Triton and NumPy beside ``src/`` (``PYTHONPATH=src``); ``mambapy`` and
``mamba_ssm`` are timed when they import. Times are CUDA-event medians after a warm-up.
Writes ``gpu_check.json`` and ``gpu_check.md`` (a table) into ``--out``.

``--smoke`` runs every part of this script on the CPU at toy sizes, the Triton kernels in
Triton's interpreter, so that a GPU's scarce minutes are not lost to a bug in the script itself
(``tests/test_gpu_check.py``). Its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from pathlib import Path

import torch

DEV = "cuda"
#: the issue's sizes ("full"), smaller ones for a first look, toy ones for --smoke
SCAN_SHAPE = {"smoke": (1, 8, 24, 4), "quick": (4, 64, 512, 16), "full": (32, 512, 4096, 16)}  # B, D, L, N
SCAN_SMALL = {"smoke": (1, 8, 48, 4), "quick": (1, 64, 2048, 16), "full": (2, 512, 4096, 16)}  # few programs
LIF_SHAPE = {"smoke": (3, 2, 4, 5, 5), "quick": (4, 8, 64, 16, 16), "full": (16, 32, 256, 32, 32)}  # T, B, C, H, W
SAVE = lambda: None  # noqa: E731  (main sets it: writes the JSON and the table as results come in)


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def reset_peak() -> None:
    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if DEV == "cuda" else float("nan")


def empty_cache() -> None:
    if DEV == "cuda":
        torch.cuda.empty_cache()


def cuda_time(fn, repeats: int = 5, warmup: int = 1, budget_s: float = 60.0) -> float:
    """Median seconds of ``fn()`` (CUDA events; a wall clock with ``--smoke``); fewer repeats when
    one call is slow."""
    for _ in range(warmup):
        fn()
    sync()
    times, started = [], time.perf_counter()
    for _ in range(repeats):
        if DEV != "cuda":
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            continue
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
        if time.perf_counter() - started > budget_s:
            break
    return statistics.median(times)


def copy_bandwidth(size: int = 2 << 30) -> float:
    """Bytes per second of a device-to-device copy of 2 GiB (read + write counted)."""
    x = torch.empty(size, dtype=torch.uint8, device=DEV)
    y = torch.empty_like(x)
    t = cuda_time(functools.partial(y.copy_, x), repeats=10)
    del x, y
    return 2 * size / t


def scan_case(B=32, D=512, L=4096, N=16, dtype=torch.float32):
    g = torch.Generator(device=DEV).manual_seed(0)
    r = lambda *s: torch.randn(*s, device=DEV, generator=g, dtype=dtype).requires_grad_()  # noqa: E731
    return dict(u=r(B, D, L), delta=r(B, D, L), A=(-torch.rand(D, N, device=DEV) - 0.5).requires_grad_(),
                B=r(B, N, L), C=r(B, N, L), D=r(D).float(), z=r(B, D, L), delta_bias=r(D).float())


def scan_bytes(B, D, L, N, itemsize: int = 4) -> int:
    """Bytes the Triton scan must move to and from memory, fwd + bwd, fp32: u, delta, z read and
    out written forward; u, delta, z and the output gradient read and three gradients written
    backward; B and C read once each way, their gradients added once (read and write)."""
    return itemsize * (4 * B * D * L + 7 * B * D * L + 4 * B * N * L) + 4 * 4 * B * N * L  # B/C gradients: fp32


def scan_workload(size: str, dtype=torch.float32, shape=None):
    """``run(fn)``: a callable doing one fwd+bwd of the scan ``fn`` at ``size`` (or ``shape``; the
    same inputs each time)."""
    inputs = scan_case(*(shape or SCAN_SHAPE[size]), dtype=dtype)
    leaves, gout = list(inputs.values()), torch.randn_like(inputs["u"])

    def run(fn):
        return lambda: torch.autograd.grad(fn(**inputs, delta_softplus=True), leaves, gout)
    return run


def lif_workload(size: str, dtype=torch.float32):
    """``(run(fn), neurons x steps)``: one fwd+bwd of the multi-step LIF ``fn`` at ``size``."""
    from spikmamba.nn.surrogate import Sigmoid

    x = torch.randn(*LIF_SHAPE[size], device=DEV, dtype=dtype).requires_grad_()
    gs, v0 = torch.randn_like(x), torch.zeros((), device=DEV)

    def run(fn):
        return lambda: torch.autograd.grad(fn(x, v0, 0.5, 1.0, 0.0, True, True, Sigmoid())[0], x, gs)
    return run, x.numel()


def time_scans(results: dict, size: str):
    from spikmamba.nn.ssm.selective_scan import selective_scan_fast, selective_scan_triton

    B, D, L, N = SCAN_SHAPE[size]
    run = scan_workload(size)
    impls = {"triton (ours)": run(selective_scan_triton), "torch blocked (ours, CPU path)": run(selective_scan_fast)}
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as mamba_fn
        impls["mamba_ssm"] = run(mamba_fn)
    except Exception as err:
        results["scan"]["mamba_ssm"] = f"not importable: {type(err).__name__}"
    try:
        from mambapy.pscan import pscan

        def mambapy_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
            dt = torch.nn.functional.softplus(delta + delta_bias[:, None]).transpose(1, 2)  # [B, L, D]
            dA = torch.exp(dt.unsqueeze(-1) * A)                                          # [B, L, D, N]
            bx = dt.unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2) * u.transpose(1, 2).unsqueeze(-1)
            hs = pscan(dA, bx)
            y = (hs @ C.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2) + D[:, None] * u
            return y * torch.nn.functional.silu(z)
        impls["mambapy pscan"] = run(mambapy_scan)
    except Exception as err:
        results["scan"]["mambapy pscan"] = f"not importable: {type(err).__name__}"
    results["scan"]["shape"] = [B, D, L, N]
    for name, fn in impls.items():
        try:
            reset_peak()
            slow = name.startswith("torch")  # many small kernels: one timed call after the warm-up
            t = cuda_time(fn, repeats=1 if slow else 3, budget_s=40)
            results["scan"][name] = {"fwd_bwd_ms": t * 1e3, "peak_gib": peak_gib()}
        except Exception as err:  # e.g. out of memory for a baseline that stores [B, L, D, N]
            results["scan"][name] = f"failed: {type(err).__name__}: {str(err)[:200]}"
        empty_cache()
    ours = results["scan"]["triton (ours)"]
    if isinstance(ours, dict):
        ours["GB_per_s"] = scan_bytes(B, D, L, N) / (ours["fwd_bwd_ms"] / 1e3) / 1e9
        ours["fraction_of_copy_bandwidth"] = ours["GB_per_s"] * 1e9 / results["copy_bytes_per_s"]


def time_lif(results: dict, size: str):
    from spikmamba.nn.lif_kernel import MultiStepLIFFunction
    from spikmamba.nn.lif_op import multistep_lif_triton

    run, numel = lif_workload(size)
    floor_s = 4 * numel * 4 / results["copy_bytes_per_s"]  # read x, write s; read g_s, write g_x
    results["lif"] = {"shape": list(LIF_SHAPE[size]), "floor_ms": floor_s * 1e3}
    for name, fn in {"triton (ours)": run(multistep_lif_triton),
                     "torch fused (ours, CPU path)": run(lambda *a: MultiStepLIFFunction.apply(*a))}.items():
        t = cuda_time(fn, repeats=5, budget_s=30)
        results["lif"][name] = {"fwd_bwd_ms": t * 1e3, "x_floor": t / floor_s}


def _train_setup(size: str, precision: str):
    """``(step, batch, model)``: one optimiser step of the published model at ``size``."""
    from spikmamba.models import create_model
    from spikmamba.nn.functional import reset_net

    batch = {"smoke": 1, "quick": 4, "full": 32}[size]
    # at --smoke: the same family, shrunk (the published size takes minutes on a CPU)
    small = {"img_size": 16, "patch_size": 4, "num_frames": 2} if size == "smoke" else {}
    torch.manual_seed(0)
    model = create_model("spikmamba_bissm_bisla_t16", **small).to(DEV).train()
    inp = model.model_cfg.input  # the arguments it was built with: shrunk at --smoke
    x = torch.rand(batch, inp.frames, inp.channels, inp.size, inp.size, device=DEV)
    y = torch.randint(0, model.model_cfg.num_classes, (batch,), device=DEV)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(forward=model):
        reset_net(model)
        with torch.autocast(DEV, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(forward(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, batch, model


def train_step(results: dict, size: str):
    for precision in ("fp32", "bf16"):
        step, batch, model = _train_setup(size, precision)
        reset_peak()
        t = cuda_time(step, repeats=5, warmup=2, budget_s=60)
        entry = {"step_ms": t * 1e3, "samples_per_s": batch / t, "peak_gib": peak_gib()}
        activity = torch.profiler.ProfilerActivity.CUDA if DEV == "cuda" else torch.profiler.ProfilerActivity.CPU
        with torch.profiler.profile(activities=[activity]) as prof:
            step()
            sync()
        events = prof.key_averages()
        own = (lambda e: e.self_device_time_total) if DEV == "cuda" else (lambda e: e.self_cpu_time_total)  # noqa: E731
        total = sum(own(e) for e in events)
        scan = sum(own(e) for e in events if "_scan" in e.key)
        lif = sum(own(e) for e in events if "_lif" in e.key)
        entry["scan_fraction_of_gpu_time"] = scan / total if total else None
        entry["lif_fraction_of_gpu_time"] = lif / total if total else None
        results["train"][precision] = entry
        SAVE()
        del model, step
        empty_cache()


def compiled_train_step(results: dict, size: str):
    """Eager against ``torch.compile`` (the operators inside the graph), same step, fp32 and bf16:
    ms per step, samples/s, the first compiled step's time (the compile), peak memory."""
    results["compile"] = {}
    for precision in ("fp32", "bf16"):
        step, batch, model = _train_setup(size, precision)
        reset_peak()
        eager = cuda_time(step, repeats=3, warmup=1, budget_s=30)
        eager_peak = peak_gib()
        # --smoke: AOT autograd without inductor (the same tracing, the operators' fake kernels
        # included; inductor's C++ build of the model would take a minute a precision on a CPU)
        compiled = torch.compile(model, **({"backend": "aot_eager"} if size == "smoke" else {}))
        started = time.perf_counter()
        step(compiled)
        sync()
        compile_s = time.perf_counter() - started
        reset_peak()
        t = cuda_time(functools.partial(step, compiled), repeats=5, warmup=1, budget_s=40)
        results["compile"][precision] = {"eager_ms": eager * 1e3, "compiled_ms": t * 1e3, "compile_s": compile_s,
                                         "eager_samples_per_s": batch / eager, "compiled_samples_per_s": batch / t,
                                         "eager_peak_gib": eager_peak, "compiled_peak_gib": peak_gib()}
        SAVE()
        del model, step, compiled
        torch._dynamo.reset()
        empty_cache()


def train_from_files(results: dict, size: str):
    """``spikmamba train``'s own loop (Trainer, loader, workers) on N-MNIST recordings read from
    files, against the same step on a batch kept in memory (issue 30: the data path should
    deliver >= 90% of the model's rate), for frames and AFE, each built by the loader workers
    (``data.represent_on=cpu``) and on the GPU (``device``), bf16. The folder links the shared
    recordings over and over (20,000 at full size); without them, random recordings."""
    import atexit
    import shutil
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_data import SHARED, build_folder, e2e_steps, synthetic_folder

    n, res, frames, batch, model = {"smoke": (8, 16, 2, 4, "spikmamba_tiny_sps"),
                                    "quick": (2_000, 128, 16, 8, "spikmamba_bissm_bisla_t16"),
                                    "full": (20_000, 128, 16, 32, "spikmamba_bissm_bisla_t16")}[size]
    work = Path(tempfile.mkdtemp(prefix="gpu-check-e2e-"))
    atexit.register(shutil.rmtree, work, True)
    real = (SHARED / "labels.txt").is_file()
    root = build_folder(n, work / "data") if real else synthetic_folder(min(n, 64), work / "data")
    results["from_files"] = {"recordings": n if real else min(n, 64), "real": real, "model": model,
                             "input": f"batch {batch}, {frames} x {res} x {res}"}
    for kind in ("frames", "afe"):
        for where in ("cpu", "device"):
            trainer, from_files, from_memory = e2e_steps(root, work / f"run-{kind}-{where}", kind, res, frames,
                                                         model=model, batch_size=batch, device=DEV, amp="bf16",
                                                         represent_on=where)
            files_s = cuda_time(from_files, repeats=10 if size != "smoke" else 2, warmup=3, budget_s=12)
            memory_s = cuda_time(from_memory, repeats=5 if size != "smoke" else 2, warmup=1, budget_s=6)
            results["from_files"][f"{kind}, built on the {where}"] = {
                "workers": trainer.num_workers, "files_samples_per_s": batch / files_s,
                "memory_samples_per_s": batch / memory_s, "fraction": memory_s / files_s}
            SAVE()
            del trainer, from_files, from_memory
            empty_cache()


def two_processes(results: dict, size: str):
    """``torchrun --nproc_per_node 2 -m spikmamba train`` on a tiny synth config, NCCL on two GPUs
    (gloo on the CPU with --smoke), against one process with the same global batch: the two ranks
    must hold bit-identical weights, and those must equal the one process's to rounding (issue 30:
    multi-GPU must be correct). With one GPU it says so and runs nothing."""
    import subprocess
    import sys
    import tempfile

    gpus = torch.cuda.device_count() if DEV == "cuda" else 0
    if DEV == "cuda" and gpus < 2:
        results["ddp"] = {"gpus": gpus, "ran": False, "why": "one GPU here: torchrun with NCCL needs two"}
        return
    work = Path(tempfile.mkdtemp(prefix="gpu-check-ddp-"))
    keys = ["model.name=spikmamba_tiny", "data.synth.sensor_size=16", "data.frames=4", "model.patch_size=4",
            "data.synth.num_train=64", "data.synth.num_test=32", "data.batch_size=16", "schedule.epochs=1",
            "optim.name=sgd", "optim.lr=0.05", "run.progress=false", "run.tensorboard=false", f"device.name={DEV}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    for name, launcher in (("ddp", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc_per_node", "2"]), ("one", [sys.executable])):
        run = subprocess.run([*launcher, "-m", "spikmamba", "train", *keys, f"run.out_dir={work / name}"], env=env,
                             capture_output=True, text=True, timeout=150)
        if run.returncode != 0:
            raise RuntimeError(f"{name}: exit {run.returncode}: {run.stderr[-800:]}")
    two, one = (json.loads((work / name / "summary.json").read_text()) for name in ("ddp", "one"))
    a, b = (torch.load(work / name / "last.pt", weights_only=True)["model"] for name in ("ddp", "one"))
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    digests = two["weights_sha256_per_rank"]
    results["ddp"] = {"gpus": gpus, "ran": True, "backend": "nccl" if DEV == "cuda" else "gloo",
                      "world_size": two["world_size"], "ranks_identical": len(set(digests)) == 1 and len(digests) == 2,
                      "max_abs_diff_vs_one_process": diff, "test_acc": two["test_acc"],
                      "one_process_test_acc": one["test_acc"], "seconds": time.perf_counter() - started}


def half_kernels(results: dict, size: str):
    """The Triton scan and LIF in bf16 beside their fp32 figures (same shapes)."""
    from spikmamba.nn.lif_op import multistep_lif_triton
    from spikmamba.nn.ssm.selective_scan import selective_scan_triton

    B, D, L, N = SCAN_SHAPE[size]
    t = cuda_time(scan_workload(size, torch.bfloat16)(selective_scan_triton), repeats=3, budget_s=30)
    gbs = scan_bytes(B, D, L, N, itemsize=2) / t / 1e9
    results["bf16"] = {"scan": {"fwd_bwd_ms": t * 1e3, "GB_per_s": gbs,
                                "fraction_of_copy_bandwidth": gbs * 1e9 / results["copy_bytes_per_s"]}}
    run, numel = lif_workload(size, torch.bfloat16)
    t = cuda_time(run(multistep_lif_triton), repeats=5, budget_s=30)
    floor_s = 4 * numel * 2 / results["copy_bytes_per_s"]
    results["bf16"]["lif"] = {"fwd_bwd_ms": t * 1e3, "floor_ms": floor_s * 1e3, "x_floor": t / floor_s}


def sweep_launch(results: dict, size: str):
    """The Triton kernels' launch shapes, timed (fwd+bwd). The scan's are (channels per program,
    warps, steps per tile, MIN_PROGRAMS: the program count below which time is split into
    segments), at the issue's shape and then, for the time split alone, at a batch of 2 (few
    programs: where splitting time should pay). The LIF's are (neurons, warps)."""
    from spikmamba.nn import lif_triton
    from spikmamba.nn.lif_op import multistep_lif_triton
    from spikmamba.nn.ssm import triton_scan
    from spikmamba.nn.ssm.selective_scan import selective_scan_triton

    # 4 / 2 / 32 was the fastest of the first sweep (session 7); the time split is new
    scan_shapes = [(4, 4, 32, 0), (2, 1, 16, 1024)] if size == "smoke" else [
        (4, 2, 32, 0), (4, 2, 32, 16384), (4, 2, 32, 65536), (4, 4, 32, 0), (4, 4, 32, 16384), (2, 2, 32, 0),
        (2, 2, 32, 16384), (8, 2, 32, 0), (4, 2, 64, 0), (4, 2, 64, 16384), (4, 2, 16, 0), (4, 1, 32, 0)]
    knobs, keys = ("BLOCK_D_MAX", "NUM_WARPS", "CHUNK", "MIN_PROGRAMS"), ("block_d", "num_warps", "chunk",
                                                                          "min_programs")
    results["scan_sweep"] = []
    _sweep(triton_scan, knobs, keys, scan_shapes, scan_workload(size)(selective_scan_triton), results["scan_sweep"],
           lambda: _scan_segments(triton_scan, SCAN_SHAPE[size]))
    lif_shapes = [(256, 4), (128, 1)] if size == "smoke" else [(128, 1), (256, 2), (256, 4), (512, 4), (1024, 4),
                                                               (1024, 8)]
    results["lif_sweep"] = []
    _sweep(lif_triton, ("BLOCK", "NUM_WARPS"), ("block", "num_warps"), lif_shapes,
           lif_workload(size)[0](multistep_lif_triton), results["lif_sweep"])
    small = SCAN_SMALL[size]
    results["scan_split"] = {"shape": list(small), "runs": []}
    splits = [(0,), (1024,)] if size == "smoke" else [(0,), (1024,), (4096,), (16384,)]
    _sweep(triton_scan, ("MIN_PROGRAMS",), ("min_programs",), splits,
           scan_workload(size, shape=small)(selective_scan_triton), results["scan_split"]["runs"],
           lambda: _scan_segments(triton_scan, small))


def _scan_segments(triton_scan, shape) -> int:
    """The segments per sequence the scan's current launch knobs give at ``shape`` (B, D, L, N)."""
    import triton

    B, D, L, N = shape
    programs = B * triton.cdiv(D, min(triton_scan.BLOCK_D_MAX, triton.next_power_of_2(D)))
    return triton_scan.segments(programs, triton.cdiv(L, triton_scan.CHUNK))[0]


def _sweep(module, knobs, keys, shapes, step, into: list, describe=None) -> None:
    """Time ``step`` with each of ``shapes`` set as ``module``'s launch knobs (restored afterwards),
    appending ``{key: value, ..., "fwd_bwd_ms"}`` (and ``"segments": describe()`` when given) to
    ``into`` and saving after each: every compile takes seconds, so what is measured survives the
    time limit."""
    saved = tuple(getattr(module, k) for k in knobs)
    try:
        for values in shapes:
            for k, v in zip(knobs, values):
                setattr(module, k, v)
            row = {**dict(zip(keys, values)), "fwd_bwd_ms": cuda_time(step, repeats=3, budget_s=20) * 1e3}
            into.append({**row, "segments": describe()} if describe else row)
            SAVE()
    finally:
        for k, v in zip(knobs, saved):
            setattr(module, k, v)


def table(r: dict) -> str:
    rows = [f"GPU: {r['device']}; copy bandwidth {r['copy_bytes_per_s'] / 1e9:.0f} GB/s; torch {r['torch']}, "
            f"triton {r['triton']}", "", f"Scan fwd+bwd, B,D,L,N = {r['scan'].get('shape')}:", "",
            "| implementation | ms | peak GiB | note |", "|---|---|---|---|"]
    ours = r["scan"].get("triton (ours)")
    for name, v in r["scan"].items():
        if name == "shape":
            continue
        if isinstance(v, dict):
            note = (f"{v['GB_per_s']:.0f} GB/s, {v['fraction_of_copy_bandwidth'] * 100:.0f}% of copy"
                    if "GB_per_s" in v else (f"{v['fwd_bwd_ms'] / ours['fwd_bwd_ms']:.1f}x ours"
                                             if isinstance(ours, dict) else ""))
            rows.append(f"| {name} | {v['fwd_bwd_ms']:.2f} | {v['peak_gib']:.2f} | {note} |")
        else:
            rows.append(f"| {name} | - | - | {v} |")
    lif = r.get("lif", {})
    rows += ["", f"LIF fwd+bwd {lif.get('shape')}, memory-traffic floor {lif.get('floor_ms', 0):.2f} ms:", "",
             "| implementation | ms | x floor |", "|---|---|---|"]
    rows += [f"| {k} | {v['fwd_bwd_ms']:.2f} | {v['x_floor']:.2f} |" for k, v in lif.items() if isinstance(v, dict)]
    if r.get("scan_sweep"):
        rows += ["", "Launch shapes, fwd+bwd ms (scan at the shape above; LIF likewise):", "",
                 "| scan block_d / warps / chunk / min_programs | segments | ms |", "|---|---|---|"]
        rows += [f"| {s['block_d']} / {s['num_warps']} / {s['chunk']} / {s['min_programs']} | {s['segments']} | "
                 f"{s['fwd_bwd_ms']:.2f} |" for s in r["scan_sweep"]]
        rows += ["", "| LIF block / warps | ms |", "|---|---|"]
        rows += [f"| {s['block']} / {s['num_warps']} | {s['fwd_bwd_ms']:.2f} |" for s in r.get("lif_sweep", [])]
    if r.get("scan_split"):
        rows += [
            "",
            f"Scan time split at B, D, L, N = {r['scan_split']['shape']} (default launch shape otherwise):",
            "",
            "| min_programs | segments | ms |",
            "|---|---|---|",
        ]
        rows += [f"| {s['min_programs']} | {s['segments']} | {s['fwd_bwd_ms']:.2f} |" for s in r["scan_split"]["runs"]]
    rows += [
        "",
        f"spikmamba_bissm_bisla_t16 train step, {r.get('train_input')}:",
        "",
        "| precision | ms/step | samples/s | peak GiB | scan share of GPU time | LIF share |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in r["train"].items():
        if isinstance(v, dict):
            rows.append(
                f"| {k} | {v['step_ms']:.1f} | {v['samples_per_s']:.1f} | {v['peak_gib']:.2f} | "
                f"{(v['scan_fraction_of_gpu_time'] or 0) * 100:.1f}% | "
                f"{(v['lif_fraction_of_gpu_time'] or 0) * 100:.1f}% |"
            )
        else:
            rows.append(f"| {k} | - | - | - | {v} | |")
    if r.get("bf16"):
        sc, lf = r["bf16"]["scan"], r["bf16"]["lif"]
        rows += ["", "Triton kernels in bf16 (same shapes):", "", "| kernel | ms | note |", "|---|---|---|",
                 f"| scan | {sc['fwd_bwd_ms']:.2f} | {sc['GB_per_s']:.0f} GB/s, "
                 f"{sc['fraction_of_copy_bandwidth'] * 100:.0f}% of copy |",
                 f"| LIF | {lf['fwd_bwd_ms']:.2f} | {lf['x_floor']:.2f}x its floor ({lf['floor_ms']:.2f} ms) |"]
    if r.get("compile"):
        rows += ["", "Train step, eager vs torch.compile:", "",
                 "| precision | eager ms | compiled ms | eager samples/s | compiled samples/s | compile s | "
                 "peak GiB eager / compiled |", "|---|---|---|---|---|---|---|"]
        rows += [f"| {k} | {v['eager_ms']:.1f} | {v['compiled_ms']:.1f} | {v['eager_samples_per_s']:.1f} | "
                 f"{v['compiled_samples_per_s']:.1f} | {v['compile_s']:.0f} | {v['eager_peak_gib']:.2f} / "
                 f"{v['compiled_peak_gib']:.2f} |" for k, v in r["compile"].items()]
    if r.get("from_files"):
        ff = r["from_files"]
        rows += ["", f"Training from event files ({ff['recordings']} {'real N-MNIST' if ff['real'] else 'random'} "
                 f"recordings), {ff['model']}, {ff['input']}, bf16, against the same step from memory:", "",
                 "| representation | loader workers | from files, samples/s | from memory, samples/s | fraction |",
                 "|---|---|---|---|---|"]
        rows += [f"| {k} | {v['workers']} | {v['files_samples_per_s']:.1f} | {v['memory_samples_per_s']:.1f} | "
                 f"{v['fraction'] * 100:.0f}% |" for k, v in ff.items() if isinstance(v, dict)]
    if r.get("ddp"):
        d = r["ddp"]
        rows += ["", f"Two processes (torchrun, {d.get('backend', 'NCCL')}), {d['gpus']} GPU(s): " + (
            f"ranks bit-identical: {d['ranks_identical']}; largest weight difference from one process "
            f"{d['max_abs_diff_vs_one_process']:.2e}; test accuracy {d['test_acc']:.3f} vs "
            f"{d['one_process_test_acc']:.3f}; {d['seconds']:.0f} s" if d["ran"] else d["why"])]
    for part, err in r.get("errors", {}).items():
        rows.append(f"\n**{part} failed**: {err}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="gpu-check")
    parser.add_argument("--quick", action="store_true", help="small shapes on the GPU")
    parser.add_argument("--smoke", action="store_true", help="toy shapes on the CPU (Triton's interpreter): checks "
                        "that this script runs; its numbers mean nothing")
    args = parser.parse_args()
    global DEV, SAVE
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.smoke:
        DEV = "cpu"
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("gpu_check --smoke: set TRITON_INTERPRET=1 (before Python starts) to run the kernels on the CPU")
            return 2
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to measure (--smoke checks the script on the CPU)")
        return 2
    import triton

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    r = {"device": torch.cuda.get_device_name() if DEV == "cuda" else "cpu (--smoke)", "torch": torch.__version__,
         "triton": triton.__version__, "size": size, "scan": {}, "train": {},
         "train_input": {"smoke": "batch 1 of 2 x 3 x 16 x 16 (shrunk)", "quick": "batch 4 of 16 x 3 x 128 x 128",
                         "full": "batch 32 of 16 x 3 x 128 x 128"}[size]}
    r["copy_bytes_per_s"] = copy_bandwidth(1 << 24 if args.smoke else 2 << 30)

    def save():
        (out / "gpu_check.json").write_text(json.dumps(r, indent=2))
        (out / "gpu_check.md").write_text(table(r) + "\n")

    SAVE = save
    for part in (time_scans, time_lif, half_kernels, train_step, compiled_train_step, train_from_files,
                 two_processes, sweep_launch):  # the slowest and least needed last: the script has a time cap
        started = time.perf_counter()
        try:
            part(r, size)
        except Exception as err:  # one failing part must not lose the others' figures
            r.setdefault("errors", {})[part.__name__] = f"{type(err).__name__}: {str(err)[:500]}"
        print(f"{part.__name__}: {time.perf_counter() - started:.0f} s", flush=True)
        save()
    print(table(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
