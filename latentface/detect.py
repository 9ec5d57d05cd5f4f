"""Detection from latents: the :class:`Detector` API and the ``latentface detect`` command.

``latentface detect --latent FILE|DIR --weight W [--conf --nms --topk --keep] --output PATH``
writes the detections as JSON (boxes, scores, landmarks in input-image pixels: 640x640
for a 40x40 latent) and a picture of them. Operating points come from, in increasing
precedence: the defaults (display confidence 0.6; 0.02 for ``--format widerface``), a
thresholds JSON (``--thresholds``, as the tuner saves it), the flags given.

Pictures are honest about what they show. Over a real image only when one is given
(``--image``) or stored in the dataset layout (``<split>/images/<key>.png``); over the
decoded latent only when its codec is known (``--codec`` or the layout's ``codec.json``);
otherwise over a false-colour view of the latent itself (:func:`latentface.viz.latent_pca_image`).
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentface.checkpoint import CheckpointError
from latentface.inference.detector import Detector, detect_files, load_model_latent, predict_dataset  # noqa: F401
from latentface.inference.operating_point import DISPLAY_CONF, EVAL_CONF, OperatingPoint

#: The keys of a thresholds JSON (``{"conf": .., "nms": .., "topk": .., "keep": ..}``) and their defaults.
THRESHOLD_DEFAULTS = {"conf": DISPLAY_CONF, "nms": 0.4, "topk": 5000, "keep": 750}
BACKGROUNDS = ("auto", "image", "decoded", "latent")
_RATE_FILE = re.compile(r"latent_\d+\.npy")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


# ----------------------------------------------------------------------- thresholds


def _check_thresholds(values: Any, source: str) -> dict[str, float | int]:
    if not isinstance(values, Mapping):
        raise ValueError(f"{source}: thresholds must be a JSON object like {json.dumps(THRESHOLD_DEFAULTS)}")
    out: dict[str, float | int] = {}
    for key, value in values.items():
        if key not in THRESHOLD_DEFAULTS:
            raise ValueError(f"{source}: unknown threshold {key!r}; expected some of {list(THRESHOLD_DEFAULTS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{source}: threshold {key!r} must be a number, got {value!r}")
        if key in ("conf", "nms"):
            if not 0 <= value <= 1:
                raise ValueError(f"{source}: threshold {key!r} must lie in [0, 1], got {value}")
            out[key] = float(value)
        else:
            if value != int(value) or value < 1:
                raise ValueError(f"{source}: threshold {key!r} must be a positive integer, got {value}")
            out[key] = int(value)
    return out


def load_thresholds(path: str | os.PathLike) -> dict[str, float | int]:
    """Read a thresholds JSON (any subset of conf, nms, topk, keep); a clear error names a bad file."""
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"thresholds file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a JSON thresholds file ({exc})") from None
    return _check_thresholds(values, str(path))


def save_thresholds(path: str | os.PathLike, conf: float, nms: float = 0.4, topk: int = 5000,
                    keep: int = 750) -> Path:
    """Write the operating point that :func:`load_thresholds` and ``--thresholds`` read."""
    values = _check_thresholds({"conf": conf, "nms": nms, "topk": topk, "keep": keep}, "save_thresholds")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=1) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------- latent files


def latent_key(path: str | os.PathLike) -> str:
    """The image key of a latent file: its folder's name in the retina-modify layout
    (``<key>/latent_75.npy``), otherwise the file name without extension."""
    path = Path(path)
    return path.parent.name if _RATE_FILE.fullmatch(path.name) else path.stem


def find_latents(path: str | os.PathLike, latent_type: str = "latent_75.npy") -> list[Path]:
    """The latent files to run on: ``path`` itself, or every ``latent_type`` file under the folder
    ``path`` (a dataset root, a split, a ``latent/`` folder); a folder without rate files, such
    as a flat folder of ``<key>.npy``, gives all its ``.npy`` files. Sorted; keys must be unique."""
    from latentface.data.layout import rate_file

    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"latent not found: {path}")
    name = rate_file(latent_type)
    files = sorted(path.rglob(name))
    if not files:
        every = sorted(path.rglob("*.npy"))
        rates = sorted({p.name for p in every if _RATE_FILE.fullmatch(p.name)})
        if rates:
            raise FileNotFoundError(f"{path}: no {name} files (found {', '.join(rates)}; pass --latent_type)")
        files = every
    if not files:
        raise FileNotFoundError(f"{path}: no .npy latent files")
    seen: dict[str, Path] = {}
    for file in files:
        key = latent_key(file)
        if key in seen:
            raise ValueError(f"{file}: key {key!r} is also the key of {seen[key]}; run on one split at a time")
        seen[key] = file
    return files


def layout_of(path: str | os.PathLike) -> tuple[Path, str] | None:
    """(dataset root, split) when ``path`` is ``<root>/<split>/latent/<key>/<file>.npy``."""
    path = Path(path).resolve()
    if len(path.parents) >= 4 and path.parents[1].name == "latent":
        return path.parents[3], path.parents[2].name
    return None


def _find_image(image: str | os.PathLike | None, latent: Path, key: str) -> Path | None:
    """The RGB image for a latent: ``image`` (a file, or a folder with ``<key>.png`` etc.) or the layout's."""
    if image is not None:
        image = Path(image)
        if image.is_file():
            return image
        if not image.is_dir():
            raise FileNotFoundError(f"image not found: {image}")
        for suffix in _IMAGE_SUFFIXES:
            if (image / f"{key}{suffix}").is_file():
                return image / f"{key}{suffix}"
        return None
    layout = layout_of(latent)
    if layout is not None:
        from latentface.data.layout import image_path

        candidate = image_path(layout[0], layout[1], key)
        if candidate.is_file():
            return candidate
    return None


def known_codec(latent: str | os.PathLike, codec: str | None = None) -> str | None:
    """The codec that decodes ``latent``: ``codec`` if given, else the layout's ``codec.json``, else None."""
    if codec:
        return codec
    layout = layout_of(latent)
    if layout is None:
        return None
    from latentface.data.layout import read_codec_name

    return read_codec_name(layout[0])


def picture_background(latent_file: str | os.PathLike, latent: torch.Tensor | np.ndarray, background: str = "auto",
                       image: str | os.PathLike | None = None, codec: str | None = None) -> tuple[np.ndarray, str]:
    """(RGB uint8 image, what it is) to draw detections on.

    ``background``: ``image`` (``image`` or the layout's RGB image), ``decoded`` (the latent
    decoded with ``codec`` or the layout's codec), ``latent`` (false-colour PCA view), or
    ``auto``: the first of those that is available. An explicitly requested background that is
    not available is an error naming the file.
    """
    from latentface import viz

    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    latent_file = Path(latent_file)
    key = latent_key(latent_file)
    arr = latent.cpu().numpy() if torch.is_tensor(latent) else np.asarray(latent)
    if background in ("auto", "image"):
        found = _find_image(image, latent_file, key)
        if found is not None:
            return viz.read_image(found), f"image {found.name}"
        if background == "image":
            raise FileNotFoundError(f"{latent_file}: no RGB image for key {key!r} (pass --image FILE or DIR)")
    if background in ("auto", "decoded"):
        name = known_codec(latent_file, codec)
        if name is not None:
            from latentface.codec import get_codec

            try:
                return get_codec(name).decode(arr), f"decoded ({name} codec)"
            except ValueError as exc:
                raise ValueError(f"{latent_file}: cannot decode with the {name!r} codec: {exc}") from None
        if background == "decoded":
            raise ValueError(f"{latent_file}: its codec is unknown (no codec.json in its dataset root); "
                             "pass --codec dct if it was written by the built-in codec")
    return viz.latent_pca_image(arr), "latent (PCA false colour)"


def detection_record(key: str, image_size: tuple[int, int], det: Mapping[str, np.ndarray],
                     latent: str | os.PathLike | None = None) -> dict:
    """The JSON object of one image: image key, [h, w], detections with box, score, landmarks."""
    record: dict[str, Any] = {"image": key}
    if latent is not None:
        record["latent"] = str(latent)
    record["image_size"] = [int(image_size[0]), int(image_size[1])]
    record["detections"] = [
        {"box": [round(float(v), 2) for v in box], "score": round(float(score), 5),
         "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in lms]}
        for box, score, lms in zip(det["boxes"], det["scores"], det["landmarks"])
    ]
    return record


def detections_json(records: dict | list[dict]) -> str:
    """JSON text of one :func:`detection_record` or a list of them, one detection per line
    (readable and diff-able where an indented dump would spread a box over six lines)."""

    def one(record: dict) -> str:
        head = json.dumps({k: v for k, v in record.items() if k != "detections"})[:-1]
        dets = ",\n  ".join(json.dumps(d) for d in record["detections"])
        return f'{head}, "detections": [' + (f"\n  {dets}\n" if dets else "") + "]}"

    if isinstance(records, dict):
        return one(records) + "\n"
    return "[\n" + ",\n".join(one(r) for r in records) + "\n]\n"


# ---------------------------------------------------------------------- command line


def configure_parser(parser) -> None:
    from latentface.cli import flag

    parser.add_argument(*flag("--latent"), dest="latent", required=True, metavar="FILE|DIR",
                        help="a latent .npy ([1,C,H,W] or [C,H,W]) or a folder searched for --latent_type files")
    parser.add_argument(*flag("--weight"), dest="weight", required=True, metavar="PTH", help="latentface checkpoint")
    parser.add_argument(*flag("--network"), dest="network", default=None,
                        help="backbone name, checked against the checkpoint (the architecture comes from it)")
    parser.add_argument(*flag("--thresholds"), dest="thresholds", default=None, metavar="JSON",
                        help='operating point {"conf", "nms", "topk", "keep"} (the tuner saves one); flags override it')
    parser.add_argument("--conf", type=float, default=None,
                        help=f"score threshold (default {DISPLAY_CONF}; {EVAL_CONF} with --format widerface)")
    parser.add_argument("--nms", type=float, default=None, help="NMS IoU (default 0.4)")
    parser.add_argument("--topk", type=int, default=None, help="boxes kept before NMS (default 5000)")
    parser.add_argument("--keep", type=int, default=None, help="boxes kept after NMS (default 750)")
    parser.add_argument(*flag("--output"), dest="output", default="runs/detect", metavar="PATH",
                        help="a folder (default runs/detect); for one latent also a .json file (picture beside it)")
    parser.add_argument("--format", choices=("json", "widerface"), default="json",
                        help="json (default) or widerface: the per-image text files of the official WIDER evaluation")
    parser.add_argument(*flag("--latent_type"), dest="latent_type", default="latent_75.npy",
                        help="file searched for in folders (default latent_75.npy)")
    parser.add_argument("--image", default=None, metavar="FILE|DIR",
                        help="original image (or folder of <key>.png/.jpg) to draw on")
    parser.add_argument("--codec", default=None,
                        help="codec of the latents, to draw on the decoded image (default: the layout's codec.json)")
    parser.add_argument("--background", choices=BACKGROUNDS, default="auto",
                        help="picture background: image, decoded, latent (false colour) or auto (first available)")
    parser.add_argument(*flag("--max_pictures"), dest="max_pictures", type=int, default=100,
                        help="pictures drawn at most (default 100; 0: none)")
    parser.add_argument(*flag("--batch_size"), dest="batch_size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(*flag("--on_bad_latent"), dest="on_bad_latent", choices=("raise", "skip"), default="raise",
                        help="a bad latent file stops the run (raise, default) or is skipped and counted")
    parser.add_argument(*flag("--no_progress"), dest="no_progress", action="store_true")


def resolve_thresholds(args, default_conf: float | None = None) -> dict[str, float | int]:
    """Defaults < ``--thresholds`` file < flags given (``conf``, ``nms``, ``topk``, ``keep`` of ``args``).

    The default confidence is ``default_conf`` when given, else the display threshold, or the
    evaluation threshold for ``--format widerface``.
    """
    values = dict(THRESHOLD_DEFAULTS)
    if default_conf is not None:
        values["conf"] = default_conf
    elif getattr(args, "format", "json") == "widerface":
        values["conf"] = EVAL_CONF
    if args.thresholds:
        values.update(load_thresholds(args.thresholds))
    given = {key: getattr(args, key) for key in THRESHOLD_DEFAULTS if getattr(args, key, None) is not None}
    values.update(_check_thresholds(given, "command line"))
    return values


def _wider_names(files: list[Path]) -> dict[str, str]:
    """key -> ``event/image.jpg`` from each split's labels.txt when the files are in a layout."""
    from latentface.data.labels import read_labels
    from latentface.data.layout import LABELS_FILE

    names: dict[str, str] = {}
    read: set[Path] = set()
    for file in files:
        layout = layout_of(file)
        labels = layout[0] / layout[1] / LABELS_FILE if layout else None
        if labels is not None and labels not in read and labels.is_file():
            read.add(labels)
            names.update({key: rec.name for key, rec in read_labels(labels).items()})
    return {latent_key(f): names.get(latent_key(f), f"{latent_key(f)}.jpg") for f in files}


def run(args) -> int:
    from latentface.data.dataset import BadLatentError

    try:
        return _run(args)
    except (CheckpointError, BadLatentError, OSError, ValueError) as exc:
        raise SystemExit(f"latentface detect: {exc}") from None


def _run(args) -> int:
    from latentface import viz
    from latentface.evaluate import write_widerface_predictions

    thresholds = resolve_thresholds(args)
    detector = Detector.from_checkpoint(args.weight, device=args.device, point=OperatingPoint.from_mapping(thresholds))
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
    picture_min = thresholds["conf"] if args.format == "json" else max(thresholds["conf"], DISPLAY_CONF)

    records, predictions, skipped, pictures = [], {}, {}, 0
    for file, latent, det in detect_files(detector, files, args.batch_size, args.on_bad_latent,
                                          progress=not args.no_progress and not single, skipped=skipped):
        key = latent_key(file)
        size = detector.model.image_size(latent)
        records.append(detection_record(key, size, det, file))
        predictions[key] = np.concatenate([det["boxes"], det["scores"][:, None]], axis=1)
        if pictures < args.max_pictures:
            rgb, _ = picture_background(file, latent, args.background, args.image, args.codec)
            drawn = viz.draw_detections(rgb, det, input_size=size, min_score=picture_min)
            viz.save_image(json_path.with_suffix(".png") if json_path else picture_dir / f"{key}.png", drawn)
            pictures += 1

    if args.format == "widerface":
        written = write_widerface_predictions(predictions, output / "widerface", _wider_names(files))
        where = f"{len(written)} WIDER text files under {output / 'widerface'}"
    else:
        if json_path is None:
            json_path = output / (f"{latent_key(source)}.json" if single else "detections.json")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(detections_json(records[0] if single else records))
        where = str(json_path)
    faces = sum(len(r["detections"]) for r in records)
    print(f"{len(records)} latent(s), {faces} face(s) at conf >= {thresholds['conf']:g} -> {where}"
          + (f"; {pictures} picture(s)" if pictures else "")
          + (f"; {len(skipped)} bad latent(s) skipped" if skipped else ""))
    for path, reason in list(skipped.items())[:5]:
        print(f"  skipped {reason}")
    return 0
