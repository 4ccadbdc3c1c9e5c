"""The ``spikmamba`` command. Each sub-command lives in a small ``_cmd_*`` function."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from .errors import InputError, Interrupted, SpikmambaError

DESCRIPTION = """\
spikmamba: spiking state-space models (SpikMamba and friends) for event-camera data.

Typical use:
  spikmamba train                      train SpikMamba tiny on the built-in simulated dataset
  spikmamba train schedule.epochs=3 optim.lr=1e-3   the same with config overrides (section.key=value)
  spikmamba train --resume runs/synth/last.pt    continue an interrupted run exactly
  spikmamba test --checkpoint runs/synth/last.pt  top-1/top-5, per-class, confusion matrix
  spikmamba predict --checkpoint runs/synth/last.pt clips/   classify event files (`spikmamba synth` makes some)
  spikmamba train --config configs/synth_adaptive.yaml   EAS-SNN's learned sampler in front of the model
  spikmamba train --config configs/cifar10_svmamba_tiny.yaml data.root=DIR data.test_root=DIR   SVMamba on images
  spikmamba train --config configs/ucf101_respike.yaml data.root=DIR data.test_root=DIR   ReSpike on RGB video
  torchrun --nproc_per_node 2 -m spikmamba train  data-parallel training
  spikmamba energy --checkpoint runs/synth/last.pt   firing rates, SOPs, energy (SNN vs ANN)
  spikmamba bench lif scan-L1024       time kernels against baselines (ratios)
  spikmamba models                     list every registered model with its parameter count
  spikmamba models --filter bisla      only names containing 'bisla'
  spikmamba datasets                   list datasets with the folder layout each expects
  spikmamba synth --out clips          write simulated clips as event files (to try predict on)
  spikmamba predict --model spikmamba_tiny_sps.synth --window 500 long.aedat4   a timeline of a long recording
  spikmamba show clip.aedat4 --out clip.gif      the recording as an animation (--model: with labels)
  spikmamba inspect --model spikmamba_tiny_sps.synth clip.npz   firing rates over time, a spike raster
  spikmamba replay clip.aedat4 --serve tcp://:7777 --loop   serve a recording as DV's live stream

Run `spikmamba COMMAND --help` for the options of one command.
"""


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models, model_description, pretrained_tags
    from .models.factory import count_model_parameters

    names = list_models(args.filter)
    if not names:
        print(f"no registered model name contains {args.filter!r}", file=sys.stderr)
        return 1
    width = max(len(n) for n in names)
    print(f"{'model':<{width}}  {'params':>10}  {'weights':<14}  description")
    for name in names:
        params = count_model_parameters(name)
        tags = ", ".join(pretrained_tags(name)) or "-"
        print(f"{name:<{width}}  {params / 1e6:>9.2f}M  {tags:<14}  {model_description(name)}")
    shipped = [f"{n}.{t}" for n in names for t in pretrained_tags(n)]
    if shipped:
        print(f"\nshipped weights (no training needed): spikmamba predict --model {shipped[0]} FILE...; each folder's "
              f"README.md is its model card (spikmamba/models/zoo/)")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .data import DATASETS

    names = [n for n in DATASETS if args.name in (None, n)]
    if not names:
        print(f"unknown dataset {args.name!r}; known: {', '.join(DATASETS)}", file=sys.stderr)
        return 1
    for name in names:
        cls = DATASETS[name]
        print(f"{name}  (spikmamba.data.{cls.__name__})")
        print("  " + cls.layout.strip().replace("\n", "\n  ") + "\n")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from .data.synthetic import export_clips

    paths = export_clips(args.out, args.count, args.split, (args.sensor_size, args.sensor_size), args.seed,
                         args.format)
    print(
        f"wrote {len(paths)} SynthActions {args.split} clips ({args.sensor_size}x{args.sensor_size} sensor, seed "
        f"{args.seed}) and labels.csv to {args.out}; e.g. spikmamba predict --checkpoint runs/synth/last.pt {args.out}"
    )
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from .events.replay import serve

    serve(args.file, args.serve, args.speed, args.loop)
    return 0


class _StoreTuple(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, tuple(values))


def _pixels(text: str) -> int:
    """A sensor width or height: event coordinates are 16-bit, so 1 to 65536."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number of pixels") from None
    if not 1 <= value <= 65536:
        raise argparse.ArgumentTypeError(f"{value} pixels: a sensor side is 1 to 65536 pixels (16-bit coordinates)")
    return value


def _add_reading_options(p: argparse.ArgumentParser) -> None:
    """``--sensor-size W H`` (``args.sensor_size``: a tuple, or None) and ``--format NAME``
    (``args.format``) for commands that read recordings."""
    from .events.io.dispatch import STREAMS

    p.add_argument("--sensor-size", type=_pixels, nargs=2, metavar=("W", "H"), default=None, action=_StoreTuple,
                   help="the recording's sensor size, for files that do not state it (N-MNIST .bin/.bs2, .npy)")
    p.add_argument("--format", default=None, choices=sorted(STREAMS), metavar="NAME",
                   help=f"the recordings' format, for files whose extension and header do not say it (e.g. a .raw "
                        f"without its EVT header line): {', '.join(sorted(STREAMS))}")


def _cmd_train(args: argparse.Namespace) -> int:
    from .engine.config import TrainConfig, apply_overrides, load_config
    from .engine.train import resume_config, train

    if args.resume:
        if args.config:
            raise InputError("--resume continues with the config stored in the checkpoint; drop --config "
                             "(key=value overrides, e.g. schedule.epochs=30, are allowed)")
        cfg = resume_config(args.resume, args.overrides)
    else:
        cfg = load_config(args.config) if args.config else TrainConfig()
        cfg = apply_overrides(cfg, args.overrides)
    summary = train(cfg, resume=args.resume)
    if summary.get("world_size", 1) > 1 and os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    out = Path(summary["out_dir"])
    if "best_val_acc" in summary:
        final = summary["final_val_acc"]
        print(f"validation accuracy: final {final * 100:.2f}%, best {summary['best_val_acc'] * 100:.2f}% at epoch "
              f"{summary['best_epoch']}" if final is not None else "validation: none run")
    if "test_acc" in summary:
        level = " per clip" if "test_video_acc" in summary else ""
        print(
            f"test accuracy (final model): {summary['test_acc'] * 100:.2f}% top-1{level}, "
            f"{summary['test_top5'] * 100:.2f}% top-5"
        )
    if "test_video_acc" in summary:
        print(f"test accuracy per video (mean of its clips' logits): {summary['test_video_acc'] * 100:.2f}% top-1, "
              f"{summary['test_video_top5'] * 100:.2f}% top-5")
    print(_run_report(summary, out))
    return 0


def _run_report(summary: dict, out: Path) -> str:
    """The last lines of every run: where it ended, its checkpoints, its files and figures."""
    files = set(summary.get("files", []))
    epochs = len(summary["history"])
    how = (f"stopped at schedule.max_steps={summary['stopped_at_max_steps']} (step {summary['steps']})"
           if "stopped_at_max_steps" in summary else f"{epochs} epoch(s), {summary['steps']} steps")
    lines = [f"run finished in {out}: {how}"]
    ckpts = [f"{out / 'last.pt'} (resume, test, predict)"]
    if "best.pt" in files:
        ckpts.append(f"{out / 'best.pt'} (best validation, epoch {summary.get('best_epoch')})")
    lines.append("  checkpoints: " + ", ".join(ckpts))
    logs = [name for name in ("config.yaml", "log.csv", "summary.json", "tensorboard") if name in files]
    if "skipped.csv" in files:
        logs.append(f"skipped.csv ({summary.get('skipped_samples', 0)} unreadable training samples left out)")
    lines.append("  files: " + ", ".join(logs))
    figures = [name for name in ("training_curves.png",) if name in files]
    if figures:
        lines.append("  figures: " + ", ".join(str(out / f) for f in figures))
    if summary.get("test_acc") is not None or summary.get("final_val_acc") is not None:
        lines.append(f"  next: spikmamba test --checkpoint {out / 'last.pt'}")
    else:  # neither a test set nor a validation split: `test` needs one named
        lines.append(f"  next: spikmamba test --checkpoint {out / 'last.pt'} data.test_root=<folder of a test set>")
    return "\n".join(lines)


def _cmd_test(args: argparse.Namespace) -> int:
    from .engine.evaluate import run_test

    r = run_test(args.checkpoint, args.config, args.overrides, args.out, progress=not args.quiet)
    for note in r["notes"]:
        print(f"note: {note}", file=sys.stderr)
    k = next(key for key in r if key.startswith("top") and key != "top1")
    level = " clips" if "per_video" in r else " samples"
    print(f"{r['model']} on {r['data']} {r['split']}: {r['samples']}{level}, top-1 {r['top1'] * 100:.2f}%, "
          f"top-{k[3:]} {r[k] * 100:.2f}%")
    if "per_video" in r:
        v = r["per_video"]
        print(f"per video (mean of its clips' logits): {v['samples']} videos, top-1 {v['top1'] * 100:.2f}%, "
              f"top-{k[3:]} {v[k] * 100:.2f}%")
    width = max(len(row["class"]) for row in r["per_class"])
    print(f"{'class':<{width}}  accuracy  samples")
    for row in r["per_class"]:
        acc = "     -" if row["accuracy"] is None else f"{row['accuracy'] * 100:6.2f}%"
        print(f"{row['class']:<{width}}  {acc}   {row['samples']:>6}")
    print(f"wrote metrics.json, per_class.csv, confusion.csv, confusion.png in {r['out_dir']}")
    return 0


def _cmd_predict_windows(args: argparse.Namespace) -> int:
    import json

    from .engine.predict import collect_input_files, load_predictor
    from .engine.timeline import predict_timeline

    predictor = load_predictor(args.checkpoint, args.model, args.device, args.backend)
    files = collect_input_files(args.paths)
    for f in files:
        tl = predict_timeline(predictor, f, args.window, args.stride, args.batch_size, args.top, args.smooth,
                              args.sensor_size, progress=not args.json, event_format=args.format)
        prefix = Path(args.timeline) if args.timeline else None
        if prefix is not None and len(files) > 1:
            prefix = prefix.with_name(f"{prefix.name}-{f.stem}")
        written = tl.write(prefix) if prefix is not None else []
        if args.json:
            print(json.dumps({**tl.summary(), "windows": tl.rows}, indent=2))
            continue
        for r in tl.rows:
            top = f" ({r['top'][0]['probability']:.3f})" if r["top"] else ""
            print(f"{f}: {r['start_ms']:9.1f}-{r['end_ms']:9.1f} ms  {r['events']:>8} events  {r['label']}{top}")
        s = tl.summary()
        print(f"{f}: {s['windows']} windows of {s['window_ms']:g} ms every {s['stride_ms']:g} ms over "
              f"{s['duration_s']:.2f} s ({s['empty_windows']} empty); {s['processing_s']:.2f} s of processing, "
              f"{s['realtime_factor']:.1f}x real time" + "".join(f"; {note}" for note in s["notes"])
              + (f"; wrote {', '.join(map(str, written))}" if written else ""))
    return 0


def _cmd_predict_live(args: argparse.Namespace) -> int:
    import json

    from .engine.live import predict_live
    from .engine.predict import load_predictor

    predictor = load_predictor(args.checkpoint, args.model, args.device, args.backend)

    def line(row):
        if args.json:
            return
        top = f" {row['top'][0]['probability']:.3f}" if row["top"] else ""
        late = f"  latency {row['latency_ms']:6.1f} ms" if "latency_ms" in row else ""
        late += "  (closed by the stream's end)" if row.get("closed_by") else ""
        print(f"{row['end_ms'] / 1e3:9.3f} s  {row['label']}{top}{late}", flush=True)

    window = 500.0 if args.window is None else args.window
    r = predict_live(predictor, args.live, window, args.stride, args.top, args.smooth, timeout=args.connect_timeout,
                     max_windows=args.max_windows, echo=line, reconnect=args.reconnect,
                     note=lambda text: print(f"spikmamba predict: {text}", file=sys.stderr, flush=True))
    s = r.summary()
    if args.timeline:
        r.timeline.write(args.timeline, s)
    if args.json:
        print(json.dumps({**s, "windows": r.timeline.rows}, indent=2))
        return 0
    lat = (f"latency p50/p95/p99 {s['latency_p50_ms']:.1f} / {s['latency_p95_ms']:.1f} / {s['latency_p99_ms']:.1f} ms"
           if s["latency_p50_ms"] is not None else "no latency measured")
    if s["end_windows"]:
        lat += (f" ({s['end_windows']} window(s) closed by the stream's end: decided within "
                f"{s['end_latency_max_ms']:.1f} ms of its last packet)")
    print(f"{args.live}: {s['windows']} windows ({s['dropped_windows']} dropped, {s['empty_windows']} empty), "
          f"{s['events']:,} events in {s['streaming_s']:.1f} s ({s['events_per_s_sustained']:,.0f} events/s), {lat}; "
          f"{s['ended']}" + (f"; the reader waited {s['read_stalls']} time(s) on a full buffer (the sender was slowed)"
                             if s["read_stalls"] else "") + (f"; wrote {args.timeline}.csv and .json" if args.timeline
                                                               else ""))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    from .engine.predict import predict_files

    if args.live is not None:
        if args.paths:
            raise InputError("give either --live SOURCE or files to classify, not both")
        return _cmd_predict_live(args)
    if not args.paths:
        raise InputError("name the event, image or video files (or folders) to classify, or --live SOURCE")
    if args.window is not None:
        return _cmd_predict_windows(args)
    names = None
    if args.class_index:
        try:
            names = json.loads(Path(args.class_index).read_text())
        except json.JSONDecodeError as err:
            raise InputError(f"{args.class_index}: not JSON ({err})") from None
        if not isinstance(names, dict):
            raise InputError(f"{args.class_index}: expected a JSON object of class index -> name, "
                             f"e.g. {{\"0\": \"airplane\"}}")
    r = predict_files(args.checkpoint, args.paths, topk=args.top, batch_size=args.batch_size, device=args.device,
                      class_names=names, num_workers=args.workers, model=args.model, backend=args.backend,
                      sensor_size=args.sensor_size, event_format=args.format)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        for p in r["predictions"]:
            if p["probability"] is None:  # an empty recording: labelled, not classified
                print(f"{p['file']}: {p['prediction']}")
                continue
            others = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in p["top"][1:])
            print(f"{p['file']}: {p['prediction']} ({p['probability']:.3f})" + (f"  [{others}]" if others else ""))
        if "labelled" in r:
            print(_labelled_report(r["labelled"]))
    for e in r["errors"]:
        print(f"spikmamba predict: {e['file']}: {e['error']}", file=sys.stderr)
    return 1 if r["errors"] else 0


def _labelled_report(s: dict) -> str:
    """Accuracy and confusion matrix of predicted files that a labels file names."""
    lines = [f"accuracy on the labelled files: {s['top1'] * 100:.2f}% ({s['samples']} files; labels from "
             f"{', '.join(s['labels'])})"]
    if s["unlabelled"] or s["unknown_class"]:
        lines.append(f"  not scored: {s['unlabelled']} without a label or without events, {s['unknown_class']} "
                     f"labelled with a class the model does not know")
    names = [row["class"] for row in s["per_class"]]
    width = max(len(n) for n in names)
    lines.append("  confusion (rows: true, columns: predicted):")
    for name, row in zip(names, s["confusion"]):
        lines.append(f"  {name:>{width}} " + " ".join(f"{v:>4}" for v in row))
    return "\n".join(lines)


def _cmd_export(args: argparse.Namespace) -> int:
    from .engine.export import export_checkpoint_onnx, export_folder
    from .engine.nir_export import export_checkpoint_nir

    ckpt = Path(args.checkpoint)
    default = {"folder": ckpt.with_name(f"{ckpt.stem}-weights"), "onnx": ckpt.with_suffix(".onnx"),
               "nir": ckpt.with_suffix(".nir")}[args.format]
    out = Path(args.out) if args.out else default
    if args.format == "folder":
        folder = export_folder(ckpt, out, overwrite=args.overwrite)
        print(f"wrote {folder}/ (model.safetensors, config.json, README.md); use it with: spikmamba predict "
              f"--model {folder} FILES, or create_model(name, pretrained='{folder}')")
    elif args.format == "onnx":
        r = export_checkpoint_onnx(ckpt, out)
        print(f"wrote {r['path']} ({r['exporter']} exporter; ONNX Runtime equals PyTorch within "
              f"{r['max_abs_diff']:.1e} at batch 2 and 3; the batch dimension is dynamic)")
    else:
        r = export_checkpoint_nir(ckpt, out)
        print(f"wrote {r['path']} ({r['nodes']} NIR nodes)")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    import time

    from .analysis.show import contact_sheet, render

    timeline, predictor = None, None
    if args.checkpoint or args.model:
        from .engine.predict import load_predictor
        from .engine.timeline import predict_timeline

        predictor = load_predictor(args.checkpoint, args.model)
        timeline = predict_timeline(predictor, args.file, args.window, args.stride, sensor_size=args.sensor_size,
                                    event_format=args.format)
    started = time.perf_counter()
    out = args.out or str(Path(args.file).with_suffix(".gif").name)
    r = render(args.file, out, args.frame_ms, args.fps, args.start_ms, args.end_ms, args.scale, timeline,
               args.sensor_size, event_format=args.format)
    print(f"wrote {r['path']}: {r['frames']} frames of {args.frame_ms:g} ms ({r['seconds']:.2f} s of recording, "
          f"x{r['scale']}) in {time.perf_counter() - started:.1f} s"
          + (f"; {r['late_events']} events arrived after their frame was drawn (timestamps going back) and "
             f"are not shown" if r["late_events"] else ""))
    if args.sheet:
        if predictor is None:
            raise InputError("--sheet draws what a model sees: give --checkpoint or --model too")
        from .engine.inputs import load_input_file

        x = load_input_file(args.file, predictor.representation, predictor.transforms, args.sensor_size,
                            args.format).numpy()
        contact_sheet(x, args.sheet, f"{Path(args.file).name} as {predictor.name} sees it")
        print(f"wrote {args.sheet}: the {x.shape[0]} time steps x {x.shape[1]} channels the model sees")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .analysis.inspect import inspect_spikes

    r = inspect_spikes(args.file, args.out, checkpoint=args.checkpoint, model=args.model, layer=args.layer,
                       sensor_size=args.sensor_size, event_format=args.format)
    print(f"{r['file']}: {r['model']} predicts {r['prediction']} ({r['probability']:.3f})")
    print(f"{len(r['layers'])} spiking layers; mean firing rate per layer and time step in {r['rates_png']}, "
          f"{r['rates_csv']}; spike raster of {r['layer']} in {r['raster_png']}")
    return 0


def _cmd_energy(args: argparse.Namespace) -> int:
    from .analysis import EnergyConstants, format_report, run_energy, save_report
    from .analysis.run import default_out_dir

    r = run_energy(args.checkpoint, args.model, args.overrides, samples=args.samples, batch_size=args.batch_size,
                   constants=EnergyConstants(args.e_mac, args.e_ac), ann=not args.no_ann)
    out = Path(args.out) if args.out else default_out_dir(args.checkpoint, args.model)
    paths = save_report(out, r["snn"], r["ann"], title=r["model"])
    print(f"{r['model']} on {r['snn']['samples']} {r['data']} samples")
    print(format_report(r["snn"], r["ann"]))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmark import run_benchmarks, save_json

    report = run_benchmarks(
        args.names or None,
        args.dir,
        quick=args.quick,
        repeats=args.repeats,
        warmup=args.warmup,
        memory=args.memory,
        busy=args.busy,
    )
    if args.json:
        save_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


def _train_help() -> str:
    from .engine.config import config_help

    return config_help()


CHECKPOINT_HELP = "a best.pt or last.pt written by spikmamba train"
SHIPPED_HELP = ("weights shipped with spikmamba (e.g. spikmamba_tiny_sps.nmnist; `spikmamba models` lists them) or a "
                "weights folder written by `spikmamba export --format folder`")


def _add_checkpoint(p: argparse.ArgumentParser) -> None:
    """``--checkpoint CKPT``, required: commands that start from a training checkpoint."""
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help=CHECKPOINT_HELP)


def _add_model_source(p: argparse.ArgumentParser, required: bool, checkpoint_help: str = CHECKPOINT_HELP,
                      model_help: str = SHIPPED_HELP, model_metavar: str = "NAME.TAG|FOLDER") -> None:
    """``--checkpoint CKPT`` or ``--model NAME``, one of the two: where the model comes from."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--checkpoint", metavar="CKPT", help=checkpoint_help)
    src.add_argument("--model", metavar=model_metavar, help=model_help)


def _add_overrides(p: argparse.ArgumentParser, example: str) -> None:
    """The ``key=value`` config overrides, as ``spikmamba train`` takes them."""
    p.add_argument("overrides", nargs="*", metavar="key=value", help=f"config overrides, e.g. {example}")


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model (default: on the built-in simulated action dataset)",
        description="Train a model. With no arguments: SpikMamba tiny on SynthActions (10 simulated DVS action "
        "classes, generated from a seed; no download), then accuracy on a held-out test split. With "
        "data.name=<dataset> data.root=<folder> (see `spikmamba datasets`): a recorded dataset, with a seeded "
        "stratified validation split (data.val_fraction) that picks the best epoch, and data.test_root for a separate "
        "test folder. Writes OUT_DIR/config.yaml, last.pt (every epoch; resumable), best.pt (with a validation "
        "split), log.csv, tensorboard/ and summary.json. Ctrl-C or SIGTERM saves last.pt and stops; "
        "--resume continues exactly where it stopped. Under `torchrun --nproc_per_node N -m spikmamba train ...` "
        "it trains data-parallel (gloo on CPU, NCCL on CUDA) with the same global data.batch_size.",
        epilog=_train_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", default=None,
                   help="YAML config (e.g. configs/nmnist_small.yaml); command-line key=value overrides it "
                   "(default: none, the built-in defaults below)")
    p.add_argument("--resume", metavar="CKPT", default=None,
                   help="continue from a last.pt with its stored config (key=value overrides still apply, e.g. "
                   "schedule.epochs=30); default: start afresh")
    _add_overrides(p, "schedule.epochs=5 data.batch_size=16 data.root=DIR")
    p.set_defaults(func=_cmd_train)


def _test_parser(sub) -> None:
    p = sub.add_parser(
        "test", help="evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix",
        description="Evaluate a checkpoint on the test set its config names (synth: its test split; a recorded "
        "dataset: data.test_root). Prints top-1, top-5 and per-class accuracy; writes metrics.json, per_class.csv, "
        "confusion.csv (true class per row) and confusion.png.",
        epilog=_train_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_checkpoint(p)
    p.add_argument("--config", metavar="FILE", default=None,
                   help="YAML whose keys replace the checkpoint's stored config, e.g. a different data.test_root "
                   "(default: the stored config as is)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where to write the reports (default: test-<checkpoint name>/ beside the checkpoint)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")
    _add_overrides(p, "data.test_root=DIR data.batch_size=64")
    p.set_defaults(func=_cmd_test)


def _predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="classify event files (images or videos for image and video models) with a trained model",
        description="Classify event files in any supported format (N-MNIST .bin/.bs2, AEDAT 2/3.1/4, Prophesee "
        "DAT/EVT2/EVT3, npy/npz/h5), image files (png, jpg, ...) with an image model such as SVMamba, or videos "
        "(avi, mp4, ...) with a video model such as ReSpike: one prediction per video from the mean of its clips' "
        "logits. Each file becomes the same tensor as in training (the representation is stored in the "
        "checkpoint). A folder means every such file below it. Files that cannot be read are reported with the "
        "reason and the exit status is 1; the others are still classified.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_model_source(p, required=True)
    p.add_argument(
        "paths", nargs="*", metavar="FILE_OR_FOLDER", help="event, image or video files and/or folders of them"
    )
    p.add_argument("--live", metavar="SOURCE", default=None,
                   help="classify a live event stream window by window as it arrives: tcp://HOST:PORT (DV's network "
                   "output, or `spikmamba replay FILE --serve tcp://:PORT`), - (standard input) or a named pipe; "
                   "prints each window's label and latency, then p50/p95/p99 latency and dropped windows")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="with --live: seconds the stream's header, or a packet once begun, may take")
    p.add_argument("--max-windows", type=int, default=0, metavar="N", help="with --live: stop after N windows "
                   "(0: until the stream ends or Ctrl-C)")
    p.add_argument("--reconnect", action="store_true", help="with --live: when the stream ends, breaks or cannot "
                   "be reached, say so and connect again every second until Ctrl-C (default: stop there)")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"),
                   help="run the model with PyTorch, or export it to ONNX (checked against PyTorch) and run it with "
                   "ONNX Runtime")
    p.add_argument("--class-index", metavar="JSON", help="JSON object of class index -> name, replacing the names "
                   "stored in the checkpoint (e.g. {\"0\": \"airplane\", \"1\": \"automobile\"})")
    p.add_argument("--top", type=int, default=5, help="how many classes to report per file")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    p.add_argument("--batch-size", type=int, default=16, help="files per forward pass")
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'cuda:N' or 'auto'")
    p.add_argument("--workers", type=int, default=-1, help="processes that read and prepare the files (-1: from the "
                   "CPU count, as training's data.num_workers)")
    p.add_argument("--window", type=float, default=None, metavar="MS",
                   help="classify a long recording window by window: windows of MS milliseconds, read as a stream "
                   "(the file never sits whole in memory); prints a timeline (with --live: 500 when not given)")
    p.add_argument("--stride", type=float, default=None, metavar="MS", help="with --window: the step between window "
                   "starts (default: half the window)")
    p.add_argument("--smooth", type=int, default=1, metavar="K",
                   help="with --window: average each window's probabilities with its K-1 nearest non-empty neighbours")
    _add_reading_options(p)
    p.add_argument("--timeline", metavar="PREFIX", default=None,
                   help="with --window: also write PREFIX.csv and PREFIX.json (start, end, events, label, top classes)")
    p.set_defaults(func=_cmd_predict)


def _energy_parser(sub) -> None:
    p = sub.add_parser(
        "energy", help="firing rates, MACs, SOPs and estimated energy per layer (SNN vs ANN)",
        description="Run N samples through a model and report, per layer and in total: the firing rate of each "
        "spiking layer, dense MACs, synaptic operations (SOPs = input firing rate x MACs, for layers fed by "
        "spikes) and the estimated energy E = E_MAC x MACs + E_AC x SOPs (45 nm: 4.6 pJ and 0.9 pJ). The first "
        "layer and every layer fed by non-spike input count as MAC. The same model with neurons replaced by the "
        "identity (ANN) is reported beside it. Writes energy.json, energy.csv and energy.png.",
        epilog="Give the data with config overrides, as for `spikmamba train` (e.g. data.representation=afe "
        "data.resolution=128 for the published models); the default is the built-in SynthActions test split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_model_source(p, required=True, checkpoint_help="a trained checkpoint; its test data are used",
                      model_help="an untrained registered model (`spikmamba models`)", model_metavar="NAME")
    p.add_argument("--samples", type=int, default=16, help="samples to run")
    p.add_argument("--batch-size", type=int, default=8, help="samples per forward pass")
    p.add_argument("--e-mac", type=float, default=4.6, help="energy of one multiply-accumulate, pJ")
    p.add_argument("--e-ac", type=float, default=0.9, help="energy of one accumulate (synaptic operation), pJ")
    p.add_argument("--no-ann", action="store_true", help="skip the ANN comparison run")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="report folder (default: energy-<ckpt name>/ beside the checkpoint, or runs/energy/<model>)")
    _add_overrides(p, "data.representation=afe data.resolution=128 (the data and the model)")
    p.set_defaults(func=_cmd_energy)


def _bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="time our kernels against baselines in the same process (ratios printed)",
        description="Run the benchmarks in benchmarks/bench_*.py. Each benchmark times our implementation and "
        "its baselines alternately in one process, after warm-up, and prints median times and the ratio "
        "baseline/ours (above 1: ours is faster). Baselines that are not installed (SpikingJelly, mambapy, "
        "tonic) are reported as skipped, never replaced.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="benchmarks to run (default: all), e.g. lif scan-L1024 frames-1e6"
    )
    p.add_argument("--quick", action="store_true", help="tiny shapes: checks that everything runs, times mean little")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per benchmark")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    p.add_argument(
        "--memory",
        action="store_true",
        help="also measure the peak resident memory of one call of each implementation, each in a fresh process",
    )
    p.add_argument(
        "--dir", metavar="DIR", default=None, help="benchmarks folder (default: the source checkout's benchmarks/)"
    )
    p.add_argument("--busy", type=int, default=0, metavar="N",
                   help="run N busy processes (one spinning core each) beside the timed rounds, to measure a shared "
                   "machine; compare with the same command without --busy")
    p.set_defaults(func=_cmd_bench)


def _export_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="write a checkpoint as a weights folder (safetensors + config.json), ONNX, or NIR",
        description="Export a trained checkpoint. folder: model.safetensors + config.json (model, arguments, classes, "
        "representation, transforms) + README.md, the layout the Hugging Face Hub stores; read back with "
        "`spikmamba predict --model FOLDER` or create_model(name, pretrained=FOLDER). onnx: one file with a dynamic "
        "batch dimension, checked against PyTorch with ONNX Runtime before it is written. nir: the Neuromorphic "
        "Intermediate Representation, for spiking CNNs made only of conv, linear, pooling, flatten and LIF "
        "(e.g. scnn_nmnist); other models get an error naming the first module NIR cannot express.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_checkpoint(p)
    p.add_argument("--format", required=True, choices=("folder", "onnx", "nir"), help="what to write")
    p.add_argument("--out", metavar="PATH", default=None,
                   help="where (default: beside the checkpoint: <name>-weights/, <name>.onnx, <name>.nir)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --format folder: replace the files of a folder that is not empty (refused otherwise)")
    p.set_defaults(func=_cmd_export)


def _show_parser(sub) -> None:
    p = sub.add_parser(
        "show", help="render an event recording as an animated GIF or MP4 (with a model: its label per window)",
        description="Render a recording (any supported format) as an animation: events of each frame_ms in two "
        "colours (ON red, OFF blue, both white), the time, a progress bar and, with --checkpoint or --model, the "
        "label of the window each frame falls in. The file is read as a stream. --sheet also draws the input the "
        "model sees (its time steps and channels) as a PNG.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="an event recording")
    p.add_argument("--out", metavar="PATH", default=None, help="a .gif or .mp4 (default: <file name>.gif here)")
    p.add_argument("--frame-ms", type=float, default=33.0, help="time span of one frame")
    p.add_argument("--fps", type=float, default=None, help="frames per second of the animation (default: real time)")
    p.add_argument("--start-ms", type=float, default=None, help="start this long after the first event")
    p.add_argument("--end-ms", type=float, default=None, help="stop this long after the first event")
    p.add_argument("--scale", type=int, default=None, help="pixels per sensor pixel (default: at least 256 wide)")
    _add_reading_options(p)
    _add_model_source(p, required=False, checkpoint_help="label each window with this model",
                      model_help="label each window with shipped or exported weights")
    p.add_argument("--window", type=float, default=500.0, metavar="MS", help="with a model: window length")
    p.add_argument("--stride", type=float, default=None, metavar="MS", help="with a model: window step (default: half)")
    p.add_argument("--sheet", metavar="PNG", default=None, help="with a model: also draw its input for this file")
    p.set_defaults(func=_cmd_show)


def _inspect_parser(sub) -> None:
    p = sub.add_parser(
        "inspect", help="see the spikes: firing rate of every spiking layer over time, and a spike raster",
        description="Run one recording through a model and draw the mean firing rate of every spiking layer at every "
        "time step (a heat map, and a CSV), and the spike raster of one layer (neurons x time steps).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="an event recording (or an image / video for those models)")
    _add_model_source(p, required=True)
    p.add_argument(
        "--layer",
        default=None,
        help="the spiking layer whose raster to draw, as `spikmamba energy` names it (default: the last one)",
    )
    p.add_argument("--out", metavar="DIR", default="inspect", help="folder for the figures")
    _add_reading_options(p)
    p.set_defaults(func=_cmd_inspect)


def _synth_parser(sub) -> None:
    p = sub.add_parser(
        "synth", help="write SynthActions clips (the built-in simulated data) as event files",
        description="Write clips of the built-in simulated action dataset as event files NNNN_<class>.<ext> plus "
        "labels.csv (file,class_id,class_name), to read, show or classify like recordings. With the defaults they "
        "are the first test clips of the default `spikmamba train` run (same seed and 32x32 sensor), so "
        "`spikmamba predict --checkpoint runs/synth/last.pt DIR` classifies them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (created if missing)")
    p.add_argument("--count", type=int, default=20, help="clips to write (classes cycle 0-9)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="which seed stream")
    p.add_argument("--sensor-size", type=int, default=32, help="sensor width = height, pixels (train's "
                   "data.synth.sensor_size)")
    p.add_argument("--seed", type=int, default=0, help="base seed (train's seed)")
    p.add_argument("--format", default=".npz", help="file extension: .npz/.h5 store the sensor size; .aedat (AEDAT "
                   "3.1), .bs2 (N-MNIST), .dat, .raw and .npy do not, so readers then need it passed")
    p.set_defaults(func=_cmd_synth)


def _replay_parser(sub) -> None:
    p = sub.add_parser(
        "replay", help="serve a recording as a live camera stream (DV's AEDAT 4 over TCP)",
        description="Serve FILE (any readable event recording) as the AEDAT 4 stream DV's network output sends, at "
        "the recording's own pace: for tests, demos and anyone without a camera. Every client that connects gets "
        "the recording from its start; `spikmamba predict --live tcp://HOST:PORT`, dv-processing's NetworkReader "
        "or DV itself read it. Ctrl-C stops.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("file", help="the recording to serve (its sensor size must be known: AEDAT, .npz, .h5, ...)")
    p.add_argument("--serve", required=True, metavar="tcp://[HOST]:PORT",
                   help="where to listen, e.g. tcp://:7777 (every interface) or tcp://127.0.0.1:7777")
    p.add_argument("--speed", type=float, default=1.0, help="times real time; inf = as fast as clients read")
    p.add_argument("--loop", action="store_true", help="start again at the end, timestamps continuing upward")
    p.set_defaults(func=_cmd_replay)


def _models_parser(sub) -> None:
    p = sub.add_parser(
        "models", help="list registered models with parameter counts",
        description="List every registered model (name, parameter count at its default size, description). "
        "Build one in Python with spikmamba.models.create_model(NAME, **overrides).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--filter", default="", help="only list names containing this text")
    p.set_defaults(func=_cmd_models)


def _datasets_parser(sub) -> None:
    p = sub.add_parser(
        "datasets", help="list datasets and the folder layout each expects",
        description="List the recorded-event datasets (each reads an already-downloaded folder; nothing is "
        "ever downloaded) with the exact folder layout each expects. Event files in any format that "
        "spikmamba.events.read_events reads: N-MNIST .bin/.bs2, AEDAT 2.0/3.1/4, Prophesee DAT/EVT2/EVT3, "
        "npy/npz/h5.",
    )
    p.add_argument("name", nargs="?", default=None, help="show only this dataset")
    p.set_defaults(func=_cmd_datasets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikmamba", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"spikmamba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for add in (_train_parser, _test_parser, _predict_parser, _energy_parser, _bench_parser, _export_parser,
                _show_parser, _inspect_parser, _synth_parser, _replay_parser, _models_parser, _datasets_parser):
        add(sub)
    return parser


def _end_torchrun_worker(code: int) -> None:
    """Under ``torchrun``, end a worker that has finished its command right here.

    Now and then a gloo worker aborted *after* its work was done, its files written and its
    process group destroyed: "terminate called without an active exception", SIGABRT, and
    torchrun then killed the other rank (seen in 1 of 3 full test runs, never in 21 runs of the
    DDP test alone, also under load). The likeliest source is C++ state of torch.distributed torn
    down during interpreter finalization, so a worker with nothing left to do skips finalization:
    its output is flushed, logging is shut down, and it exits with its status.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line for people, ``spikmamba: warning: ...``, not Python's file:line and source."""
    return f"spikmamba: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    from .threads import apply_wait_policy

    apply_wait_policy()  # before anything imports torch: OpenMP reads it once, at load time
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    command = f"spikmamba {getattr(args, 'command', '') or ''}".rstrip()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        _end_torchrun_worker(code)
        return code
    except Interrupted as err:  # training stopped on a signal after saving: say where to resume
        print(f"{command}: {err}", file=sys.stderr)
        return 130
    except SpikmambaError as err:  # the user's to fix, and the message says how: no traceback
        print(f"{command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves and stops by itself): quiet
        print(f"\nspikmamba {getattr(args, 'command', '') or ''}: interrupted".replace("  ", " "), file=sys.stderr)
        return 130
    except BrokenPipeError:  # `spikmamba predict ... --json | head`: the reader left; not an error of ours
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        except (OSError, ValueError):
            pass
        return 0
    except OSError as err:  # the environment's: a missing file, a full disk, no permission (names the path)
        print(f"{command}: {err}", file=sys.stderr)
        return 2


def run() -> int:
    """The ``spikmamba`` command as a process: :func:`main`, then, after an interruption, late
    Ctrl-C presses ignored while the interpreter shuts down (it drops Python's own handlers then,
    and a press killed the process with SIGINT after its checkpoint was reported)."""
    code = main()
    if code == 130:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
