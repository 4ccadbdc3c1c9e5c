"""The prepared GPU check runs end to end (issue 22): `benchmarks/gpu_check.py --smoke` takes every
part of the script through the CPU at toy sizes, the Triton kernels in the interpreter, so a lent
GPU's minutes are never lost to a bug in the script."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_script_runs_every_part_and_writes_its_table(tmp_path):
    pytest.importorskip("triton", reason="triton is not installed (pip install triton; .ci/run does)")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    r = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "errors" not in r, r.get("errors")
    assert r["size"] == "smoke" and r["copy_bytes_per_s"] > 0
    for name in ("triton (ours)", "torch blocked (ours, CPU path)"):
        assert r["scan"][name]["fwd_bwd_ms"] > 0
    assert r["scan"]["triton (ours)"]["fraction_of_copy_bandwidth"] > 0
    assert r["lif"]["triton (ours)"]["x_floor"] > 0 and r["lif"]["torch fused (ours, CPU path)"]["fwd_bwd_ms"] > 0
    assert set(r["train"]) == {"fp32", "bf16"} and all(v["samples_per_s"] > 0 for v in r["train"].values())
    assert len(r["scan_sweep"]) == 2 and len(r["lif_sweep"]) == 2
    assert [s["segments"] for s in r["scan_sweep"]] == [1, 2]  # the second splits its 2 tiles of 16 steps
    assert [s["segments"] for s in r["scan_split"]["runs"]] == [1, 2] and r["scan_split"]["runs"][1]["fwd_bwd_ms"] > 0
    assert r["bf16"]["scan"]["fwd_bwd_ms"] > 0 and r["bf16"]["lif"]["x_floor"] > 0
    assert set(r["compile"]) == {"fp32", "bf16"}
    assert all(v["compiled_ms"] > 0 and v["eager_ms"] > 0 and v["compile_s"] > 0 for v in r["compile"].values())
    assert all(r["from_files"][k]["fraction"] > 0 and r["from_files"][k]["files_samples_per_s"] > 0
               for k in ("frames, built on the cpu", "frames, built on the device", "afe, built on the cpu",
                         "afe, built on the device"))
    ddp = r["ddp"]  # on the CPU: two gloo processes
    assert ddp["ran"] and ddp["world_size"] == 2 and ddp["ranks_identical"], ddp
    assert ddp["max_abs_diff_vs_one_process"] < 1e-4 and ddp["test_acc"] == ddp["one_process_test_acc"], ddp
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| triton (ours) |" in table and "| bf16 |" in table and "eager vs torch.compile" in table
    assert "Triton kernels in bf16" in table and "Scan time split" in table and "Training from event files" in table
    assert "Two processes (torchrun, gloo)" in table
