"""``latentface train``: train a latent (or RGB baseline) RetinaFace into a run directory.

Single process on a CPU or one GPU, or one process per GPU under ``torchrun`` (DDP)::

    latentface train --dataset_root data/retina-modify --epochs 100 --batch_size 16 --lr 1e-3 \\
        --model resnet50 --no_wandb --latent_type latent_75.npy
    torchrun --nproc_per_node 2 -m latentface.train --dataset_root data/retina-modify ...

Every :class:`~latentface.training.TrainConfig` field is a flag (``_`` and ``-`` spellings).
Precedence: defaults < ``--config`` file < the flags given.

Exit status: 0 when the run reached its end (all epochs, or ``--max_steps``/``--time_budget``/``--wall_budget``:
then ``summary.json`` says ``"stopped"``), 2 for bad input (one line ``latentface train: error: ...``),
128 + the signal's number after SIGINT (130) or SIGTERM (143): ``last.pth`` is saved and resumes.
"""

from __future__ import annotations

import argparse
import signal
import sys

from latentface.anchors import PRESETS as ANCHOR_PRESETS
from latentface.cli.args import flag
from latentface.loss import MATCHINGS
from latentface.model import LatentRetinaFace
from latentface.model.backbone import CHANNELS
from latentface.model.bridge import BRIDGES
from latentface.training import TrainConfig
from latentface.training.config import FIELDS, ON_BAD_LATENT, read_config_file
from latentface.training.loop import run as run_training

_DEFAULTS = TrainConfig()


def _help(text: str, name: str) -> str:
    default = getattr(_DEFAULTS, name)
    return text if default is None or default is False else f"{text} (default: {default})"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """All TrainConfig fields as flags; unset flags stay absent from the namespace."""
    parser.argument_default = argparse.SUPPRESS
    S = argparse.SUPPRESS

    def add(name: str, text: str, **kw) -> None:
        parser.add_argument(*flag("--" + name), dest=name, default=S, help=_help(text, name), **kw)

    def switch(name: str, on: str, off: str | None = None, text: str = "") -> None:
        parser.add_argument(*flag("--" + on), dest=name, action="store_true", default=S, help=text)
        if off:
            parser.add_argument(
                *flag("--" + off),
                dest=name,
                action="store_false",
                default=S,
                help=f"undo --{on} (default: {'--' + on if getattr(_DEFAULTS, name) else '--' + off})",
            )

    parser.add_argument(
        *flag("--config"),
        dest="config",
        default=S,
        metavar="JSON",
        help="JSON file of flag: value (a run's config.json works); flags given here override it",
    )
    add("dataset_root", "dataset in the retina-modify layout (<root>/train, <root>/val)", metavar="DIR")
    add("latent_type", "latent file per image: latent_75.npy, a comma-separated list, or 'mixed'")
    parser.add_argument(
        *flag("--input"),
        dest="input",
        choices=("latent", "rgb"),
        default=S,
        help="'latent' trains LatentRetinaFace; 'rgb' trains the RGB baseline on <split>/images/*.png "
        "(default: latent)",
    )
    add(
        "stats",
        "latent statistics JSON for input normalisation (default: computed from the training split)",
        metavar="JSON",
    )
    switch("augment", "augment", "no_augment", "random flip and latent-grid crop (default: on)")
    add("crop", "crop size as a fraction of the latent grid", type=float)
    add("workers", "DataLoader worker processes", type=int)
    parser.add_argument(
        *flag("--on_bad_latent"),
        dest="on_bad_latent",
        choices=ON_BAD_LATENT,
        default=S,
        help="a bad latent file (unreadable, wrong shape or dtype, NaN/inf), found by the check of both splits "
        "before the first step, stops the run (raise) or leaves its split, logged and counted in summary.json "
        "(skip) (default: raise)",
    )
    add(
        "preset",
        f"LatentRetinaFace preset {sorted(LatentRetinaFace.PRESETS)}; explicit flags override it (default: default)",
    )
    parser.add_argument(
        *flag("--model"),
        dest="model",
        choices=sorted(CHANNELS),
        default=S,
        help="backbone (default: the preset's, resnet50)",
    )
    parser.add_argument(
        *flag("--bridge"),
        dest="bridge",
        choices=sorted(BRIDGES),
        default=S,
        help="latent-to-C1 bridge (default: the preset's)",
    )
    add("out_channels", "FPN/SSH width (default: the preset's, 256)", type=int)
    add("anchors", f"anchor layout preset {sorted(ANCHOR_PRESETS)} (default: the preset's)")
    add(
        "matching",
        "which anchors train on a face: iou (RetinaFace's thresholds 0.35, and each face's best anchor) or "
        "adaptive (ATSS: per level every anchor of the 9 locations nearest the face, those over their mean + std "
        "IoU; no face is left without an anchor)",
        choices=list(MATCHINGS),
    )
    add("pretrained", "ImageNet weights for the backbone: a torchvision .pth file, or 'imagenet' to download")
    add("weight", "start from this latentface checkpoint (same architecture)", metavar="PTH")
    switch("freeze", "freeze", text="freeze the pruned backbone (layer2..layer4)")
    add(
        "teacher",
        "distil from this RGB RetinaFace checkpoint (latentface train --input rgb): feature and soft-label terms, "
        "the teacher frozen; it and its adapters never enter the student's checkpoints",
        metavar="PTH",
    )
    add(
        "teacher_images",
        "a WIDER FACE image folder (WIDER_train/images: <event>/<key>.jpg) for the teacher, where the dataset has "
        "no <root>/train/images (retina-modify); keys without an image train without the distillation terms",
        metavar="DIR",
    )
    add("distill_feature", "weight of the feature term (normalised L2 on C1, C2 through 1x1 adapters)", type=float)
    add("distill_soft", "weight of the soft-label term (classification KL on positives + hard negatives)", type=float)
    add("distill_temperature", "temperature of the soft labels", type=float)
    switch("teacher_half", "teacher_half", text="run the teacher in float16 on CUDA")
    add(
        "reconstruct",
        "weight of an auxiliary L1 loss rebuilding each sample's image at full resolution from the bridge output "
        "(a training-only head; needs the images like --teacher; default 0: off)",
        type=float,
        metavar="W",
    )
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
    add(
        "time_budget",
        "stop cleanly after this many seconds of training steps (validation and checkpoints not counted)",
        type=float,
        metavar="SECONDS",
    )
    add(
        "wall_budget",
        "wall-clock budget from the process start (set-up, statistics, validation, checkpoints included): stop "
        "before an epoch predicted not to fit, keeping --final_margin for what follows",
        type=float,
        metavar="SECONDS",
    )
    add(
        "final_margin",
        "seconds of --wall_budget left for after training, e.g. a final evaluation (default: 10%% of it, at most 1800)",
        type=float,
        metavar="SECONDS",
    )
    add("val_every", "validate every N epochs (and after the last)", type=int)
    add("val_subset", "validate on the first K validation images (the whole split at the end)", type=int, metavar="K")
    add("progress_every", "a progress line every this many seconds (0: none)", type=float, metavar="SECONDS")
    add(
        "dist_timeout",
        "torchrun process-group timeout in minutes: how long ranks wait for rank 0's statistics, validation and "
        "checkpoints",
        type=float,
        metavar="MINUTES",
    )
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
    given = {k: v for k, v in vars(args).items() if k in FIELDS}
    base = read_config_file(args.config) if getattr(args, "config", None) else {}
    return TrainConfig(**{**base, **given}).validate()


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        outcome = run_training(config)
    except KeyboardInterrupt:  # Ctrl-C before the first step, or a second one: no clean stop
        print(
            "latentface train: interrupted (SIGINT) without a clean stop; a last.pth saved before resumes",
            file=sys.stderr,
        )
        return 128 + signal.SIGINT.value
    print(outcome.run_dir)
    return outcome.exit_status
