"""``latentface codec train|report``: train and measure the built-in ``learned`` codec."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from latentface.cli.args import add_progress, flag
from latentface.codec import learned, training
from latentface.data.synth import draw_image
from latentface.util.io import write_json


def synthetic_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """One synthetic image with faces (the detector's training data), without its labels."""
    return draw_image(rng, size)[0]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="codec_command", metavar="ACTION", required=True)
    d = training.CodecTrainSettings()
    t = sub.add_parser(
        "train",
        help="train the learned codec (reproduces the shipped weights)",
        description="Train the learned codec on synthetic images (+ an image folder); resumable.",
    )
    t.add_argument(*flag("--images"), default=None, metavar="DIR", help="extra training images (half the samples)")
    t.add_argument(
        *flag("--out"),
        default=str(learned.WEIGHTS_DIR),
        metavar="DIR",
        help="where the weights, their JSON and the checkpoint go (default: the package's weights)",
    )
    t.add_argument(*flag("--steps"), type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    t.add_argument(
        *flag("--minutes"),
        type=float,
        default=d.minutes,
        help=f"wall-clock cap over all resumed runs (default {d.minutes:g})",
    )
    t.add_argument(*flag("--seed"), type=int, default=d.seed, help=f"seed (default {d.seed})")
    t.add_argument(*flag("--batch"), type=int, default=d.batch, help=f"crops per step (default {d.batch})")
    t.add_argument(*flag("--crop"), type=int, default=d.crop, help=f"crop size in px (default {d.crop})")
    t.add_argument(*flag("--width"), type=int, default=d.width, help=f"luma width N (default {d.width})")
    t.add_argument(*flag("--lr"), type=float, default=d.lr, help=f"peak learning rate (default {d.lr:g})")
    t.add_argument(*flag("--threads"), type=int, default=d.threads, help=f"torch threads (default {d.threads})")
    t.add_argument(*flag("--resume"), action="store_true", help="continue from the checkpoint in --out")
    add_progress(t)
    r = sub.add_parser(
        "report",
        help="PSNR and bpp per rate on held-out synthetic images, with the dct codec's",
        description="Measure the learned codec per rate next to the dct codec; writes learned.json.",
    )
    r.add_argument(
        *flag("--weights"),
        default=str(learned.WEIGHTS_FILE),
        metavar="PATH",
        help="weights file (default: the shipped ones)",
    )
    r.add_argument(*flag("--images"), type=int, default=16, metavar="N", help="held-out images (default 16)")
    r.add_argument(*flag("--size"), type=int, default=256, help="their size in px (default 256)")
    r.add_argument(
        *flag("--out"),
        default=None,
        metavar="JSON",
        help="where the table goes (default: learned.json next to the weights)",
    )
    add_progress(r)


def run(args: argparse.Namespace) -> int:
    if args.codec_command == "train":
        settings = dataclasses.replace(
            training.CodecTrainSettings(),
            steps=args.steps,
            minutes=args.minutes,
            seed=args.seed,
            batch=args.batch,
            crop=args.crop,
            width=args.width,
            lr=args.lr,
            threads=args.threads,
            images=args.images,
        )
        record = training.train_codec(
            settings, synthetic_image, out=args.out, resume=args.resume, progress=not args.no_progress
        )
        print(
            f"trained {record['steps_done']} steps in {record['minutes']} min -> "
            f"{Path(args.out) / learned.WEIGHTS_FILE.name} ({record['weights_bytes'] / 1e6:.2f} MB)"
        )
        return 0
    images = training.report_images(synthetic_image, args.images, args.size)
    report = training.codec_report(
        images,
        args.weights,
        progress=not args.no_progress,
        source=f"latentface.data.synth.draw_image, seed {training.REPORT_SEED}",
    )
    out = Path(args.out) if args.out else Path(args.weights).with_name(training.REPORT_NAME)
    write_json(out, report)
    print(training.format_report(report))
    print(f"written: {out}")
    return 0
