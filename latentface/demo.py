"""``latentface demo``: the whole pipeline on a CPU in minutes, ending in ``runs/demo/report.md``.

Steps: make (or reuse) the synthetic dataset, train a small latent RetinaFace, evaluate it on
the validation split with the WIDER protocol, run detection on a few validation latents and
draw the faces over the decoded image and over a false-colour view of the latent, then write
a report with every number and picture. ``--dataset_root`` runs the same steps on a real
dataset in the retina-modify layout instead of the synthetic one.

The configuration (:data:`DEMO`) was chosen by measurement on 2 CPU cores: see the README.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np



@dataclass(frozen=True)
class DemoConfig:
    """The synthetic data and the training run of one demo size."""

    n_train: int
    n_val: int
    size: int  # image side in pixels; the latent is size / 16 cells a side
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    pictures: int = 4
    rate: int = 75
    seed: int = 0


DEMO = DemoConfig(
    n_train=1500, n_val=150, size=192,
    train=dict(preset="fast", bridge="codec", out_channels=64, anchors="six", epochs=4, batch_size=8,
               lr=0.02, crop=1.0, time_budget=660.0),
)
#: A smoke-test size: seconds, not a meaningful AP.
QUICK = DemoConfig(
    n_train=8, n_val=4, size=64, pictures=2,
    train=dict(preset="fast", bridge="codec", out_channels=16, epochs=2, batch_size=4, lr=0.01),
)
AP_TARGET = 0.80


# ---------------------------------------------------------------------------- steps


def synthetic_dataset(root: str | Path, config: DemoConfig, progress: bool = True) -> tuple[Path, bool]:
    """(root, reused): the synthetic dataset of ``config``, generated unless ``root`` already holds it."""
    from latentface.data.layout import CODEC_FILE
    from latentface.data.synth import generate_dataset

    root = Path(root)
    wanted = {"size": config.size, "rates": [config.rate], "seed": config.seed}
    marker = root / CODEC_FILE
    if marker.is_file():
        try:
            saved = json.loads(marker.read_text())
        except ValueError:
            saved = {}
        counts = {split: sum(1 for _ in (root / split / "latent").iterdir()) if (root / split / "latent").is_dir() else 0
                  for split in ("train", "val")}
        if {k: saved.get(k) for k in wanted} == wanted and counts == {"train": config.n_train, "val": config.n_val}:
            return root, True
    generate_dataset(root, config.n_train, config.n_val, size=config.size, rates=[config.rate], seed=config.seed,
                     progress=progress, overwrite=True, workers=2)
    return root, False


def training_processes(device: str | None = None) -> int:
    """Training processes for this machine: one per CPU core (up to 2) on a CPU, else one.

    On a CPU the demo trains with one single-threaded process per core (DDP over gloo) rather
    than one process with a thread per core: intra-op threads wait for each other hundreds of
    times per step, so any other busy process on the machine stalls them all (measured: 3x
    slower with one competing process), while two processes meet only once per step.
    """
    import os

    import torch

    if device not in (None, "auto", "cpu") or (device != "cpu" and torch.cuda.is_available()):
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def train_model(dataset_root: Path, out: Path, config: DemoConfig, latent_type: str, progress: bool = True,
                processes: int = 1, **overrides) -> Path:
    """Train into ``out/train`` (replaced if present) and return the run directory.

    ``config.train["batch_size"]`` is the batch of one optimisation step, split over ``processes``
    DDP processes (``torchrun``) when there are several.
    """
    import os
    import subprocess

    from latentface.train import TrainConfig, TrainingError, train

    run_dir = out / "train"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    settings = {**config.train, **{k: v for k, v in overrides.items() if v is not None}}
    settings.update(dataset_root=str(dataset_root), latent_type=latent_type, out=str(out), name="train", workers=0,
                    keep_epochs=1, no_wandb=True, progress=progress, seed=config.seed)
    if processes == 1:
        return train(TrainConfig(**settings).validate())
    settings.update(batch_size=max(1, settings["batch_size"] // processes), device=settings.get("device") or "cpu")
    TrainConfig(**settings).validate()
    config_file = out / "train_config.json"
    config_file.write_text(json.dumps(settings, indent=1))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "latentface.train", "--config", str(config_file)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0 or not (run_dir / "weight_final.pth").is_file():
        raise TrainingError(f"training in {processes} processes failed (exit status {done.returncode}); "
                            f"its messages are above, its settings in {config_file}")
    return run_dir


def _grid(pictures: list[np.ndarray], columns: int = 2) -> np.ndarray:
    """Pictures of one size side by side, ``columns`` per row, with a 4-pixel white gutter."""
    h, w = pictures[0].shape[:2]
    rows = math.ceil(len(pictures) / columns)
    grid = np.full((rows * (h + 4) - 4, columns * (w + 4) - 4, 3), 255, np.uint8)
    for i, picture in enumerate(pictures):
        r, c = divmod(i, columns)
        grid[r * (h + 4):r * (h + 4) + h, c * (w + 4):c * (w + 4) + w] = picture
    return grid


def detection_pictures(weight: Path, dataset, out: Path, count: int) -> dict[str, Any]:
    """Detect on the first ``count`` validation latents; write the detections JSON and two picture grids:
    faces over the decoded image (when the codec is known, else the stored image) and over the latent view."""
    import cv2

    from latentface import viz
    from latentface.detect import Detector, detection_record, detections_json, picture_background
    from latentface.postprocess import DISPLAY_CONF

    detector = Detector.from_checkpoint(weight, conf=DISPLAY_CONF)
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
    (out / "detections.json").write_text(detections_json(records))
    written = {}
    if decoded:
        written["decoded"] = viz.save_image(out / "detections_decoded.png", _grid(decoded)).name
    written["latent"] = viz.save_image(out / "detections_latent.png", _grid(viewed)).name
    return {"pictures": written, "background": sorted(backgrounds), "faces_shown": int(sum(len(d["scores"]) for d in dets)),
            "conf": DISPLAY_CONF}


# ----------------------------------------------------------------------------- report


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_report(out: Path, summary: dict[str, Any]) -> Path:
    """``report.md``: the numbers, the timings and the pictures of one demo run."""
    ev, data, timings, cfg = summary["evaluation"], summary["dataset"], summary["timings_s"], summary["train_config"]
    by_size = ev["ap_by_size"]
    lines = [
        "# latentface demo",
        "",
        f"Dataset: `{data['root']}` ({'synthetic, ' + ('reused' if data['reused'] else 'generated') if data['synthetic'] else 'given'}), "
        f"{data['train_images']} training and {data['val_images']} validation images of "
        f"{data['image_size']}x{data['image_size']} pixels (latents {data['latent_shape']}).",
        "",
        f"Model: {cfg['model']} backbone ({cfg['arch']}), bridge `{cfg['bridge']}`, neck width {cfg['out_channels']}, "
        f"anchors `{cfg['anchors']}`; trained {summary['training']['epochs']:g} epochs ({summary['training']['steps']} steps, "
        f"batch {cfg['batch_size'] * summary['training_processes']}, lr {cfg['lr']:g}) on {summary['device']}"
        + (f" in {summary['training_processes']} processes." if summary['training_processes'] > 1 else "."),
        "",
        "## Results on the validation split",
        "",
        "| metric | value |",
        "|---|---|",
        f"| WIDER AP@0.5 (target >= {AP_TARGET:.2f}) | **{ev['ap']:.4f}** |",
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
    shown = (f"Detections at confidence >= {summary['detections']['conf']:g} (orange, with landmarks) and the "
             "labelled faces (green)")
    if "decoded" in pictures:
        lines += [f"{shown} over the {' / '.join(summary['detections']['background'])} image:", "",
                  f"![detections over the image]({pictures['decoded']})", ""]
    lines += [f"{shown} over a false-colour view of the latent itself (first three principal components of "
              "its channels, one 16x16 block per latent cell):", "", f"![detections over the latent]({pictures['latent']})",
              "", "Every number is in `demo.json`; the training run (checkpoints, metrics.csv, config.json) is in "
              "`train/`; the evaluation report in `eval/report.json`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


# ------------------------------------------------------------------------------- driver


def run_demo(out: str | Path = "runs/demo", dataset_root: str | Path | None = None,
             synthetic_root: str | Path = "data/synthetic-demo", quick: bool = False,
             latent_type: str = "latent_75.npy", progress: bool = True, processes: int | None = None,
             **train_overrides) -> dict[str, Any]:
    """Run every step and return the summary that ``demo.json`` holds.

    ``processes`` trains in that many DDP processes (default: :func:`training_processes`, one with ``quick``).
    """
    import torch

    from latentface.data.dataset import NestedLatentWiderFaceDataset
    from latentface.evaluate import evaluate_checkpoint, evaluation_report, format_report, plot_pr_curve

    config = QUICK if quick else DEMO
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
        root, reused = synthetic_dataset(synthetic_root, config, progress)
        latent_type = f"latent_{config.rate}.npy"
    else:
        root, reused = Path(dataset_root), True
    step("dataset" + (" (reused)" if reused else ""), t0)

    t0 = time.perf_counter()
    if processes is None:
        processes = 1 if quick else training_processes(train_overrides.get("device"))
    elif processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    run_dir = train_model(root, out, config, latent_type, progress, processes, **train_overrides)
    step("train", t0)
    weight = run_dir / "weight_final.pth"
    payload = torch.load(weight, map_location="cpu", weights_only=True)
    history = payload["metrics"]

    t0 = time.perf_counter()
    predictions, _, val = evaluate_checkpoint(weight, root, "val", latent_type, progress=progress)
    report = evaluation_report(predictions, val.records)
    (out / "eval").mkdir(exist_ok=True)
    (out / "eval" / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_pr_curve(report, out / "pr_curve.png")
    step("evaluate", t0)
    print(format_report(report), file=sys.stderr)

    t0 = time.perf_counter()
    detections = detection_pictures(weight, val, out, config.pictures)
    shutil.copyfile(run_dir / "curves.png", out / "curves.png")
    step("detect and draw", t0)

    timings["total"] = round(time.perf_counter() - start, 1)
    train_config = json.loads((run_dir / "config.json").read_text())
    model_config = payload["config"]
    summary = {
        "quick": quick,
        "device": str(torch.device("cuda" if torch.cuda.is_available() and train_config["device"] != "cpu" else "cpu")),
        "training_processes": processes,
        "dataset": {"root": str(root), "synthetic": dataset_root is None, "reused": reused,
                    "train_images": len(NestedLatentWiderFaceDataset(root, "train", latent_type)),
                    "val_images": len(val), "image_size": val.image_size[0],
                    "latent_shape": list(val.expected_shape), "latent_type": latent_type},
        "train_config": {**train_config, "arch": f"blocks={model_config.get('blocks')}, light_p2={model_config.get('light_p2')}"},
        "training": {"epochs": history[-1]["epoch"], "steps": history[-1]["step"], "history": history},
        "evaluation": {k: v for k, v in report.items() if k != "curves"},
        "detections": detections,
        "timings_s": timings,
        "targets": {"ap": AP_TARGET, "ap_met": report["ap"] >= AP_TARGET},
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_report(out, summary)
    return summary


def configure_parser(parser) -> None:
    from latentface.cli import flag

    parser.add_argument(*flag("--dataset_root"), dest="dataset_root", default=None, metavar="DIR",
                        help="a real dataset in the retina-modify layout (default: the synthetic one)")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument(*flag("--synthetic_root"), dest="synthetic_root", default=None, metavar="DIR",
                        help="where the synthetic dataset is made or reused (default data/synthetic-demo, "
                             "data/synthetic-demo-quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run: seconds, not a meaningful AP")
    parser.add_argument(*flag("--latent_type"), dest="latent_type", default="latent_75.npy",
                        help="latent file with --dataset_root (default latent_75.npy)")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    parser.add_argument(*flag("--time_budget"), dest="time_budget", type=float, default=None, metavar="SECONDS",
                        help="override the demo's training time limit")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda (default: auto)")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="training processes (DDP); default one per CPU core up to 2 on a CPU, else 1")
    parser.add_argument(*flag("--no_progress"), dest="no_progress", action="store_true")


def run(args) -> int:
    from latentface.checkpoint import CheckpointError
    from latentface.data.dataset import BadLatentError
    from latentface.data.labels import LabelFormatError
    from latentface.train import TrainingError

    synthetic_root = args.synthetic_root or ("data/synthetic-demo-quick" if args.quick else "data/synthetic-demo")
    try:
        summary = run_demo(args.out, args.dataset_root, synthetic_root, args.quick, args.latent_type,
                           progress=not args.no_progress, processes=args.processes, epochs=args.epochs,
                           time_budget=args.time_budget, device=args.device)
    except (TrainingError, CheckpointError, BadLatentError, LabelFormatError, OSError, ValueError) as exc:
        raise SystemExit(f"latentface demo: {exc}") from None
    ev = summary["evaluation"]
    print(f"demo: AP@0.5 {ev['ap']:.4f} (target {AP_TARGET:.2f}: {'met' if summary['targets']['ap_met'] else 'NOT met'}), "
          f"total {summary['timings_s']['total']:.0f} s -> {Path(args.out) / 'report.md'}")
    return 0
