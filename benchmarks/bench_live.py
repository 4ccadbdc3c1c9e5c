"""Live recognition (issue 32): a recording served by ``spikmamba replay`` in its own process,
over localhost, into ``predict --live`` (window 500 ms, stride 100 ms, ``spikmamba_tiny_sps``).

``python benchmarks/bench_live.py [--seconds 10] [--json FILE]`` replays at real time (1x) and
at full speed: the shared AEDAT 4 recording, and ``--seconds`` of DVS128-Gesture-rate events
(128x128, 300,000 events/s, random). It reports latency p50/p95/p99, events/s sustained and
dropped windows. The harness entry ``live`` (``spikmamba bench live``) times the same path at
full speed against ``predict --window`` on the same file (no sockets): the ratio is what the
stream costs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "aedat4" / "data_sample.aedat4"
MODEL = "spikmamba_tiny_sps.synth"


def gesture_rate_recording(seconds: float, dest: Path, rate: int = 300_000) -> Path:
    """``seconds`` of random events at ``rate`` per second on DVS128's 128x128 sensor."""
    import numpy as np

    from spikmamba.events import make_events
    from spikmamba.events.io import write_events

    n = int(seconds * rate)
    rng = np.random.default_rng(0)
    write_events(dest, make_events(np.sort(rng.integers(0, int(seconds * 1e6), n)), rng.integers(0, 128, n),
                                   rng.integers(0, 128, n), rng.integers(0, 2, n)), sensor_size=(128, 128))
    return dest


def _port() -> int:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def live_run(path, speed: float, predictor=None, window_ms: float = 500, stride_ms: float = 100,
             in_process: bool = False) -> dict:
    """One replay (its own process, as a camera or DV would be; ``in_process``: a thread here, no
    process start in the time) into :func:`predict_live`; the run's summary."""
    from spikmamba.engine.live import predict_live
    from spikmamba.engine.predict import load_predictor
    from spikmamba.events.replay import ReplayServer

    predictor = predictor or load_predictor(model=MODEL)
    if in_process:
        with ReplayServer(path, speed=speed) as server:
            return _summary(predict_live(predictor, server.address, window_ms, stride_ms))
    port = _port()
    server = subprocess.Popen([sys.executable, "-m", "spikmamba", "replay", str(path), "--serve",
                               f"tcp://127.0.0.1:{port}", "--speed", str(speed)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("serving"):
            raise RuntimeError(f"replay did not start: {line}{server.stderr.read()[-2000:]}")
        r = predict_live(predictor, f"tcp://127.0.0.1:{port}", window_ms, stride_ms)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return _summary(r)


def _summary(result) -> dict:
    s = result.summary()
    return {k: s[k] for k in ("windows", "dropped_windows", "events", "duration_s", "processing_s",
                              "events_per_s_sustained", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    from spikmamba.engine.predict import load_predictor

    predictor = load_predictor(model=MODEL)
    work = Path(tempfile.mkdtemp(prefix="spikmamba-bench-live-"))
    sources = {f"{args.seconds:g} s at 300k events/s, 128x128": gesture_rate_recording(args.seconds,
                                                                                      work / "gesture.npz")}
    if SHARED.is_file():
        sources[f"shared {SHARED.name}"] = SHARED
    report = {"machine": {"cpus": os.cpu_count()}, "model": MODEL, "runs": []}
    for name, path in sources.items():
        for speed in (1.0, math.inf):
            r = {"source": name, "speed": "real time" if speed == 1 else "full", **live_run(path, speed, predictor)}
            report["runs"].append(r)
            print(f"{name}, {r['speed']}: {r['windows']} windows, {r['dropped_windows']} dropped, "
                  f"{r['events_per_s_sustained']:,.0f} events/s, latency p50/p95/p99 {r['latency_p50_ms']:.1f} / "
                  f"{r['latency_p95_ms']:.1f} / {r['latency_p99_ms']:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def _setup(quick: bool):
    import atexit
    import shutil

    from spikmamba.engine.predict import load_predictor
    from spikmamba.engine.timeline import predict_timeline

    folder = Path(tempfile.mkdtemp(prefix="spikmamba-bench-live-"))
    atexit.register(shutil.rmtree, folder, True)
    seconds = 1.0 if quick else 5.0
    path = gesture_rate_recording(seconds, folder / "gesture.npz", rate=50_000 if quick else 300_000)
    predictor = load_predictor(model=MODEL)
    return {"what": f"{seconds:g} s of 128x128 events, window 500 ms / stride 100 ms, {MODEL}: replayed at full "
                    f"speed over localhost into predict --live, vs predict --window on the file",
            "impls": {"live (replay -> socket -> predict_live)": lambda: live_run(path, math.inf, predictor,
                                                                                  in_process=True),
                      "offline (predict --window on the file)": lambda: predict_timeline(predictor, path, 500, 100)}}


BENCHMARKS = {"live": _setup}

if __name__ == "__main__":
    main()
