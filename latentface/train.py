"""``latentface train``: train a latent (or RGB baseline) RetinaFace into a run directory.

Single process on a CPU or one GPU, or one process per GPU under ``torchrun`` (DDP)::

    latentface train --dataset_root data/retina-modify --epochs 100 --batch_size 16 --lr 1e-3 \\
        --model resnet50 --no_wandb --latent_type latent_75.npy
    torchrun --nproc_per_node 2 -m latentface.train --dataset_root data/retina-modify ...

The Python API is :class:`TrainConfig` and :func:`train`, re-exported here.
"""
from __future__ import annotations

import argparse
import sys

from latentface.checkpoint import CheckpointError
from latentface.training import TrainConfig, TrainingError, build_model_from_config, train
from latentface.training.config import config_from_args, configure_parser

__all__ = ["TrainConfig", "TrainingError", "build_model_from_config", "configure_parser", "run", "train"]


def run(args: argparse.Namespace) -> int:
    """Train; bad input (data, checkpoint, config) ends with one clear line and exit status 2."""
    from latentface.data.labels import LabelFormatError

    try:
        run_dir = train(config_from_args(args))
    except (TrainingError, CheckpointError, LabelFormatError, FileNotFoundError) as exc:
        print(f"latentface train: error: {exc}", file=sys.stderr)
        return 2
    print(run_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m latentface.train`` (what ``torchrun -m`` runs)."""
    parser = argparse.ArgumentParser(prog="latentface train", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
