"""``latentface bench``: latent vs RGB cost and accuracy benchmarks -> ``docs/BENCHMARKS.md``.

The sections and the report are :mod:`latentface.tools.bench`; this module is the command line.
"""

from __future__ import annotations

import argparse
import sys

import torch

from latentface.cli.args import add_device, flag
from latentface.tools.bench import PROFILES, SECTIONS, parse_sections, regenerate_report, run_bench
from latentface.util.device import resolve_device


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        *flag("--sections"),
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes: every section in well under a minute")
    size.add_argument("--full", action="store_true", help="the full-size study (640x640 ResNet-50 accuracy): for a GPU")
    size.add_argument(
        *flag("--report_only"),
        dest="report_only",
        action="store_true",
        help="measure nothing: BENCHMARKS.md and the figures again from <out>/benchmarks.json",
    )
    parser.add_argument(
        "--out", default="docs", help="where BENCHMARKS.md, benchmarks.json and figures go (default: docs)"
    )
    parser.add_argument(
        *flag("--runs"),
        default=None,
        help="where training runs and the synthetic data go (default: runs/bench/<profile>)",
    )
    add_device(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--fresh", action="store_true", help="forget stored results of the other sections")
    parser.add_argument(
        "--variants",
        default=None,
        help="accuracy: comma-separated subset of the variant names (e.g. rgb,latent_context)",
    )
    parser.add_argument(
        *flag("--reuse_only"),
        dest="reuse_only",
        action="store_true",
        help="accuracy/rates: evaluate finished runs only, train nothing",
    )


def run(args: argparse.Namespace) -> int:
    if args.report_only:
        print(regenerate_report(args.out))
        return 0
    sections = parse_sections(args.sections)
    profile = PROFILES["quick" if args.quick else "full" if args.full else "cpu"]
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    command = "latentface bench" + (" --quick" if args.quick else " --full" if args.full else "")
    report = run_bench(
        sections, profile, device, args.out, args.runs, args.fresh, variants, args.reuse_only, command=command
    )
    print(report, file=sys.stdout)
    return 0
