"""Live recognition (issue 32): a recording served by ``spikmamba replay`` in its own process,
over localhost, into ``predict --live`` (window 500 ms, stride 100 ms, ``spikmamba_tiny_sps``).

``python benchmarks/bench_live.py [--seconds 10] [--rate 2e6] [--model NAME] [--json FILE]``
replays the shared AEDAT 4 recording and ``--seconds`` of DVS128-Gesture-rate events (128x128,
300,000 events/s, random) three ways: at real time; paced at ``--rate`` events/s (the issue's
"sustained 2 M events/s with no drops": as many windows a second as the rate brings, 6.7 times
real time); and at full speed with every window classified however late (what the classifier can
process at most). Then ``--seconds`` of random events at ``--rate`` in real time: a camera that
fast (10 windows a second, each of a million events). It reports latency p50/p95/p99, events/s
sustained, dropped windows and reader stalls (the read-ahead full: the sender was slowed). The
harness entry ``live`` (``spikmamba bench live``) times the same path at
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
             in_process: bool = False, max_lag_ms: float | None = None) -> dict:
    """One replay (its own process, as a camera or DV would be; ``in_process``: a thread here, no
    process start in the time) into :func:`predict_live`; the run's summary. ``max_lag_ms``:
    predict_live's (default one stride; ``inf``: classify every window, however late)."""
    from spikmamba.engine.live import predict_live
    from spikmamba.engine.predict import load_predictor
    from spikmamba.events.replay import ReplayServer

    predictor = predictor or load_predictor(model=MODEL)
    if in_process:
        with ReplayServer(path, speed=speed) as server:
            return _summary(predict_live(predictor, server.address, window_ms, stride_ms, max_lag_ms=max_lag_ms))
    port = _port()
    server = subprocess.Popen([sys.executable, "-m", "spikmamba", "replay", str(path), "--serve",
                               f"tcp://127.0.0.1:{port}", "--speed", str(speed)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("serving"):
            raise RuntimeError(f"replay did not start: {line}{server.stderr.read()[-2000:]}")
        r = predict_live(predictor, f"tcp://127.0.0.1:{port}", window_ms, stride_ms, max_lag_ms=max_lag_ms)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return _summary(r)


def _event_rate(path) -> float:
    """Events per second of stream time in a recording."""
    from spikmamba.events.io import read_events

    t = read_events(path).events["t"]
    return len(t) / max((int(t[-1]) - int(t[0])) / 1e6, 1e-6)


def _summary(result) -> dict:
    s = result.summary()
    return {k: s[k] for k in ("windows", "dropped_windows", "events", "duration_s", "processing_s", "streaming_s",
                              "events_per_s_sustained", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                              "end_windows", "end_latency_max_ms", "read_stalls")}


def untrained_predictor(name: str):
    """A registered model with random weights, fed its own default input (``model_cfg``): its
    latency is that of the trained model, whose weights are not shipped."""
    from spikmamba.data import EventRepresentation
    from spikmamba.engine.predict import Predictor
    from spikmamba.models.factory import create_model

    net = create_model(name).eval()
    inp = net.model_cfg.input
    rep = EventRepresentation((inp.size, inp.size), kind=inp.representation, frames=inp.frames)
    return Predictor(net, [f"class {i}" for i in range(net.model_cfg.num_classes)], rep, None, name, net)


def main(argv=None) -> dict:
    from spikmamba.threads import apply_wait_policy

    policy = apply_wait_policy()  # as `spikmamba predict --live` does: before torch loads
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch threads of the classifier (0: torch's default)")
    p.add_argument("--rate", type=float, default=2e6, help="events/s of the paced run (the issue's target: 2e6)")
    p.add_argument("--model", default=MODEL, help=f"a shipped NAME.TAG or weights folder (default {MODEL}), or a "
                   "registered model name, run with random weights on its default input")
    args = p.parse_args(argv)
    import torch

    from spikmamba.engine.predict import load_predictor

    if args.threads:
        torch.set_num_threads(args.threads)
    from spikmamba.models.registry import list_models

    predictor = untrained_predictor(args.model) if args.model in list_models() else load_predictor(model=args.model)
    work = Path(tempfile.mkdtemp(prefix="spikmamba-bench-live-"))
    sources = {f"{args.seconds:g} s at 300k events/s, 128x128": gesture_rate_recording(args.seconds,
                                                                                      work / "gesture.npz")}
    if SHARED.is_file():
        sources[f"shared {SHARED.name}"] = SHARED
    camera = f"{args.seconds:g} s at {args.rate / 1e6:g} M events/s, 128x128"
    sources[camera] = gesture_rate_recording(args.seconds, work / "camera.npz", rate=int(args.rate))
    report = {"machine": {"cpus": os.cpu_count()}, "model": args.model, "torch_threads": torch.get_num_threads(),
              "thread_policy": policy, "runs": []}
    for name, path in sources.items():
        rate = _event_rate(path)
        paces = {"real time": (1.0, None), f"paced at {args.rate / 1e6:g} M events/s": (args.rate / rate, None),
                 "full speed, every window however late (capacity)": (math.inf, math.inf)}
        if name == camera:  # already at the rate: a camera that fast, in real time
            paces = {"real time": paces["real time"]}
        for pace, (speed, lag) in paces.items():
            r = {"source": name, "pace": pace, "speed": speed, **live_run(path, speed, predictor, max_lag_ms=lag)}
            report["runs"].append(r)
            ms = " / ".join("-" if r[f"latency_p{q}_ms"] is None else f"{r[f'latency_p{q}_ms']:.1f}"
                            for q in (50, 95, 99))
            print(f"{name}, {pace}: {r['windows']} windows, {r['dropped_windows']} dropped, "
                  f"{r['events_per_s_sustained']:,.0f} events/s, latency p50/p95/p99 {ms} ms "
                  f"(+ {r['end_windows']} closed by the stream's end, within "
                  f"{r['end_latency_max_ms'] or 0:.0f} ms), reader stalls {r['read_stalls']}")
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
