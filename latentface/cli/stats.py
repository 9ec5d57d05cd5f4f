"""``latentface stats``: per-channel latent mean/std of a split (:mod:`latentface.data.stats`), the loading
speed, or (``--report``) what to look at first in the latents (:mod:`latentface.data.latent_report`)."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from latentface.cli.args import add_dataset, flag
from latentface.data import latent_report
from latentface.data.dataset import NestedLatentWiderFaceDataset, measure_loading_throughput
from latentface.data.stats import compute_latent_stats, default_stats_path, save_stats


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_dataset(parser, required=True, split="train")
    parser.add_argument(
        "--output",
        default=None,
        help=f"JSON path (default <root>/latent_stats_<rate>.json; with --report <root>/{latent_report.REPORT_FILE})",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="instead: per rate, luma vs chroma statistics, the share of skipped residuals (exact "
        "for the built-in codecs, a labelled proxy otherwise) and whether the rates of one "
        "image are identical, near or far; every rate file of the split, --latent_type ignored",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=latent_report.DEFAULT_IMAGES,
        help=f"--report: the first N images in key order (default {latent_report.DEFAULT_IMAGES}; 0: all)",
    )
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="instead: measure DataLoader latents/s (from the page cache after the first pass)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(*flag("--batch_size"), dest="batch_size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--dtype",
        choices=("auto", "float16", "float32"),
        default="auto",
        help="--throughput: latents loaded as (default auto: as training loads them, float16 for float16 files)",
    )


def run(args: argparse.Namespace) -> int:
    if args.report and args.throughput:
        raise ValueError("--report and --throughput are two different measurements; pass one")
    if args.report:
        if args.images < 0:
            raise ValueError(f"--images must be >= 0 (0: all), got {args.images}")
        report = latent_report.latent_report(args.dataset_root, args.split, args.images or None, progress=True)
        out = latent_report.save_report(report, args.output or latent_report.default_report_path(args.dataset_root))
        print(latent_report.format_report(report))
        print(f"-> {out}")
        return 0
    if args.throughput:
        dtype = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
        ds = NestedLatentWiderFaceDataset(args.dataset_root, args.split, args.latent_type, dtype=dtype)
        m = measure_loading_throughput(ds, workers=args.workers, batch_size=args.batch_size, seconds=args.seconds)
        print(
            f"{m['latents_per_s']:.0f} latents/s ({m['latents']} {str(ds.dtype).removeprefix('torch.')} latents "
            f"[{', '.join(map(str, ds.expected_shape))}] "
            f"in {m['seconds']:.1f} s, {m['workers']} workers, batch {m['batch_size']}); "
            f"CPU time {m['cpu_ms_per_latent']:.2f} ms per latent (workers + main process)"
        )
        return 0
    stats = compute_latent_stats(args.dataset_root, args.split, args.latent_type)
    out = save_stats(stats, args.output or default_stats_path(args.dataset_root, args.latent_type))
    mean, std = np.array(stats["mean"]), np.array(stats["std"])
    print(
        f"{stats['count']} latents, {len(mean)} channels: mean in [{mean.min():.3g}, {mean.max():.3g}], "
        f"std in [{std.min():.3g}, {std.max():.3g}] -> {out}"
    )
    return 0
