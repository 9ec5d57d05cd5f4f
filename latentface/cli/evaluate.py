"""``latentface evaluate``: WIDER FACE (and COCO) evaluation of a checkpoint or of saved predictions.

Writes ``report.json``, ``pr_curve.png`` and, for a checkpoint, its predictions in the official
WIDER text format (``widerface/``) under ``--output``. Images without a prediction file count
as missed faces (as an empty file does in the official code) and a warning on stderr says how
many; ``--require_all`` makes that an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentface.cli.args import add_dataset, add_device, add_operating_point, add_progress, flag, operating_point
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.data.labels import read_labels
from latentface.formats.widerface import read_widerface_predictions, write_widerface_predictions
from latentface.inference.evaluate import evaluate_checkpoint
from latentface.inference.operating_point import EVAL_CONF
from latentface.metrics import (
    add_wider_subsets,
    evaluation_report,
    format_report,
    load_wider_mat,
    mat_frame_transform,
    plot_pr_curve,
    to_mat_frame,
)
from latentface.metrics.report import missing_predictions, missing_warning
from latentface.util.io import write_json


def configure_parser(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(*flag("--weight"), dest="weight", metavar="PTH", help="checkpoint to run on the split")
    source.add_argument(
        *flag("--predictions"),
        dest="predictions",
        metavar="DIR",
        help="evaluate saved predictions instead: WIDER text files (latentface detect --format widerface)",
    )
    add_dataset(parser, required=True, split="val")
    parser.add_argument(
        *flag("--wider_gt"),
        dest="wider_gt",
        metavar="DIR",
        default=None,
        help="folder with the official wider_{face,easy,medium,hard}_val.mat: adds easy/medium/hard AP",
    )
    parser.add_argument(
        *flag("--output"),
        dest="output",
        default="runs/eval",
        metavar="DIR",
        help="report.json, pr_curve.png and predictions go here (default runs/eval)",
    )
    add_operating_point(parser, default_conf=f"{EVAL_CONF}")
    parser.add_argument(*flag("--batch_size"), dest="batch_size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    add_device(parser)
    parser.add_argument(
        *flag("--no_coco"),
        dest="no_coco",
        action="store_true",
        help="skip COCO mAP (pycocotools is slow on very large prediction sets)",
    )
    parser.add_argument(
        *flag("--on_bad_latent"),
        dest="on_bad_latent",
        choices=("raise", "skip"),
        default="raise",
        help="--weight: a bad latent file stops the run before the model runs (raise, default) or its image "
        "is left without predictions, its faces counted as missed (skip)",
    )
    parser.add_argument(
        *flag("--require_all"),
        dest="require_all",
        action="store_true",
        help="an image of the split (or of --wider_gt) without a prediction file is an error, "
        "not a missed image with a warning",
    )
    add_progress(parser)


def _require_all(predictions: dict, truth: dict, faces: dict, images_of: str, source: str) -> None:
    """--require_all: a ValueError naming the prediction source when an image has no predictions
    (``faces``: the counted faces of each image)."""
    missing = missing_predictions(predictions, truth)
    if missing:
        missed = sum(faces[key] for key in missing)
        raise ValueError(f"{source}: {missing_warning(missing, len(truth), missed, images_of)}; --require_all")


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    wider = load_wider_mat(args.wider_gt) if args.wider_gt else None  # before the model: a bad folder fails fast
    skipped: dict[str, str] = {}
    if args.weight:
        point = operating_point(args, evaluation=True)
        predictions, _, dataset = evaluate_checkpoint(
            args.weight,
            args.dataset_root,
            args.split,
            args.latent_type,
            point,
            args.batch_size,
            args.workers,
            args.device,
            progress=not args.no_progress,
            on_bad_latent=args.on_bad_latent,
            skipped=skipped,
        )
        names = {key: rec.name for key, rec in dataset.records.items()}
        write_widerface_predictions(predictions, out / "widerface", names)
    else:
        point = None
        dataset = NestedLatentWiderFaceDataset(args.dataset_root, args.split, args.latent_type)
        files: dict[str, Path] = {}
        predictions = read_widerface_predictions(args.predictions, files)
        unknown = [key for key in predictions if key not in dataset.records]
        if unknown:
            raise ValueError(
                f"{files[unknown[0]]}: image {unknown[0]!r} is not in {Path(args.dataset_root) / args.split}"
                + (f" ({len(unknown)} such files)" if len(unknown) > 1 else "")
                + "; prediction files are named after the split's images (<event>/<image>.txt)"
            )
    if args.require_all:
        faces = {key: int((~r.ignore).sum()) for key, r in dataset.records.items()}
        _require_all(predictions, dataset.records, faces, f"split {args.split!r}", args.predictions or args.weight)
    if wider is not None and args.require_all:
        faces = {key: int(v["hard"].sum()) for key, v in wider.items()}
        _require_all(predictions, wider, faces, "the WIDER .mat (hard)", args.predictions or args.weight)
    report = evaluation_report(predictions, dataset.records, coco=not args.no_coco)
    if skipped:
        report["bad_latents_skipped"] = skipped
        example = next(iter(skipped.values()))
        report["warnings"].insert(0, f"{len(skipped)} bad latent(s) skipped (--on_bad_latent skip), e.g. {example}")
    if wider is not None:
        labels = read_labels(Path(args.dataset_root) / args.split / "labels.txt")
        moved = to_mat_frame(predictions, mat_frame_transform(labels, wider))
        # every image of the .mat: one without predictions counts its faces as missed (the official code)
        add_wider_subsets(report, moved, wider)
    report["source"] = {
        "weight": args.weight,
        "predictions": args.predictions,
        "dataset_root": str(args.dataset_root),
        "split": args.split,
        "latent_type": args.latent_type,
        "thresholds": point.to_dict() if point else None,
    }
    write_json(out / "report.json", report)
    plot_pr_curve(report, out / "pr_curve.png")
    print(format_report(report, warnings=False))
    for warning in report["warnings"]:
        print(f"latentface evaluate: warning: {warning}", file=sys.stderr)
    print(f"-> {out / 'report.json'}, {out / 'pr_curve.png'}" + (f", {out / 'widerface'}/" if args.weight else ""))
    return 0
