"""``latentface detect``: faces in latent files, as JSON or WIDER text files, with pictures.

``latentface detect --latent FILE|DIR --weight W [--conf --nms --topk --keep] --output PATH``
writes the detections as JSON (boxes, scores, landmarks in input-image pixels: 640x640
for a 40x40 latent) and a picture of them. Operating points come from, in increasing
precedence: the defaults (display confidence 0.6; 0.02 for ``--format widerface``), a
thresholds JSON (``--thresholds``, as the tuner saves it), the flags given. Pictures are drawn
over the image, the decoded latent or a false-colour view of it (:mod:`latentface.inference.pictures`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from latentface import viz
from latentface.cli.args import add_device, add_operating_point, add_progress, flag, operating_point
from latentface.data.dataset import BadLatentError
from latentface.data.labels import read_labels
from latentface.data.layout import LABELS_FILE, find_latents, latent_key, layout_of
from latentface.formats.detections import DetectionStream, detection_record, write_detections
from latentface.formats.widerface import write_widerface_predictions
from latentface.inference.detector import ON_BAD_LATENT, Detector, detect_files
from latentface.inference.operating_point import DISPLAY_CONF, EVAL_CONF
from latentface.inference.pictures import BACKGROUNDS, picture_background
from latentface.util.io import write_image


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        *flag("--latent"),
        dest="latent",
        required=True,
        metavar="FILE|DIR",
        help="a latent .npy ([1,C,H,W] or [C,H,W]) or a folder searched for --latent_type files",
    )
    parser.add_argument(*flag("--weight"), dest="weight", required=True, metavar="PTH", help="latentface checkpoint")
    parser.add_argument(
        *flag("--network"),
        dest="network",
        default=None,
        help="backbone name, checked against the checkpoint (the architecture comes from it)",
    )
    add_operating_point(parser, default_conf=f"{DISPLAY_CONF}; {EVAL_CONF} with --format widerface")
    parser.add_argument(
        *flag("--output"),
        dest="output",
        default="runs/detect",
        metavar="PATH",
        help="a folder (default runs/detect); for one latent also a .json file (picture beside it)",
    )
    parser.add_argument(
        "--format",
        choices=("json", "widerface"),
        default="json",
        help="json (default) or widerface: the per-image text files of the official WIDER evaluation",
    )
    parser.add_argument(
        *flag("--latent_type"),
        dest="latent_type",
        default="latent_75.npy",
        help="file searched for in folders (default latent_75.npy)",
    )
    parser.add_argument(
        "--image", default=None, metavar="FILE|DIR", help="original image (or folder of <key>.png/.jpg) to draw on"
    )
    parser.add_argument(
        "--codec",
        default=None,
        help="codec of the latents, to draw on the decoded image (default: the layout's codec.json)",
    )
    parser.add_argument(
        "--background",
        choices=BACKGROUNDS,
        default="auto",
        help="picture background: image, decoded, latent (false colour) or auto (first available)",
    )
    parser.add_argument(
        *flag("--max_pictures"),
        dest="max_pictures",
        type=int,
        default=100,
        help="pictures drawn at most (default 100; 0: none)",
    )
    parser.add_argument(*flag("--batch_size"), dest="batch_size", type=int, default=8)
    add_device(parser)
    parser.add_argument(
        *flag("--on_bad_latent"),
        dest="on_bad_latent",
        choices=ON_BAD_LATENT,
        default="raise",
        help="a bad latent file stops the run (raise, default) or is skipped and counted",
    )
    add_progress(parser)


def _wider_names(files: list[Path]) -> dict[str, str]:
    """key -> ``event/image.jpg`` from each split's labels.txt when the files are in a layout."""
    names: dict[str, str] = {}
    read: set[Path] = set()
    for file in files:
        layout = layout_of(file)
        labels = layout[0] / layout[1] / LABELS_FILE if layout else None
        if labels is not None and labels not in read and labels.is_file():
            read.add(labels)
            names.update({key: rec.name for key, rec in read_labels(labels).items()})
    return {latent_key(f): names.get(latent_key(f), f"{latent_key(f)}.jpg") for f in files}


def run(args: argparse.Namespace) -> int:
    point = operating_point(args, evaluation=args.format == "widerface")
    detector = Detector.from_checkpoint(args.weight, device=args.device, point=point)
    config = detector.model.config
    if config.get("kind") != "latent":
        raise ValueError(f"{args.weight}: holds an RGB baseline model; detect reads latents")
    if args.network and args.network.lower() != config["backbone"].lower():
        raise ValueError(f"{args.weight}: holds a {config['backbone']} model, but --network says {args.network}")

    source = Path(args.latent)
    files = find_latents(source, args.latent_type)
    output = Path(args.output)
    single = source.is_file()
    if single and output.suffix.lower() == ".json":
        json_path, picture_dir = output, None
    else:
        json_path, picture_dir = None, output if single else output / "pictures"
    picture_min = point.conf if args.format == "json" else max(point.conf, DISPLAY_CONF)
    if args.format == "widerface":
        names, wider_dir = _wider_names(files), output / "widerface"
        where = f"WIDER text files under {wider_dir}"
    elif json_path is None:
        json_path = output / (f"{latent_key(source)}.json" if single else "detections.json")
        where = str(json_path)
    else:
        where = str(json_path)

    # results go to disk as they come (a folder's JSON list is flushed per image and closed on any
    # stop), so a bad file or an interruption keeps every result before it
    written, faces, skipped, pictures = 0, 0, {}, 0
    stream = DetectionStream(json_path) if args.format == "json" and not single else None
    try:
        for file, latent, det in detect_files(
            detector,
            files,
            args.batch_size,
            args.on_bad_latent,
            progress=not args.no_progress and not single,
            skipped=skipped,
        ):
            key = latent_key(file)
            size = detector.model.image_size(latent)
            record = detection_record(key, size, det, file)
            if args.format == "widerface":
                rows = np.concatenate([det["boxes"], det["scores"][:, None]], axis=1)
                write_widerface_predictions({key: rows}, wider_dir, names)
            elif stream is not None:
                stream.write(record)
            else:
                write_detections(json_path, record)
            written += 1
            faces += len(record["detections"])
            if pictures < args.max_pictures:
                rgb, _ = picture_background(file, latent, args.background, args.image, args.codec)
                drawn = viz.draw_detections(rgb, det, input_size=size, min_score=picture_min)
                write_image(picture_dir / f"{key}.png" if picture_dir else json_path.with_suffix(".png"), drawn)
                pictures += 1
    except BadLatentError as exc:
        if single:
            raise
        raise BadLatentError(
            f"{exc}; the {written} result(s) before it are in {where}; "
            "--on_bad_latent skip skips bad latents and goes on"
        ) from None
    finally:
        if stream is not None:
            stream.close()

    if args.format == "widerface":
        where = f"{written} {where}"
    print(
        f"{written} latent(s), {faces} face(s) at conf >= {point.conf:g} -> {where}"
        + (f"; {pictures} picture(s)" if pictures else "")
        + (f"; {len(skipped)} bad latent(s) skipped" if skipped else "")
    )
    for reason in list(skipped.values())[:5]:
        print(f"  skipped {reason}")
    return 0
