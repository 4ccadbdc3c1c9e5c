"""The ``spikmamba`` command. Each sub-command lives in a small ``_cmd_*`` function."""
from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
spikmamba: spiking state-space models (SpikMamba and friends) for event-camera data.

Typical use:
  spikmamba train                      train SpikMamba tiny on the built-in simulated dataset
  spikmamba train epochs=3 lr=1e-3     the same with config overrides (key=value)
  spikmamba models                     list every registered model with its parameter count
  spikmamba models --filter bisla      only names containing 'bisla'
  spikmamba datasets                   list datasets with the folder layout each expects

Run `spikmamba COMMAND --help` for the options of one command.
"""


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import count_parameters, create_model, list_models, model_description

    names = list_models(args.filter)
    if not names:
        print(f"no registered model name contains {args.filter!r}", file=sys.stderr)
        return 1
    width = max(len(n) for n in names)
    print(f"{'model':<{width}}  {'params':>10}  description")
    for name in names:
        params = count_parameters(create_model(name))
        print(f"{name:<{width}}  {params / 1e6:>9.2f}M  {model_description(name)}")
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


def _cmd_train(args: argparse.Namespace) -> int:
    from .engine.train import TrainConfig, apply_overrides, load_config, train

    try:
        cfg = load_config(args.config) if args.config else TrainConfig()
        cfg = apply_overrides(cfg, args.overrides)
    except (ValueError, OSError) as err:
        print(f"spikmamba train: {err}", file=sys.stderr)
        return 2
    summary = train(cfg)
    if "best_val_acc" in summary:
        print(f"validation accuracy: final epoch {summary['final_val_acc'] * 100:.2f}%, best "
              f"{summary['best_val_acc'] * 100:.2f}% at epoch {summary['best_epoch']} (checkpoints: {cfg.out_dir}/best.pt, last.pt)")
    if "test_acc" in summary:
        print(f"test accuracy (final model): {summary['test_acc'] * 100:.2f}% (checkpoint: {cfg.out_dir}/last.pt)")
    return 0


def _train_help() -> str:
    import dataclasses

    from .engine.train import TrainConfig

    lines = ["config keys (override with key=value; defaults shown):"]
    for f in dataclasses.fields(TrainConfig):
        if f.name != "model_overrides":
            lines.append(f"  {f.name:<16} {getattr(TrainConfig(), f.name)!r}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikmamba", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"spikmamba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "train", help="train a model (default: on the built-in simulated action dataset)",
        description="Train a model. With no arguments: SpikMamba tiny on SynthActions (10 simulated DVS action "
        "classes, generated from a seed; no download), then accuracy on a held-out test split. With "
        "data_name=<dataset> data_root=<folder> (see `spikmamba datasets`): a recorded dataset, with a seeded "
        "stratified validation split (val_fraction) that picks the best epoch, and test_root for a separate "
        "test folder. Writes OUT_DIR/last.pt, OUT_DIR/best.pt (with a validation split) and OUT_DIR/summary.json.",
        epilog=_train_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", default=None,
                   help="YAML config (e.g. configs/nmnist_small.yaml); command-line key=value overrides it")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=5 batch_size=16 data.root=DIR")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "models", help="list registered models with parameter counts",
        description="List every registered model (name, parameter count at its default size, description). "
        "Build one in Python with spikmamba.models.create_model(NAME, **overrides).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--filter", default="", help="only list names containing this text")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser(
        "datasets", help="list datasets and the folder layout each expects",
        description="List the recorded-event datasets (each reads an already-downloaded folder; nothing is "
        "ever downloaded) with the exact folder layout each expects. Event files in any format that "
        "spikmamba.events.read_events reads: N-MNIST .bin/.bs2, AEDAT 2.0/3.1/4, Prophesee DAT/EVT2/EVT3, "
        "npy/npz/h5.",
    )
    p.add_argument("name", nargs="?", default=None, help="show only this dataset")
    p.set_defaults(func=_cmd_datasets)
    return parser


def main(argv: "list[str] | None" = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
