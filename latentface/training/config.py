"""The training configuration: one dataclass of every setting, validated before any data is read.

Precedence: dataclass defaults < ``--config`` file < command-line flags (``latentface.cli.train``).
A run directory's ``config.json`` is itself a valid ``--config`` file, so every run can be repeated from it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from typing import Any

from latentface.anchors import PRESETS as ANCHOR_PRESETS
from latentface.errors import LatentfaceError
from latentface.loss import MATCHINGS
from latentface.model import LatentRetinaFace, model_config
from latentface.model.backbone import CHANNELS
from latentface.model.bridge import BRIDGES
from latentface.model.builder import preset_anchors
from latentface.util.io import read_json

#: What a bad latent file does: stop the run (naming it) or leave it out of its split (counted).
ON_BAD_LATENT = ("raise", "skip")


class TrainingError(LatentfaceError, RuntimeError):
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
    on_bad_latent: str = "raise"
    # model (None: from the preset)
    preset: str | None = None
    model: str | None = None
    bridge: str | None = None
    out_channels: int | None = None
    anchors: str | None = None  # None: the preset's
    matching: str = "iou"  # anchors to faces: RetinaFace's IoU thresholds, or adaptive (ATSS)
    pretrained: str | None = None
    weight: str | None = None
    freeze: bool = False
    # learning from the paired RGB image (latentface.training.distillation): an RGB teacher (None: none),
    # and the image rebuilt from the bridge output (0: off)
    teacher: str | None = None
    teacher_images: str | None = None
    distill_feature: float = 1.0
    distill_soft: float = 1.0
    distill_temperature: float = 2.0
    teacher_half: bool = False
    reconstruct: float = 0.0
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
    wall_budget: float | None = None
    final_margin: float | None = None
    val_every: int = 1
    val_subset: int | None = None
    progress_every: float = 300.0
    dist_timeout: float = 60.0
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

    def validate(self) -> TrainConfig:
        """Reject settings that cannot work, before any data is read."""
        for f in fields(self):
            wrong = type_error(f.name, getattr(self, f.name))
            if wrong:
                raise TrainingError(f"--{f.name} {wrong}")
        checks = [
            (self.input in ("latent", "rgb"), f"--input must be 'latent' or 'rgb', got {self.input!r}"),
            (
                self.model is None or self.model in CHANNELS,
                f"--model must be one of {sorted(CHANNELS)}, got {self.model!r}",
            ),
            (
                self.bridge is None or self.bridge in BRIDGES,
                f"--bridge must be one of {sorted(BRIDGES)}, got {self.bridge!r}",
            ),
            (
                self.preset is None or self.preset in LatentRetinaFace.PRESETS,
                f"--preset must be one of {sorted(LatentRetinaFace.PRESETS)}, got {self.preset!r}",
            ),
            (
                self.anchors is None or self.anchors in ANCHOR_PRESETS,
                f"--anchors must be one of {sorted(ANCHOR_PRESETS)}, got {self.anchors!r}",
            ),
            (self.matching in MATCHINGS, f"--matching must be one of {list(MATCHINGS)}, got {self.matching!r}"),
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
            (
                self.time_budget is None or self.time_budget > 0,
                f"--time_budget must be positive, got {self.time_budget}",
            ),
            (
                self.on_bad_latent in ON_BAD_LATENT,
                f"--on_bad_latent must be one of {list(ON_BAD_LATENT)}, got {self.on_bad_latent!r}",
            ),
            (
                self.wall_budget is None or (math.isfinite(self.wall_budget) and self.wall_budget > 0),
                f"--wall_budget must be positive, got {self.wall_budget}",
            ),
            (
                self.final_margin is None or 0 <= self.final_margin < (self.wall_budget or math.inf),
                f"--final_margin must be >= 0 and below --wall_budget, got {self.final_margin}",
            ),
            (
                self.final_margin is None or self.wall_budget is not None,
                "--final_margin is the part of --wall_budget kept for the end: give --wall_budget too",
            ),
            (
                self.val_subset is None or self.val_subset >= 1,
                f"--val_subset must be at least 1, got {self.val_subset}",
            ),
            (self.progress_every >= 0, f"--progress_every must be >= 0 seconds (0: off), got {self.progress_every}"),
            (self.dist_timeout > 0, f"--dist_timeout must be positive (minutes), got {self.dist_timeout}"),
            (
                self.teacher is None or self.input == "latent",
                "--teacher guides a latent student: it needs --input latent (the teacher itself is the RGB model)",
            ),
            (
                (self.teacher is None and self.reconstruct == 0) or self.input == "latent",
                "--reconstruct rebuilds the image from a latent model's bridge: it needs --input latent",
            ),
            (
                self.teacher_images is None or self.teacher is not None or self.reconstruct > 0,
                "--teacher_images gives the teacher (or --reconstruct) its images: give --teacher or --reconstruct",
            ),
            (self.reconstruct >= 0, f"--reconstruct must be >= 0 (0: off), got {self.reconstruct}"),
            (
                self.distill_feature >= 0 and self.distill_soft >= 0,
                f"--distill_feature and --distill_soft must be >= 0, got {self.distill_feature}, {self.distill_soft}",
            ),
            (self.distill_temperature > 0, f"--distill_temperature must be positive, got {self.distill_temperature}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)
        return self

    def margin(self) -> float:
        """Seconds of ``wall_budget`` kept for what follows training: ``final_margin``, by default 10 % of
        the budget and at most 30 minutes (0 without a wall budget)."""
        if self.wall_budget is None:
            return 0.0
        return self.final_margin if self.final_margin is not None else min(0.1 * self.wall_budget, 1800.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_config(self, in_channels: int = 256) -> dict[str, Any]:
        """The model config (see :func:`latentface.model.model_config`) these settings ask for."""
        return model_config(
            self.input, self.preset, self.model, self.bridge, self.out_channels, self.anchors, in_channels
        )


_DEFAULTS = TrainConfig()
#: Each setting's annotation as written (``"int"``, ``"str | None"``): what a config file's value must be.
_ANNOTATIONS = {f.name: str(f.type) for f in fields(TrainConfig)}
#: The setting names (= flag names).
FIELDS = frozenset(f.name for f in fields(TrainConfig))


def resolved(config: TrainConfig) -> TrainConfig:
    """``config`` with the preset's architecture and anchor layout written out, as saved in a run's config.json."""
    arch = config.model_config()
    return dataclasses.replace(
        config,
        model=arch["backbone"],
        bridge=arch.get("bridge"),
        out_channels=arch["out_channels"],
        anchors=config.anchors or preset_anchors(config.input, config.preset),
    )


_TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def type_error(name: str, value: Any) -> str | None:
    """Why ``value`` does not fit setting ``name``'s type (``"must be an integer, got 'ten'"``), or None."""
    if name == "latent_type":  # a rate file, a rate number, or a list of them (as the datasets take)
        items = value if isinstance(value, (list, tuple)) else [value]
        ok = bool(items) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in items)
        return None if ok else f"must be a rate file name, 'mixed' or a list of rates, got {value!r}"
    kinds = [k.strip() for k in _ANNOTATIONS[name].split("|")]
    if value is None:
        return None if "None" in kinds else "must be set, got null"
    kind = next(k for k in kinds if k != "None")
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    return None if ok else f"must be {_TYPE_NAMES[kind]}, got {value!r} ({type(value).__name__})"


def settings(data: Any, source: str | os.PathLike) -> dict[str, Any]:
    """``{flag: value}`` (keys ``dataset_root``, ``dataset-root`` or ``--dataset-root``) -> ``{field: value}``;
    an unknown flag is an error naming ``source``. ``TrainConfig(**settings(...)).validate()`` checks the values."""
    if not isinstance(data, dict):
        raise TrainingError(f"{source}: settings are one JSON object of flag: value, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        name = key.lstrip("-").replace("-", "_")
        if name not in FIELDS:
            raise TrainingError(f"{source}: unknown setting {key!r}; settings are the train flags: {sorted(FIELDS)}")
        wrong = type_error(name, value)
        if wrong:
            raise TrainingError(f"{source}: setting {key!r} {wrong}")
        out[name] = value
    return out


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object whose keys are flag names (``dataset_root`` or ``dataset-root``), as :func:`settings`."""
    return settings(read_json(path, "training config file"), path)


def merge_for_resume(config: TrainConfig, saved: dict[str, Any], source: str | os.PathLike) -> TrainConfig:
    """The saved run's config, overridden by every setting of ``config`` that differs from the defaults."""
    unknown = set(saved) - FIELDS
    if unknown:
        raise TrainingError(f"{source}: its train_config has settings this version does not know: {sorted(unknown)}")
    merged = dict(saved)
    for name in FIELDS:
        value = getattr(config, name)
        if value != getattr(_DEFAULTS, name):
            merged[name] = value
    return TrainConfig(**merged)
