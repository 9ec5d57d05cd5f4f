"""What a run leaves behind besides checkpoints: metrics.csv, curves.png, and optional W&B tracking.

Plots use matplotlib's ``Figure`` API only (no pyplot): no global backend, safe in notebooks and workers.
"""

from __future__ import annotations

import csv
import math
import os
import uuid
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from latentface.viz import draw_detections

#: metrics.csv columns, one row per epoch (a stop mid-epoch leaves a fractional epoch).
COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_total",
    "train_box",
    "train_cls",
    "train_landmark",
    "val_total",
    "val_box",
    "val_cls",
    "val_landmark",
    "val_ap",
    "val_images",
    "nonfinite_steps",
    "images_per_s",
    "elapsed_s",
)
LOSS_PARTS = ("total", "box", "cls", "landmark")


def write_metrics_csv(history: list[dict], path: str | os.PathLike) -> Path:
    """The whole history, rewritten each time (rows are few), so a resumed run never duplicates an epoch."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})
    tmp.replace(path)
    return path


def plot_curves(history: list[dict], path: str | os.PathLike) -> Path:
    """Loss components (train solid, validation dashed), validation AP and learning rate per epoch."""
    fig = Figure(figsize=(13, 3.8))
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.92, wspace=0.25)  # cheaper than a layout engine
    ax_loss, ax_ap, ax_lr = fig.subplots(1, 3)
    epochs = [r["epoch"] for r in history]
    for part, colour in zip(LOSS_PARTS, ("black", "tab:blue", "tab:orange", "tab:green")):
        train = [math.nan if r.get(f"train_{part}") is None else r[f"train_{part}"] for r in history]
        ax_loss.plot(epochs, train, "-o", ms=3, color=colour, label=f"train {part}")
        val = [(e, r[f"val_{part}"]) for e, r in zip(epochs, history) if r.get(f"val_{part}") is not None]
        if val:
            ax_loss.plot(*zip(*val), "--s", ms=3, color=colour, alpha=0.7, label=f"val {part}")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss components")
    ax_loss.legend(fontsize=7, ncol=2)
    aps = [
        (e, r["val_ap"]) for e, r in zip(epochs, history) if r.get("val_ap") is not None and math.isfinite(r["val_ap"])
    ]
    if aps:
        ax_ap.plot(*zip(*aps), "-o", ms=3, color="tab:red")
    ax_ap.set(xlabel="epoch", ylabel="AP", title="validation AP (WIDER protocol)", ylim=(0, 1))
    ax_lr.plot(epochs, [r["lr"] for r in history], "-o", ms=3, color="tab:purple")
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate (end of epoch)")
    for ax in (ax_loss, ax_ap, ax_lr):
        ax.grid(alpha=0.3)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    return path


def draw_boxes(image: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RGB uint8 image with true boxes and predicted boxes (x1,y1,x2,y2[,score]) in :mod:`latentface.viz`'s colours."""
    predicted = np.asarray(predicted, dtype=np.float64)  # [K, 4] or [K, 5]
    scores = predicted[:, 4] if predicted.shape[1] > 4 else np.ones(len(predicted))
    return draw_detections(image, {"boxes": predicted[:, :4], "scores": scores}, truth=truth)


class Tracker:
    """Weights & Biases when wanted and installed; otherwise every call is a no-op and one line says so."""

    def __init__(
        self,
        enabled: bool,
        reason_off: str | None,
        project: str,
        name: str,
        run_dir: Path,
        config: dict,
        run_id: str | None,
        log=print,
    ):
        self.run = None
        self.run_id = run_id
        if not enabled:
            log(f"experiment tracking off: {reason_off}")
            return
        try:
            import wandb  # optional dependency (latentface[tracking])
        except ImportError:
            log("experiment tracking off: wandb is not installed (pip install 'latentface[tracking]')")
            return
        self._wandb = wandb
        self.run_id = run_id or uuid.uuid4().hex[:8]  # kept in last.pth: a resumed run continues the same W&B run
        try:
            self.run = wandb.init(
                project=project, name=name, id=self.run_id, resume="allow", dir=str(run_dir), config=config
            )
        except Exception as exc:  # noqa: BLE001 - tracking must never stop training
            log(f"experiment tracking off: wandb.init failed ({type(exc).__name__}: {exc})")
            self.run = None
            return
        log(f"tracking with Weights & Biases ({os.environ.get('WANDB_MODE', 'online')}): {self.run.url or run_dir}")

    @staticmethod
    def wanted(no_wandb: bool) -> tuple[bool, str | None]:
        if no_wandb:
            return False, "--no_wandb"
        if os.environ.get("WANDB_MODE", "").lower() == "disabled":
            return False, "WANDB_MODE=disabled"
        return True, None

    def log(self, data: dict, step: int) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in data.items() if v is not None}, step=step)

    def log_images(self, images: list[tuple[str, np.ndarray]], step: int) -> None:
        if self.run is not None and images:
            self.run.log({"val/images": [self._wandb.Image(img, caption=key) for key, img in images]}, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
