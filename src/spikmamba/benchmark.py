"""The harness behind ``spikmamba bench``: ours and baselines timed in one process, alternating.

A benchmark file in ``benchmarks/`` defines ``BENCHMARKS = {name: setup}``. ``setup(quick)``
returns ``{"what": text, "impls": {impl_name: callable or Skip(reason)}}``; the first
implementation is ours and the ratios are ``baseline median / our median`` (above 1: ours is
faster). Each round runs every implementation once, in turn, so drifting machine load hits all
of them alike. Warm-up rounds are not timed. A baseline that is not installed is a ``Skip``,
reported as skipped and never replaced by anything else.
"""
from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, SpikmambaError


@dataclass(frozen=True)
class Skip:
    reason: str


def optional(module: str, why: str = "") -> Skip | None:
    """``Skip`` when ``module`` cannot be imported (not installed, or installed but broken, e.g.
    a missing dependency of its own), else None."""
    if importlib.util.find_spec(module) is None:
        return Skip(f"{module} is not installed{': ' + why if why else ''}")
    try:
        importlib.import_module(module)
    except Exception as err:
        return Skip(f"{module} is installed but does not import ({type(err).__name__}: {err})")
    return None


def run_case(impls: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Median seconds per implementation, measured alternately; ratios against the first (ours)."""
    live = {k: f for k, f in impls.items() if not isinstance(f, Skip)}
    ours = next(iter(impls))
    if ours not in live:
        raise SpikmambaError(f"our implementation {ours!r} was skipped: {impls[ours].reason}")
    times = {k: [] for k in live}
    for round_ in range(warmup + repeats):
        for name, fn in live.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    ours_median = statistics.median(times[ours])
    rows = {}
    for name, fn in impls.items():
        if isinstance(fn, Skip):
            rows[name] = {"skipped": fn.reason}
        else:
            med = statistics.median(times[name])
            rows[name] = {"median_s": med, "min_s": min(times[name]), "ratio_vs_ours": med / ours_median}
    return {"ours": ours, "repeats": repeats, "results": rows}


_MEMORY_DRIVER = """
import json, sys
from spikmamba.benchmark import load_benchmarks
folder, name, impl, quick = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
case = load_benchmarks(folder)[name](quick)
def status_mb(key):  # VmHWM is per address space, so it starts afresh in this process
    with open("/proc/self/status") as f:        # (ru_maxrss would be inherited from the parent)
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024
before = status_mb("VmHWM")
case["impls"][impl]()
print(json.dumps({"rss_before_mb": before, "peak_rss_mb": status_mb("VmHWM")}))
"""


def peak_memory(folder, name: str, impls: dict, quick: bool) -> dict:
    """Peak resident memory of one call of each implementation, each in a fresh process (Linux).

    ``peak_rss_mb`` is the process high-water mark (VmHWM) after the call; ``rss_before_mb`` the
    high-water mark after the setup (inputs of every implementation), so the call itself needed
    at most the difference."""
    import subprocess

    out = {}
    for impl, fn in impls.items():
        if isinstance(fn, Skip):
            continue
        run = subprocess.run([sys.executable, "-c", _MEMORY_DRIVER, str(folder), name, impl, "1" if quick else "0"],
                             capture_output=True, text=True)
        out[impl] = json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else \
            {"error": (run.stderr.strip().splitlines() or ["failed"])[-1]}
    return out


@contextlib.contextmanager
def busy_processes(n: int):
    """``n`` processes that each keep one core busy (a Python spin loop) for the duration: the
    benchmarks then measure what a user sees on a machine that is doing something else too."""
    import subprocess

    if n < 0:
        raise InputError(f"--busy must be >= 0, got {n}")
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        if procs:
            time.sleep(0.5)  # let them reach the loop
        for p in procs:
            if p.poll() is not None:
                raise SpikmambaError(f"a busy process exited early (status {p.returncode})")
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def default_dir() -> Path:
    """``benchmarks/`` of the source checkout this package was installed from, or of the CWD."""
    here = Path(__file__).resolve().parents[2] / "benchmarks"
    return here if here.is_dir() else Path.cwd() / "benchmarks"


def load_benchmarks(folder: str | Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no benchmarks folder at {folder}: run from a source checkout or pass --dir")
    found = {}
    for path in sorted(folder.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(f"spikmamba_bench_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        for name, setup in getattr(module, "BENCHMARKS", {}).items():
            found[name] = setup
    return found


def run_benchmarks(names=None, folder=None, quick: bool = False, repeats: int = 5, warmup: int = 1,
                   echo=print, memory: bool = False, busy: int = 0) -> dict:
    import torch

    folder = folder or default_dir()
    table = load_benchmarks(folder)
    unknown = [n for n in (names or []) if n not in table]
    if unknown:
        raise InputError(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(table)}")
    report = {"machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                          "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"),
                          "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
              "busy_processes": busy, "quick": quick, "benchmarks": {}}
    if busy:
        echo(f"with {busy} busy process(es) beside the benchmarks")
    for name in names or list(table):
        case = table[name](quick)
        with busy_processes(busy):
            result = run_case(case["impls"], repeats, warmup)
        result["what"] = case["what"]
        if memory:
            for impl, mem in peak_memory(folder, name, case["impls"], quick).items():
                result["results"][impl]["memory"] = mem
        report["benchmarks"][name] = result
        echo(format_case(name, result))
    return report


def format_case(name: str, result: dict) -> str:
    lines = [f"{name}: {result['what']}"]
    for impl, r in result["results"].items():
        if "skipped" in r:
            lines.append(f"  {impl:<40} skipped ({r['skipped']})")
        else:
            tag = "  (ours)" if impl == result["ours"] else f"  {r['ratio_vs_ours']:.2f}x ours"
            mem = r.get("memory", {})
            if "peak_rss_mb" in mem:
                tag += f"  peak RSS {mem['peak_rss_mb']:.0f} MB (setup {mem['rss_before_mb']:.0f} MB)"
            elif "error" in mem:
                tag += f"  memory: {mem['error']}"
            lines.append(f"  {impl:<40} {r['median_s'] * 1e3:>10.2f} ms{tag}")
    return "\n".join(lines)


def save_json(report: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2))
