"""What a run leaves behind besides checkpoints: metrics.csv, curves.png, summary.json, the end summary line,
and optional W&B tracking.

Plots use matplotlib's ``Figure`` API only (no pyplot): no global backend, safe in notebooks and workers.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from latentface.checkpoint import RunDir
from latentface.training.clock import hms
from latentface.training.config import TrainingError
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


def check_writable(folder: Path, name: str | None, create: bool) -> None:
    """--out (or the resumed run's directory) must take files, and --name must not hold a run, before any
    data is read."""
    flag = "--out" if create else "--resume"
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise TrainingError(f"{flag} {folder}: cannot write there ({exc.strerror or exc})") from None
    if create and name and RunDir(folder / name).holds_run():
        raise TrainingError(
            f"{folder / name} already holds a run: continue it with --resume {folder / name}, or choose another --name"
        )


def run_summary(run, state: str | None = None) -> dict:
    """summary.json of a training run (``latentface.training.loop._Run``): ``state`` (running, finished,
    stopped, failed), ``stopped`` (None, budget, max_steps, signal, error) and why, the exit status, epochs
    reached of planned, the best validation, hours of training steps, the wall-clock times (each overhead),
    the data, the bad latents left out, and how to continue."""
    if state is None:
        state = "failed" if run.failure is not None else ("stopped" if run.stopped else "finished")
    best = None
    if run.best is not None:
        ap = run.best["score"][0]
        best = {"val_ap": ap if math.isfinite(ap) else None, "epoch": run.best["epoch"], "step": run.best["step"]}
    failure = run.failure
    return {
        "state": state,
        "stopped": None if state == "running" else ("error" if failure is not None else run.stopped),
        "stop_reason": f"{type(failure).__name__}: {failure}" if failure is not None else run.stop_reason,
        "finished": state == "finished" and run.stopped is None,
        "exit_status": None if state in ("running", "failed") else (128 + run.signum if run.signum else 0),
        "epochs_planned": run.config.epochs,
        "epochs_reached": round(run.epoch + run.epoch_step / run.steps_per_epoch, 4),
        "steps": run.step,
        "best": best,
        "hours_trained": round(run.elapsed / 3600, 4),
        "timing": run.clock.timing(run.elapsed),
        "data": {
            split: {"samples": len(ds.keys), "faces": int(sum(len(r) for r in ds.records.values()))}
            for split, ds in (("train", run.train_set), ("val", run.val_set))
        },
        "distillation": None
        if run.distiller is None
        else {
            "teacher": run.config.teacher,
            "reconstruct": run.config.reconstruct,
            "teacher_forward_s": round(run.distiller.teacher_s, 1),
            "train_samples_without_image": len(run.train_set.missing),
        },
        "on_bad_latent": run.config.on_bad_latent,
        "bad_latents": run.bad_latents,
        "continue_with": None if state == "finished" and not run.stopped else f"--resume {run.run_dir}",
        "path": str(RunDir(run.run_dir).summary),
    }


def summary_line(summary: dict, overheads: str) -> str:
    """The end summary in one line: epochs reached of planned, how it ended, the best AP, hours, wall time."""
    best = summary["best"]
    best_text = (
        "no validation AP"
        if best is None or best["val_ap"] is None
        else f"best val AP {best['val_ap']:.4f} at epoch {best['epoch']:g}"
    )
    how = "all epochs done" if not summary["stopped"] else f"stopped early: {summary['stopped']}"
    if summary["stop_reason"]:
        how += f" ({summary['stop_reason']})"
    return (
        f"summary: {summary['epochs_reached']:g} of {summary['epochs_planned']} epochs, {how}; {best_text}; "
        f"{summary['hours_trained']:.2f} h of training steps, wall {hms(summary['timing']['wall_s'])} (overhead: "
        f"{overheads}); {summary['path']}"
    )


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
        # Offline, wandb cannot resume: asked to, it warns on every resumed run ("`resume` will be ignored").
        resume = None if os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") else "allow"
        try:
            self.run = wandb.init(
                project=project, name=name, id=self.run_id, resume=resume, dir=str(run_dir), config=config
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
