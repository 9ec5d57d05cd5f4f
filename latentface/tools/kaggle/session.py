"""The kernel's session: which build it runs, Kaggle's 12-hour clock, the ImageNet start, the end summary.

Kaggle stops a session 12 hours after it starts, whatever it is doing, so the training process gets
a wall-clock budget (``--wall_budget``: what is left of the session when training starts, set-up
counted) of which ``--final_margin`` is kept for what follows it (the final evaluation, the curves,
Kaggle saving ``/kaggle/working``). At the end the kernel prints where the session went, the run's
summary and, when the budget stopped it, the ``latentface kaggle push`` command that continues it.

Like :mod:`~latentface.tools.kaggle.kernel`, nothing here imports torch at import time.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from latentface.tools.kaggle.build import read_build_stamp
from latentface.tools.kaggle.kernel import local_recipe
from latentface.tools.kaggle.metadata import KaggleSetupError, next_slug
from latentface.util.io import write_json
from latentface.util.process import process_start

#: Kaggle stops a CPU or GPU session after 12 hours.
SESSION_LIMIT_S = 12 * 3600.0
#: Kept at the end of the session for the final evaluation, the curves and Kaggle saving the output.
END_MARGIN_S = 30 * 60.0
#: Kaggle keeps at most this much of /kaggle/working as a kernel's output.
OUTPUT_LIMIT_BYTES = 20 * 1024**3


# ---------------------------------------------------------------------------- the build


def check_build(wheel: str | os.PathLike, expected: str | None = None) -> str | None:
    """Print the build id of the installed wheel (``build.json`` beside it); when the kernel was pushed
    with a build id (``PUSHED["build_id"]``), another one stops the kernel: Kaggle attached another
    version of the package dataset than the one uploaded with this kernel."""
    wheel = Path(wheel)
    stamp = read_build_stamp(wheel.parent)
    found = stamp["build_id"] if stamp else None
    print(f"build: {found or 'unknown (no build.json beside the wheel)'} ({wheel.name})", flush=True)
    if expected and found != expected:
        raise KaggleSetupError(
            f"this kernel was pushed with build {expected}, but the attached package ({wheel.parent}) is build "
            f"{found or 'unknown'}: Kaggle attached another version of the package dataset. Push again "
            "(`latentface kaggle push`, which waits until Kaggle serves the new version)"
        )
    return found


# ---------------------------------------------------------------------------- the session clock


class SessionClock:
    """Where a Kaggle session's time goes: set-up, training, evaluation, against its 12-hour limit."""

    def __init__(
        self,
        limit_s: float = SESSION_LIMIT_S,
        end_margin_s: float = END_MARGIN_S,
        start: float | None = None,
        now: Callable[[], float] = time.time,
    ):
        self.limit_s, self.end_margin_s, self.now = float(limit_s), float(end_margin_s), now
        self.start = process_start() if start is None else start
        self.marks: dict[str, float] = {}
        self._last = self.start

    def elapsed(self) -> float:
        return self.now() - self.start

    def mark(self, name: str) -> float:
        """Seconds since the previous mark (the session start for the first), kept under ``name``."""
        now = self.now()
        self.marks[name] = now - self._last
        self._last = now
        return self.marks[name]

    def training_budget(self) -> tuple[float, float]:
        """``(--wall_budget, --final_margin)`` for a training process started now: what is left of the
        session, and the part of it kept for the end. Prints the set-up overhead and both."""
        setup = self.mark("set-up")
        left = self.limit_s - self.elapsed()
        if left <= self.end_margin_s:
            raise KaggleSetupError(
                f"set-up took {setup:.0f} s: {left:.0f} s are left of the {self.limit_s / 3600:g} h session, not more "
                f"than the {self.end_margin_s:.0f} s kept for the evaluation; nothing left to train"
            )
        print(
            f"session clock: set-up took {setup:.0f} s; training gets --wall_budget {left:.0f} s "
            f"(the {self.limit_s / 3600:g} h session minus set-up), of which --final_margin "
            f"{self.end_margin_s:.0f} s is kept for the evaluation and saving the output",
            flush=True,
        )
        return round(left), round(self.end_margin_s)

    def lines(self) -> list[str]:
        used = self.elapsed()
        parts = ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in self.marks.items())
        return [
            f"session: {used / 3600:.2f} h of {self.limit_s / 3600:g} h used ({parts}); "
            f"{max(0.0, self.limit_s - used) / 60:.0f} min left"
        ]


# ---------------------------------------------------------------------------- ImageNet weights


def backbone_of(settings: Mapping[str, Any]) -> str:
    """The ResNet the settings train: ``model``, else the preset's backbone."""
    if settings.get("model"):
        return str(settings["model"])
    from latentface.model import LatentRetinaFace  # imports torch (see the module docstring)

    preset = settings.get("preset") or "default"
    return LatentRetinaFace.PRESETS.get(preset, LatentRetinaFace.PRESETS["default"])["backbone"]


def download_imagenet(backbone: str) -> Path:
    """torchvision's ImageNet weights for ``backbone`` as a file (torch's hub cache, not /kaggle/working:
    they would count towards the output). Checked against the hash in their file name."""
    import torch  # after the dependency check (see the module docstring)

    from latentface.model.backbone import _WEIGHTS  # torchvision's weight enums, by backbone name

    url = _WEIGHTS[backbone].url
    torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, weights_only=True)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def imagenet_start(
    settings: Mapping[str, Any],
    root: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    download: Callable[[str], Path] = download_imagenet,
    env: Mapping[str, str] = os.environ,
    internet: bool | None = None,
) -> dict[str, Any]:
    """The settings with ``pretrained`` = the downloaded ImageNet weights of the backbone, when the kernel
    can download them; unchanged when the settings name ``pretrained`` (None: never), a ``weight`` or when
    the run resumes, off Kaggle, without internet (``internet=False``: pushed with --no_internet), or when
    the download fails. Logs which it used."""
    settings = dict(settings)
    if "pretrained" in settings or settings.get("weight"):
        why = f"as set ({settings.get('pretrained') or settings.get('weight') or 'none'})"
    elif resume is not None:
        why = "not needed: the run resumes from its last.pth"
    elif local_recipe(root, env) is not None:
        why = "not used off Kaggle (the small stand-in model starts from random weights)"
    elif internet is False:
        why = "random weights: the kernel was pushed with --no_internet (set TRAIN['pretrained'] to a weights file)"
    else:
        backbone = backbone_of(settings)
        try:
            path = download(backbone)
        except Exception as exc:  # noqa: BLE001 - no internet, a proxy, a full disk: train anyway, and say so
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            why = (
                f"could not download torchvision's {backbone} ({type(exc).__name__}: {first}); the backbone starts "
                "from random weights (push with internet on, or set TRAIN['pretrained'] to a weights file)"
            )
        else:
            settings["pretrained"] = str(path)
            why = f"torchvision's {backbone} ImageNet weights ({path})"
    print(f"backbone start: {why}", flush=True)
    return settings


# ---------------------------------------------------------------------------- evaluation and the end summary


def best_weights(run_dir: str | os.PathLike) -> Path:
    """best.pth (best validation AP), else weight_final.pth, else last.pth (a run stopped early)."""
    from latentface.checkpoint import RunDir  # imports torch (see the module docstring)

    run = RunDir(run_dir)
    for path in (run.best, run.final, run.last):
        if path.is_file():
            return path
    raise KaggleSetupError(f"{run_dir}: no {run.BEST}, {run.FINAL} or {run.LAST}; did training start?")


def final_evaluation(
    weight: str | os.PathLike,
    dataset: str | os.PathLike,
    out_dir: str | os.PathLike,
    latent_type: str = "latent_75.npy",
    batch_size: int = 8,
    device: str | None = None,
) -> dict:
    """The validation split's evaluation report for a checkpoint: ``report.json`` and ``pr_curve.png``
    in ``out_dir``; returns the report without its curves."""
    from latentface.inference.evaluate import evaluate_checkpoint  # imports torch (see the module docstring)
    from latentface.metrics.report import evaluation_report, plot_pr_curve  # imports scipy, a checked dependency

    predictions, _, data = evaluate_checkpoint(
        weight, dataset, "val", latent_type, batch_size=batch_size, device=device, progress=False
    )  # at the evaluation's point
    report = evaluation_report(predictions, data.records)
    out_dir = Path(out_dir)
    write_json(out_dir / "report.json", report, indent=2)
    plot_pr_curve(report, out_dir / "pr_curve.png")
    return {k: v for k, v in report.items() if k != "curves"}


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def run_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """What a run reached: epochs (of those planned), best validation AP and its epoch, hours of training
    steps, and why it stopped (None: it ran every planned epoch). From the run's ``summary.json``, which
    training writes; from metrics.csv and config.json for a run without one."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file():
        written = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        best = written.get("best") or {}
        return dict(
            epochs=_number(written.get("epochs_reached")) or 0.0,
            planned=_number(written.get("epochs_planned")),
            best_ap=_number(best.get("val_ap")),
            best_epoch=_number(best.get("epoch")),
            hours=_number(written.get("hours_trained")) or 0.0,
            stopped=written.get("stopped"),
            reason=written.get("stop_reason"),
        )
    rows = _rows(run_dir / "metrics.csv")
    epochs = max((_number(r.get("epoch")) or 0.0 for r in rows), default=0.0)
    scored = [(ap, _number(r.get("epoch"))) for r in rows if (ap := _number(r.get("val_ap"))) is not None]
    best_ap, best_epoch = max(scored, default=(None, None))
    config = {}
    if (run_dir / "config.json").is_file():
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    planned = _number(config.get("epochs"))
    hours = max((_number(r.get("elapsed_s")) or 0.0 for r in rows), default=0.0) / 3600
    stopped = None if planned is not None and epochs >= planned else "unknown"
    return dict(epochs=epochs, planned=planned, best_ap=best_ap, best_epoch=best_epoch, hours=hours) | dict(
        stopped=stopped, reason=None
    )


def continue_command(pushed: Mapping[str, Any] | None) -> str:
    """The ``latentface kaggle push`` that continues this kernel's run in a next kernel (slug -2, -3...)."""
    pushed = pushed or {}
    kernel = pushed.get("kernel") or "ME/latentface-train"
    owner, slug = kernel.split("/", 1)
    flags = " ".join(pushed.get("flags") or ["--data", f"{owner}/retina-modify"])
    return f"latentface kaggle push --user {owner} {flags} --slug {next_slug(slug)} --resume_from {kernel}"


def output_size(working: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(working).rglob("*") if p.is_file() and not p.is_symlink())


def session_summary(
    run_dir: str | os.PathLike,
    clock: SessionClock | None = None,
    pushed: Mapping[str, Any] | None = None,
    working: str | os.PathLike | None = None,
) -> None:
    """Print the end summary (:func:`summary_lines`)."""
    print("\n".join(summary_lines(run_dir, clock, pushed, working)), flush=True)


def summary_lines(
    run_dir: str | os.PathLike,
    clock: SessionClock | None = None,
    pushed: Mapping[str, Any] | None = None,
    working: str | os.PathLike | None = None,
) -> list[str]:
    """The end summary: epochs reached of planned, best AP and its epoch, hours trained, why it stopped,
    where the session's time went, the output's size, and how to continue a stopped run."""
    s = run_summary(run_dir)
    planned = f"{s['planned']:g}" if s["planned"] is not None else "?"
    best = f"best val AP {s['best_ap']:.4f} (epoch {s['best_epoch']:g})" if s["best_ap"] is not None else "no val AP"
    lines = [f"session summary: epoch {s['epochs']:g} of {planned}, {best}, {s['hours']:.2f} h of training steps"]
    if s["stopped"] is None:
        lines.append("stopped: no, every planned epoch ran")
    else:
        names = {"budget": "the session's wall-clock budget", "signal": "a stop signal"}
        reason = names.get(s["stopped"], s["stopped"])
        detail = f" ({s['reason']})" if s.get("reason") else ""
        lines.append(f"stopped early by {reason}{detail}: weight_final.pth holds the weights of an unfinished run")
        if s["stopped"] in ("budget", "signal", "unknown"):  # last.pth resumes: the next kernel continues it
            lines.append("to continue it: " + continue_command(pushed))
    if clock is not None:
        lines += clock.lines()
    if working is not None:
        size = output_size(working)
        lines.append(
            f"output: {size / 1024**3:.2f} GB in {working} (Kaggle keeps up to {OUTPUT_LIMIT_BYTES / 1024**3:.0f} GB)"
        )
        if size > OUTPUT_LIMIT_BYTES:
            lines.append("WARNING: over Kaggle's output limit; lower TRAIN['keep_epochs'] or TRAIN['val_images']")
    return lines
