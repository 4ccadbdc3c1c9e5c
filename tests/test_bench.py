"""The benchmark harness: every benchmark runs (tiny shapes), ratios are baseline/ours, skips are reported."""
import json
import time

import pytest

from spikmamba.benchmark import Skip, run_case
from spikmamba.cli import main
from spikmamba.errors import SpikmambaError

pytestmark = pytest.mark.slow  # trains, exports or runs subprocesses: the full suite, not the fast lane


def test_run_case_ratios_and_skips():
    r = run_case({"ours": lambda: None, "slow": lambda: time.sleep(0.02), "absent": Skip("not installed")},
                 repeats=3, warmup=1)
    assert r["ours"] == "ours" and r["results"]["ours"]["ratio_vs_ours"] == 1.0
    assert r["results"]["slow"]["median_s"] >= 0.02 and r["results"]["slow"]["ratio_vs_ours"] > 2
    assert r["results"]["absent"] == {"skipped": "not installed"}
    with pytest.raises(SpikmambaError, match="was skipped"):
        run_case({"ours": Skip("gone"), "other": lambda: None})


def test_every_benchmark_runs_quick_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--repeats", "1", "--warmup", "0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"lif", "scan-L256", "scan-L1024", "scan-L4096", "frames-1e6", "frames-1e7"} <= set(report["benchmarks"])
    for name, case in report["benchmarks"].items():
        ours = case["results"][case["ours"]]
        assert ours["ratio_vs_ours"] == 1.0 and ours["median_s"] > 0, name
        for impl, row in case["results"].items():
            assert ("skipped" in row) != ("median_s" in row), (name, impl)
    assert "(ours)" in capsys.readouterr().out
    assert main(["bench", "nope"]) == 2


def test_memory_is_measured_in_fresh_processes(tmp_path):
    out = tmp_path / "mem.json"
    assert main(["bench", "lif", "--quick", "--repeats", "1", "--warmup", "0", "--memory", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["benchmarks"]["lif"]["results"]
    for impl, row in rows.items():
        if "skipped" not in row:
            mem = row["memory"]
            assert mem["peak_rss_mb"] >= mem["rss_before_mb"] > 10, (impl, mem)


def test_busy_processes_run_beside_the_benchmark_and_are_gone_after(tmp_path):
    import os

    from spikmamba.benchmark import busy_processes

    with busy_processes(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
        pids = [p.pid for p in procs]
    for pid in pids:  # killed and reaped: no such process any more
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    out = tmp_path / "busy.json"
    assert main(["bench", "lif", "--quick", "--repeats", "1", "--warmup", "0", "--busy", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["busy_processes"] == 1
    assert main(["bench", "lif", "--quick", "--busy", "-1"]) == 2
