"""The training configuration: one dataclass, the command line that fills it, and the model it describes.

Precedence: dataclass defaults < ``--config`` file < command-line flags. A run directory's
``config.json`` is itself a valid ``--config`` file, so every run can be repeated from it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from latentface.model import LatentRetinaFace, RGBRetinaFace
from latentface.model.backbone import CHANNELS
from latentface.model.bridge import BRIDGES


class TrainingError(RuntimeError):
    """A training run that cannot start or go on; the message says why and what to change."""


@dataclass
class TrainConfig:
    """Every setting of a training run; field names are the command-line flag names."""

    # data
    dataset_root: str = "data/retina-modify"
    latent_type: str = "latent_75.npy"
    input: str = "latent"
    stats: str | None = None
    augment: bool = True
    crop: float = 0.8
    workers: int = 2
    # model (None: from the preset)
    preset: str | None = None
    model: str | None = None
    bridge: str | None = None
    out_channels: int | None = None
    anchors: str = "default"
    pretrained: str | None = None
    weight: str | None = None
    freeze: bool = False
    # optimisation
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.05
    final_lr: float = 0.01
    clip_grad: float = 10.0
    amp: bool = True
    max_nonfinite: int = 20
    # run control
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    max_steps: int | None = None
    time_budget: float | None = None
    val_every: int = 1
    out: str = "runs"
    name: str | None = None
    resume: str | None = None
    keep_epochs: int = 0
    sync_bn: bool = False
    progress: bool = True
    # tracking
    no_wandb: bool = False
    wandb_project: str = "latentface"
    val_images: int = 4

    def validate(self) -> "TrainConfig":
        """Reject settings that cannot work, before any data is read."""
        checks = [
            (self.input in ("latent", "rgb"), f"--input must be 'latent' or 'rgb', got {self.input!r}"),
            (self.model is None or self.model in CHANNELS, f"--model must be one of {sorted(CHANNELS)}, got {self.model!r}"),
            (self.bridge is None or self.bridge in BRIDGES, f"--bridge must be one of {sorted(BRIDGES)}, got {self.bridge!r}"),
            (self.preset is None or self.preset in LatentRetinaFace.PRESETS,
             f"--preset must be one of {sorted(LatentRetinaFace.PRESETS)}, got {self.preset!r}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch_size must be at least 1, got {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 <= self.warmup < 1, f"--warmup is a fraction of all steps in [0, 1), got {self.warmup}"),
            (0 < self.final_lr <= 1, f"--final_lr is a fraction of --lr in (0, 1], got {self.final_lr}"),
            (0 < self.crop <= 1, f"--crop is a fraction of the latent grid in (0, 1], got {self.crop}"),
            (self.clip_grad > 0, f"--clip_grad must be positive, got {self.clip_grad}"),
            (self.max_nonfinite >= 0, f"--max_nonfinite must be >= 0, got {self.max_nonfinite}"),
            (self.val_every >= 1, f"--val_every must be at least 1, got {self.val_every}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.max_steps is None or self.max_steps >= 1, f"--max_steps must be at least 1, got {self.max_steps}"),
            (self.time_budget is None or self.time_budget > 0, f"--time_budget must be positive, got {self.time_budget}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_DEFAULTS = TrainConfig()
_FIELDS = {f.name for f in fields(TrainConfig)}


def architecture(config: TrainConfig, in_channels: int = 256) -> dict[str, Any]:
    """The model config (as ``model.config``) that ``config`` asks for: preset values, explicit flags over them."""
    if config.input == "rgb":
        return dict(kind="rgb", backbone=config.model or "resnet50", out_channels=config.out_channels or 256,
                    anchors=config.anchors)
    preset = LatentRetinaFace.PRESETS[config.preset or "default"]
    return {
        **preset,  # cost options such as blocks / light_p2 come with the preset
        "kind": "latent",
        "backbone": config.model or preset["backbone"],
        "bridge": config.bridge or preset["bridge"],
        "out_channels": config.out_channels or preset["out_channels"],
        "in_channels": in_channels,
        "anchors": config.anchors,
    }


def build_model_from_config(config: TrainConfig, in_channels: int = 256):
    """The untrained detector a config describes (``--pretrained`` ImageNet weights in its backbone if given)."""
    arch = architecture(config, in_channels)
    kind = arch.pop("kind")
    cls = RGBRetinaFace if kind == "rgb" else LatentRetinaFace
    return cls(**arch, pretrained=config.pretrained)


def resolved(config: TrainConfig) -> TrainConfig:
    """``config`` with the preset's architecture written out, as saved in a run's config.json."""
    arch = architecture(config)
    return dataclasses.replace(config, model=arch["backbone"], bridge=arch.get("bridge"), out_channels=arch["out_channels"])


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object whose keys are flag names (``dataset_root`` or ``dataset-root``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(f"config file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{path}: not a JSON config file ({exc})") from None
    if not isinstance(data, dict):
        raise TrainingError(f"{path}: a config file holds one JSON object of flag: value, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        name = key.lstrip("-").replace("-", "_")
        if name not in _FIELDS:
            raise TrainingError(f"{path}: unknown setting {key!r}; settings are the train flags: {sorted(_FIELDS)}")
        out[name] = value
    return out


def merge_for_resume(config: TrainConfig, saved: dict[str, Any], source: str | os.PathLike) -> TrainConfig:
    """The saved run's config, overridden by every setting of ``config`` that differs from the defaults."""
    unknown = set(saved) - _FIELDS
    if unknown:
        raise TrainingError(f"{source}: its train_config has settings this version does not know: {sorted(unknown)}")
    merged = dict(saved)
    for name in _FIELDS:
        value = getattr(config, name)
        if value != getattr(_DEFAULTS, name):
            merged[name] = value
    return TrainConfig(**merged)


# ------------------------------------------------------------------------------ command line

def _help(text: str, name: str) -> str:
    default = getattr(_DEFAULTS, name)
    return text if default is None or default is False else f"{text} (default: {default})"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """All TrainConfig fields as flags (``_`` and ``-`` spellings); unset flags stay absent from the namespace."""
    from latentface.cli import flag

    parser.argument_default = argparse.SUPPRESS
    S = argparse.SUPPRESS

    def add(name: str, text: str, **kw) -> None:
        parser.add_argument(*flag("--" + name), dest=name, default=S, help=_help(text, name), **kw)

    def switch(name: str, on: str, off: str | None = None, text: str = "") -> None:
        parser.add_argument(*flag("--" + on), dest=name, action="store_true", default=S, help=text)
        if off:
            parser.add_argument(*flag("--" + off), dest=name, action="store_false", default=S,
                                help=f"undo --{on} (default: {'--' + on if getattr(_DEFAULTS, name) else '--' + off})")

    parser.add_argument(*flag("--config"), dest="config", default=S, metavar="JSON",
                        help="JSON file of flag: value (a run's config.json works); flags given here override it")
    add("dataset_root", "dataset in the retina-modify layout (<root>/train, <root>/val)", metavar="DIR")
    add("latent_type", "latent file per image: latent_75.npy, a comma-separated list, or 'mixed'")
    parser.add_argument(*flag("--input"), dest="input", choices=("latent", "rgb"), default=S,
                        help="'latent' trains LatentRetinaFace; 'rgb' trains the RGB baseline on <split>/images/*.png "
                             "(default: latent)")
    add("stats", "latent statistics JSON for input normalisation (default: computed from the training split)",
        metavar="JSON")
    switch("augment", "augment", "no_augment", "random flip and latent-grid crop (default: on)")
    add("crop", "crop size as a fraction of the latent grid", type=float)
    add("workers", "DataLoader worker processes", type=int)
    add("preset", f"LatentRetinaFace preset {sorted(LatentRetinaFace.PRESETS)}; explicit flags override it "
                  "(default: default)")
    parser.add_argument(*flag("--model"), dest="model", choices=sorted(CHANNELS), default=S,
                        help="backbone (default: the preset's, resnet50)")
    parser.add_argument(*flag("--bridge"), dest="bridge", choices=sorted(BRIDGES), default=S,
                        help="latent-to-C1 bridge (default: the preset's)")
    add("out_channels", "FPN/SSH width (default: the preset's, 256)", type=int)
    add("anchors", "anchor layout preset")
    add("pretrained", "ImageNet weights for the backbone: a torchvision .pth file, or 'imagenet' to download")
    add("weight", "start from this latentface checkpoint (same architecture)", metavar="PTH")
    switch("freeze", "freeze", text="freeze the pruned backbone (layer2..layer4)")
    add("epochs", "epochs", type=int)
    add("batch_size", "images per step and process", type=int)
    add("lr", "peak learning rate (SGD)", type=float)
    add("momentum", "SGD momentum", type=float)
    add("weight_decay", "SGD weight decay", type=float)
    add("warmup", "linear warm-up, as a fraction of all steps", type=float)
    add("final_lr", "cosine decay ends at this fraction of --lr", type=float)
    add("clip_grad", "gradient-norm clipping", type=float)
    switch("amp", "amp", "no_amp", "fp16 autocast + GradScaler on CUDA (default: on)")
    add("max_nonfinite", "stop after this many consecutive steps with a non-finite loss or gradient", type=int)
    add("device", "auto, cpu, cuda or cuda:N")
    add("seed", "seed of initialisation, data order and augmentation", type=int)
    switch("deterministic", "deterministic", text="use deterministic algorithms (slower on GPU)")
    add("max_steps", "stop after this many steps in all (smoke tests)", type=int)
    add("time_budget", "stop cleanly after this many seconds of training", type=float, metavar="SECONDS")
    add("val_every", "validate every N epochs (and after the last)", type=int)
    add("out", "parent folder of run directories", metavar="DIR")
    add("name", "run directory name (default: a timestamp)")
    add("resume", "continue a run: its directory or a last.pth", metavar="RUN")
    add("keep_epochs", "keep only the newest N epoch_NNN.pth (0: all)", type=int)
    switch("sync_bn", "sync_bn", text="SyncBatchNorm under torchrun")
    switch("progress", "progress", "no_progress", "progress bars (default: on)")
    switch("no_wandb", "no_wandb", text="no Weights & Biases tracking (also: WANDB_MODE=disabled)")
    add("wandb_project", "Weights & Biases project")
    add("val_images", "validation images with boxes sent to Weights & Biases", type=int)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the ``--config`` file, then the flags actually given."""
    given = {k: v for k, v in vars(args).items() if k in _FIELDS}
    base = read_config_file(args.config) if getattr(args, "config", None) else {}
    return TrainConfig(**{**base, **given}).validate()
