"""``latentface encode``: real images + a WIDER label file -> the retina-modify layout.

The work is :mod:`latentface.data.encode`'s; this module holds the flags.
"""

from __future__ import annotations

import argparse

from latentface.cli.args import add_progress, flag
from latentface.cli.synth import add_codec, rates_list
from latentface.codec import dct
from latentface.data.encode import encode_folder


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="image folder (e.g. WIDER_train/images)")
    parser.add_argument(
        "--labels", required=True, help="WIDER bbx or RetinaFace label file (e.g. wider_face_train_bbx_gt.txt)"
    )
    parser.add_argument("--root", *flag("--dataset_root"), dest="root", required=True, help="output dataset root")
    parser.add_argument("--split", default="train")
    parser.add_argument("--size", type=int, default=640, help="output side, a multiple of 16 (default 640)")
    parser.add_argument("--letterbox", action="store_true", help="keep the aspect ratio, pad with black")
    add_codec(parser)
    parser.add_argument("--rates", default=",".join(map(str, dct.QUALITIES)))
    parser.add_argument("--limit", type=int, default=None, help="only the first N labelled images")
    parser.add_argument("--workers", type=int, default=1, help="processes encoding images (output is identical)")
    parser.add_argument(*flag("--on_missing"), dest="on_missing", choices=("raise", "skip"), default="raise")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing <root>/<split>")
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    s = encode_folder(
        args.images,
        args.labels,
        args.root,
        split=args.split,
        size=args.size,
        letterbox=args.letterbox,
        rates=rates_list(args.rates),
        progress=not args.no_progress,
        on_missing=args.on_missing,
        limit=args.limit,
        overwrite=args.overwrite,
        codec=args.codec,
        workers=args.workers,
    )
    print(
        f"wrote {s['images']} images ({s['faces']} faces) to {s['split_dir']} with the {s['codec']} codec "
        f"in {s['seconds']:.1f} s "
        f"({s['images_per_s']:.1f} images/s); {s['missing_images']} missing images skipped, "
        f"{s['boxes_dropped']} empty boxes dropped"
    )
    return 0
