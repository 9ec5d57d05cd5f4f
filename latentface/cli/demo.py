"""``latentface demo``: the whole pipeline on the synthetic dataset (or a given one) -> ``runs/demo/``.

The steps are :mod:`latentface.tools.demo`; this module is the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from latentface.cli.args import add_device, add_progress, flag
from latentface.cli.synth import add_codec
from latentface.tools.demo import AP_TARGET, REPORT_FILE, read_summary, run_demo, summary_line


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        *flag("--dataset_root"),
        dest="dataset_root",
        default=None,
        metavar="DIR",
        help="a real dataset in the retina-modify layout (default: the synthetic one)",
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument(
        *flag("--synthetic_root"),
        dest="synthetic_root",
        default=None,
        metavar="DIR",
        help="where the synthetic dataset is made or reused (default data/synthetic-demo-<codec>, "
        "data/synthetic-demo-quick-<codec> with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run: seconds, not a meaningful AP")
    add_codec(
        parser,
        default=None,  # None: dct, or with --dataset_root the dataset's own codec
        note="; with --dataset_root the dataset's codec.json names it",
    )
    parser.add_argument(
        *flag("--latent_type"),
        dest="latent_type",
        default="latent_75.npy",
        help="latent file with --dataset_root (default latent_75.npy)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    parser.add_argument(
        *flag("--time_budget"),
        dest="time_budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="override the demo's training time limit",
    )
    add_device(parser, default=None)
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="training processes (DDP); default one per CPU core up to 2 on a CPU, else 1",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="run nothing: print the one-line summary of the finished run in --out (its demo.json)",
    )
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    if args.summary:
        print(summary_line(read_summary(args.out)))
        return 0
    summary = run_demo(
        args.out,
        args.dataset_root,
        args.synthetic_root,
        args.quick,
        args.latent_type,
        progress=not args.no_progress,
        processes=args.processes,
        codec=args.codec,
        epochs=args.epochs,
        time_budget=args.time_budget,
        device=args.device,
    )
    ev = summary["evaluation"]
    met = "met" if summary["targets"]["ap_met"] else "NOT met"
    print(
        f"demo: AP@0.5 {ev['ap']:.4f} (target {AP_TARGET:.2f}: {met}), "
        f"total {summary['timings_s']['total']:.0f} s -> {Path(args.out) / REPORT_FILE}"
    )
    print(summary_line(summary))
    return 0
