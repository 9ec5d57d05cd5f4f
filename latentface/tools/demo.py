"""``latentface demo``: the whole pipeline on a CPU in minutes, ending in ``runs/demo/report.md``.

Steps: make (or reuse) the synthetic dataset, train a small latent RetinaFace, evaluate it on
the validation split with the WIDER protocol, run detection on a few validation latents and
draw the faces over the decoded image and over a false-colour view of the latent, then write
a report with every number and picture (``report.md``; every number also in ``demo.json``,
from which :func:`summary_line` writes the one-line summary the README quotes).
``--dataset_root`` runs the same steps on a real dataset in the retina-modify layout.
``--codec learned`` makes the synthetic latents with the learned codec instead of ``dct``; the
synthetic folder's name carries the codec (``data/synthetic-demo-<codec>``) so the two never mix,
and ``demo.json`` records the codec (and the learned codec's weights digest).

The data and training settings are the ``demo`` and ``demo-quick`` entries of
:data:`latentface.training.recipes.RECIPES`, chosen by measurement on 2 CPU cores (see the README).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from latentface import viz
from latentface.checkpoint import RunDir, load_checkpoint
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.data.layout import CODEC_FILE, codec_identity, read_codec_description, read_codec_name
from latentface.data.synth import generate_dataset
from latentface.formats.detections import detection_record, write_detections
from latentface.inference.detector import Detector
from latentface.inference.evaluate import evaluate_checkpoint
from latentface.inference.operating_point import OperatingPoint
from latentface.inference.pictures import picture_background
from latentface.metrics.report import evaluation_report, format_report, plot_pr_curve
from latentface.training import TrainConfig, TrainingError, train
from latentface.training.recipes import RECIPES, Recipe
from latentface.util.io import read_json, write_image, write_json

#: The demo's goal: WIDER AP@0.5 on the synthetic validation split.
AP_TARGET = 0.80
#: Validation images drawn with their detections, per recipe.
PICTURES = {"full": 4, "quick": 2}
#: The recipe of a full demo run and of ``--quick``.
RECIPE, QUICK_RECIPE = "demo", "demo-quick"
#: The full demo's recipe per codec: the learned latent needs more steps for the same target.
CODEC_RECIPES = {"dct": RECIPE, "learned": "demo-learned"}
#: What a demo run writes in its output folder (besides ``train/``, the training run).
SUMMARY_FILE = "demo.json"
REPORT_FILE = "report.md"
DETECTIONS_FILE = "detections.json"
EVAL_REPORT = Path("eval") / "report.json"
TRAIN_CONFIG_FILE = "train_config.json"
TRAIN_RUN = "train"


# ---------------------------------------------------------------------------- steps


def default_synthetic_root(quick: bool = False, codec: str = "dct") -> Path:
    """Where the demo makes or reuses its synthetic dataset: one folder per recipe and codec."""
    return Path("data") / f"synthetic-demo{'-quick' if quick else ''}-{codec}"


def synthetic_dataset(root: str | Path, recipe: Recipe, progress: bool = True, codec: str = "dct") -> tuple[Path, bool]:
    """(root, reused): the synthetic dataset of ``recipe`` encoded with ``codec``, generated unless ``root``
    already holds it (same size, rates, seed, codec and, for ``learned``, the same weights)."""
    root = Path(root)
    wanted = {"size": recipe.size, "rates": list(recipe.rates), "seed": recipe.seed, **codec_identity(codec)}
    marker = root / CODEC_FILE
    if marker.is_file():
        try:
            saved = read_json(marker, "dataset description")
        except ValueError:
            saved = {}
        folders = {split: root / split / "latent" for split in ("train", "val")}
        counts = {
            split: sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0 for split, folder in folders.items()
        }
        if {k: saved.get(k) for k in wanted} == wanted and counts == {"train": recipe.n_train, "val": recipe.n_val}:
            return root, True
    generate_dataset(root, **recipe.data(), progress=progress, overwrite=True, workers=2, codec=codec)
    return root, False


def training_processes(device: str | None = None) -> int:
    """Training processes for this machine: one per CPU core (up to 2) on a CPU, else one.

    On a CPU the demo trains with one single-threaded process per core (DDP over gloo) rather
    than one process with a thread per core: intra-op threads wait for each other hundreds of
    times per step, so any other busy process on the machine stalls them all (measured: 3x
    slower with one competing process), while two processes meet only once per step.
    """
    if device not in (None, "auto", "cpu") or (device != "cpu" and torch.cuda.is_available()):
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def train_model(
    dataset_root: Path,
    out: Path,
    recipe: Recipe,
    latent_type: str,
    progress: bool = True,
    processes: int = 1,
    **overrides,
) -> Path:
    """Train into ``out/train`` (replaced if present) and return the run directory.

    ``recipe.train["batch_size"]`` is the batch of one optimisation step, split over ``processes``
    DDP processes (``torchrun``) when there are several.
    """
    run_dir = out / TRAIN_RUN
    if run_dir.exists():
        shutil.rmtree(run_dir)
    settings = {**recipe.train, **{k: v for k, v in overrides.items() if v is not None}}
    settings.update(
        dataset_root=str(dataset_root),
        latent_type=latent_type,
        out=str(out),
        name=TRAIN_RUN,
        workers=0,
        keep_epochs=1,
        no_wandb=True,
        progress=progress,
        seed=recipe.seed,
    )
    if processes == 1:
        return train(TrainConfig(**settings).validate())
    settings.update(batch_size=max(1, settings["batch_size"] // processes), device=settings.get("device") or "cpu")
    TrainConfig(**settings).validate()
    config_file = write_json(out / TRAIN_CONFIG_FILE, settings)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(processes),
        "-m",
        "latentface.train",
        "--config",
        str(config_file),
    ]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0 or not RunDir(run_dir).final.is_file():
        raise TrainingError(
            f"training in {processes} processes failed (exit status {done.returncode}); "
            f"its messages are above, its settings in {config_file}"
        )
    return run_dir


def _grid(pictures: list[np.ndarray], columns: int = 2) -> np.ndarray:
    """Pictures of one size side by side, ``columns`` per row, with a 4-pixel white gutter."""
    h, w = pictures[0].shape[:2]
    rows = math.ceil(len(pictures) / columns)
    grid = np.full((rows * (h + 4) - 4, columns * (w + 4) - 4, 3), 255, np.uint8)
    for i, picture in enumerate(pictures):
        r, c = divmod(i, columns)
        grid[r * (h + 4) : r * (h + 4) + h, c * (w + 4) : c * (w + 4) + w] = picture
    return grid


def detection_pictures(weight: Path, dataset, out: Path, count: int) -> dict[str, Any]:
    """Detect on the first ``count`` validation latents; write the detections JSON and two picture grids:
    faces over the decoded image (when the codec is known, else the stored image) and over the latent view."""
    detector = Detector.from_checkpoint(weight, point=OperatingPoint())
    files = [dataset.latent_files(i)[0] for i in range(min(count, len(dataset)))]
    latents = [dataset[i][0] for i in range(len(files))]
    dets = detector(np.stack([latent.numpy() for latent in latents]))
    decoded, viewed, records = [], [], []
    backgrounds = set()
    for file, latent, det in zip(files, latents, dets):
        key = file.parent.name
        size = detector.model.image_size(latent)
        shown = (size[0] * max(1, 400 // size[0]), size[1] * max(1, 400 // size[0]))  # small images drawn larger
        truth = dataset.records[key].boxes
        records.append(detection_record(key, size, det, file))
        try:
            rgb, what = picture_background(file, latent, "decoded")
        except ValueError:  # codec unknown (real JPEG AI latents): the stored image if there is one
            rgb, what = picture_background(file, latent, "auto")
        if not what.startswith("latent"):
            backgrounds.add(what.split(" ")[0])
            rgb = cv2.resize(rgb, shown[::-1], interpolation=cv2.INTER_LINEAR)
            decoded.append(viz.draw_detections(rgb, det, input_size=size, truth=truth))
        view = viz.latent_pca_image(latent, size=shown)
        viewed.append(viz.draw_detections(view, det, input_size=size, truth=truth))
    write_detections(out / DETECTIONS_FILE, records)
    written = {}
    if decoded:
        written["decoded"] = write_image(out / "detections_decoded.png", _grid(decoded)).name
    written["latent"] = write_image(out / "detections_latent.png", _grid(viewed)).name
    return {
        "pictures": written,
        "background": sorted(backgrounds),
        "faces_shown": int(sum(len(d["scores"]) for d in dets)),
        "conf": detector.point.conf,
    }


# ----------------------------------------------------------------------------- report


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_report(out: Path, summary: dict[str, Any]) -> Path:
    """``report.md``: the numbers, the timings and the pictures of one demo run."""
    ev, data, timings, cfg = summary["evaluation"], summary["dataset"], summary["timings_s"], summary["train_config"]
    by_size = ev["ap_by_size"]
    target = summary["targets"]["ap"]
    origin = ("synthetic, " + ("reused" if data["reused"] else "generated")) if data["synthetic"] else "given"
    codec = summary.get("codec") or {}
    origin += f", {codec['codec']} codec" if codec.get("codec") else ", codec unknown"
    lines = [
        "# latentface demo",
        "",
        f"Dataset: `{data['root']}` ({origin}), "
        f"{data['train_images']} training and {data['val_images']} validation images of "
        f"{data['image_size']}x{data['image_size']} pixels (latents {data['latent_shape']}).",
        "",
        f"Model: {cfg['model']} backbone ({cfg['arch']}), bridge `{cfg['bridge']}`, neck width {cfg['out_channels']}, "
        f"anchors `{cfg['anchors']}`; trained {summary['training']['epochs']:g} epochs ({summary['training']['steps']} "
        f"steps, batch {cfg['batch_size'] * summary['training_processes']}, lr {cfg['lr']:g}) on {summary['device']}"
        + (f" in {summary['training_processes']} processes." if summary["training_processes"] > 1 else "."),
        "",
        "## Results on the validation split",
        "",
        "| metric | value |",
        "|---|---|",
        f"| WIDER AP@0.5 (target >= {target:.2f}) | **{ev['ap']:.4f}** |",
        *[f"| AP {name} faces ({info['faces']}) | {_fmt(info['ap'], 4)} |" for name, info in by_size.items()],
        f"| COCO mAP@[.5:.95] | {_fmt(ev.get('coco', {}).get('mAP'), 4)} |",
        f"| COCO AP50 | {_fmt(ev.get('coco', {}).get('AP50'), 4)} |",
        f"| faces / ignored / predictions | {ev['faces']} / {ev['ignored_faces']} / {ev['predictions']} |",
        "",
        "## Time (seconds)",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:.1f} |" for name, seconds in timings.items()],
        "",
        "## Pictures",
        "",
        "Loss components, validation AP and learning rate per epoch:",
        "",
        "![training curves](curves.png)",
        "",
        "Precision-recall curve of the final weights (WIDER protocol):",
        "",
        "![precision-recall](pr_curve.png)",
        "",
    ]
    pictures = summary["detections"]["pictures"]
    shown = (
        f"Detections at confidence >= {summary['detections']['conf']:g} (orange, with landmarks) and the "
        "labelled faces (green)"
    )
    if "decoded" in pictures:
        lines += [
            f"{shown} over the {' / '.join(summary['detections']['background'])} image:",
            "",
            f"![detections over the image]({pictures['decoded']})",
            "",
        ]
    lines += [
        f"{shown} over a false-colour view of the latent itself (first three principal components of "
        "its channels, one 16x16 block per latent cell):",
        "",
        f"![detections over the latent]({pictures['latent']})",
        "",
        f"Every number is in `{SUMMARY_FILE}`; the training run (checkpoints, metrics.csv, config.json) is "
        f"in `{TRAIN_RUN}/`; the evaluation report in `{EVAL_REPORT.as_posix()}`.",
        "",
    ]
    path = out / REPORT_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _seconds(timings: dict[str, float], step: str) -> float | None:
    """A step's seconds; the dataset step is named ``dataset (reused)`` when nothing was generated."""
    return next((v for k, v in timings.items() if k == step or k.startswith(step + " ")), None)


def summary_line(summary: dict[str, Any]) -> str:
    """The demo's figures in one sentence, as the README quotes them, from a ``demo.json`` summary."""
    ev, timings = summary["evaluation"], summary["timings_s"]
    total = timings["total"]
    named = (("dataset", "dataset"), ("training", "train"), ("evaluation", "evaluate"), ("pictures", "detect and draw"))
    steps = [(label, _seconds(timings, step)) for label, step in named]
    sizes = {"tiny": "tiny (<16 px)", "small": "small", "medium": "medium", "large": "large"}
    by_size = ", ".join(
        f"{label} {_fmt(ev['ap_by_size'][k]['ap'])}" for k, label in sizes.items() if k in ev["ap_by_size"]
    )
    met = "met" if summary["targets"]["ap_met"] else "not met"
    return (
        f"{int(total // 60)} min {total % 60:.0f} s in all ("
        + ", ".join(f"{label} {s:.0f} s" for label, s in steps if s is not None)
        + f"); WIDER AP@0.5 {ev['ap']:.3f} on the {summary['dataset']['val_images']} validation images "
        f"(target {summary['targets']['ap']:.2f}: {met}), COCO mAP@[.5:.95] {_fmt(ev.get('coco', {}).get('mAP'))}; "
        f"by face height {by_size}."
    )


def read_summary(out: str | Path = "runs/demo") -> dict[str, Any]:
    """The ``demo.json`` of a finished demo run."""
    return read_json(Path(out) / SUMMARY_FILE, "demo summary")


# ------------------------------------------------------------------------------- driver


def run_demo(
    out: str | Path = "runs/demo",
    dataset_root: str | Path | None = None,
    synthetic_root: str | Path | None = None,
    quick: bool = False,
    latent_type: str = "latent_75.npy",
    progress: bool = True,
    processes: int | None = None,
    codec: str | None = None,
    **train_overrides,
) -> dict[str, Any]:
    """Run every step and return the summary that ``demo.json`` holds.

    ``quick`` uses the ``demo-quick`` recipe instead of ``demo`` (``demo-learned`` on the learned
    codec's latents, :data:`CODEC_RECIPES`); ``processes`` trains in that
    many DDP processes (default: :func:`training_processes`, one with ``quick``). ``codec``
    (default ``dct``) encodes the synthetic dataset (in ``synthetic_root``, default
    :func:`default_synthetic_root`); with ``dataset_root`` the dataset's own ``codec.json`` names
    its codec, and a ``codec`` that contradicts it is an error.
    """
    if processes is not None and processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    made_by = read_codec_name(dataset_root) if dataset_root is not None else None
    if dataset_root is not None and codec is not None and made_by != codec:
        raise ValueError(
            f"{dataset_root}: its latents were written by the {made_by or 'unknown'} codec "
            f"({CODEC_FILE}), not {codec}; leave out --codec with --dataset_root"
        )
    name = QUICK_RECIPE if quick else CODEC_RECIPES.get(made_by or codec or "dct", RECIPE)
    recipe = RECIPES[name]
    codec = codec or "dct"
    codec_identity(codec)  # an unknown codec fails here, before any step
    torch.set_num_threads(1)  # see training_processes: one thread per process is robust on a shared CPU
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def step(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)
        print(f"[demo] {name}: {timings[name]:.1f} s", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    if dataset_root is None:
        root, reused = synthetic_dataset(
            synthetic_root or default_synthetic_root(quick, codec), recipe, progress, codec
        )
        latent_type = f"latent_{recipe.rates[0]}.npy"
    else:
        root, reused = Path(dataset_root), True
    step("dataset" + (" (reused)" if reused else ""), t0)

    t0 = time.perf_counter()
    if processes is None:
        processes = 1 if quick else training_processes(train_overrides.get("device"))
    run_dir = RunDir(train_model(root, out, recipe, latent_type, progress, processes, **train_overrides))
    step("train", t0)
    payload = load_checkpoint(run_dir.final)
    history = payload["metrics"]

    t0 = time.perf_counter()
    predictions, _, val = evaluate_checkpoint(run_dir.final, root, "val", latent_type, progress=progress)
    report = evaluation_report(predictions, val.records)
    write_json(out / EVAL_REPORT, report)
    plot_pr_curve(report, out / "pr_curve.png")
    step("evaluate", t0)
    print(format_report(report), file=sys.stderr)

    t0 = time.perf_counter()
    detections = detection_pictures(run_dir.final, val, out, PICTURES["quick" if quick else "full"])
    shutil.copyfile(run_dir.curves, out / RunDir.CURVES)
    step("detect and draw", t0)

    timings["total"] = round(time.perf_counter() - start, 1)
    train_config = read_json(run_dir.config, "training config")
    model_config = payload["config"]
    summary = {
        "quick": quick,
        "recipe": name,
        "device": str(torch.device("cuda" if torch.cuda.is_available() and train_config["device"] != "cpu" else "cpu")),
        "training_processes": processes,
        "codec": read_codec_description(root),
        "dataset": {
            "root": str(root),
            "synthetic": dataset_root is None,
            "reused": reused,
            "train_images": len(NestedLatentWiderFaceDataset(root, "train", latent_type)),
            "val_images": len(val),
            "image_size": val.image_size[0],
            "latent_shape": list(val.expected_shape),
            "latent_type": latent_type,
        },
        "train_config": {
            **train_config,
            "arch": f"blocks={model_config.get('blocks')}, light_p2={model_config.get('light_p2')}",
        },
        "training": {"epochs": history[-1]["epoch"], "steps": history[-1]["step"], "history": history},
        "evaluation": {k: v for k, v in report.items() if k != "curves"},
        "detections": detections,
        "timings_s": timings,
        "targets": {"ap": AP_TARGET, "ap_met": report["ap"] >= AP_TARGET},
    }
    write_json(out / SUMMARY_FILE, summary)
    write_report(out, summary)
    return summary
