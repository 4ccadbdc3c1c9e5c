"""The harness behind ``spikmamba bench``: ours and baselines timed in one process, alternating.

A benchmark file in ``benchmarks/`` defines ``BENCHMARKS = {name: setup}``. ``setup(quick)``
returns ``{"what": text, "impls": {impl_name: callable or Skip(reason)}}``; the first
implementation is ours and the ratios are ``baseline median / our median`` (above 1: ours is
faster). Each round runs every implementation once, in turn, so drifting machine load hits all
of them alike. Warm-up rounds are not timed. A baseline that is not installed is a ``Skip``,
reported as skipped and never replaced by anything else.
"""
from __future__ import annotations

import gc
import importlib.util
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Skip:
    reason: str


def optional(module: str, why: str = "") -> "Skip | None":
    """``Skip`` when ``module`` cannot be imported, else None."""
    if importlib.util.find_spec(module) is None:
        return Skip(f"{module} is not installed{': ' + why if why else ''}")
    return None


def run_case(impls: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Median seconds per implementation, measured alternately; ratios against the first (ours)."""
    live = {k: f for k, f in impls.items() if not isinstance(f, Skip)}
    times = {k: [] for k in live}
    for round_ in range(warmup + repeats):
        for name, fn in live.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    ours = next(iter(impls))
    if ours not in live:
        raise RuntimeError(f"our implementation {ours!r} was skipped: {impls[ours].reason}")
    ours_median = statistics.median(times[ours])
    rows = {}
    for name, fn in impls.items():
        if isinstance(fn, Skip):
            rows[name] = {"skipped": fn.reason}
        else:
            med = statistics.median(times[name])
            rows[name] = {"median_s": med, "min_s": min(times[name]), "ratio_vs_ours": med / ours_median}
    return {"ours": ours, "repeats": repeats, "results": rows}


def default_dir() -> Path:
    """``benchmarks/`` of the source checkout this package was installed from, or of the CWD."""
    here = Path(__file__).resolve().parents[2] / "benchmarks"
    return here if here.is_dir() else Path.cwd() / "benchmarks"


def load_benchmarks(folder: "str | Path") -> dict:
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
                   echo=print) -> dict:
    import torch

    table = load_benchmarks(folder or default_dir())
    unknown = [n for n in (names or []) if n not in table]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(table)}")
    report = {"machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                          "threads": torch.get_num_threads()}, "quick": quick, "benchmarks": {}}
    for name in names or list(table):
        case = table[name](quick)
        result = run_case(case["impls"], repeats, warmup)
        result["what"] = case["what"]
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
            lines.append(f"  {impl:<40} {r['median_s'] * 1e3:>10.2f} ms{tag}")
    return "\n".join(lines)


def save_json(report: dict, path: "str | Path") -> None:
    Path(path).write_text(json.dumps(report, indent=2))
