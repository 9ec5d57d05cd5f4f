"""``latentface synth``: write the synthetic face dataset in the retina-modify layout (:mod:`latentface.data.synth`)."""

from __future__ import annotations

import argparse

from latentface.cli.args import add_progress, flag
from latentface.codec import dct
from latentface.data.synth import generate_dataset


def rates_list(text: str) -> list[int]:
    """``--rates 12,75`` -> [12, 75]."""
    try:
        return [int(r) for r in str(text).split(",") if r.strip()]
    except ValueError:
        raise ValueError(f"--rates must be comma-separated integers, got {text!r}") from None


def add_codec(parser: argparse.ArgumentParser, default: str | None = "dct", note: str = "") -> None:
    """``--codec``: the built-in codec that writes the latents. Checked by the library (an unknown name is
    one error line naming the known ones), so it takes no argparse ``choices``."""
    parser.add_argument(
        "--codec",
        default=default,
        metavar="NAME",
        help="built-in codec of the latents: dct (default; the block DCT) or learned "
        "(the small learned codec; codec.json records its weights' digest)" + note,
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", *flag("--dataset_root"), dest="root", default="data/synth", help="output folder (default: data/synth)"
    )
    parser.add_argument("--train", type=int, default=500, help="training images (default 500)")
    parser.add_argument("--val", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--size", type=int, default=640, help="image side, a multiple of 16 (default 640)")
    parser.add_argument(
        "--rates",
        default=",".join(map(str, dct.QUALITIES)),
        help="comma-separated qualities (default: all of 12,25,50,75,100)",
    )
    add_codec(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes drawing images (output is identical)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing train/val folders")
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    s = generate_dataset(
        args.root,
        args.train,
        args.val,
        size=args.size,
        rates=rates_list(args.rates),
        seed=args.seed,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        workers=args.workers,
        codec=args.codec,
    )
    print(
        f"wrote {s['images']} images ({s['faces']} faces) at {s['size']}x{s['size']}, {s['codec']} codec, "
        f"rates {s['rates']} "
        f"to {s['root']} in {s['seconds']:.1f} s ({s['images_per_s']:.1f} images/s; "
        f"{s['images_per_cpu_s']:.1f} images per CPU-second)"
    )
    return 0
