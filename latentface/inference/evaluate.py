"""Run a checkpoint over a dataset split for evaluation: the predictions the metrics score."""

from __future__ import annotations

import os

import torch

from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.errors import LatentfaceError
from latentface.inference.detector import Detector, predict_dataset
from latentface.inference.operating_point import OperatingPoint


class ChannelMismatchError(LatentfaceError, ValueError):
    """The split's latents do not have the channels the checkpoint expects."""


def evaluate_checkpoint(
    weight: str | os.PathLike,
    dataset_root: str | os.PathLike,
    split: str = "val",
    latent_type: str = "latent_75.npy",
    point: OperatingPoint | None = None,
    batch_size: int = 8,
    workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
):
    """Run a checkpoint over a split: (predictions {key: [K,5]}, landmarks {key: [K,5,2]}, dataset).

    ``point``: the operating point (default the evaluation's, conf 0.02: the PR curve needs
    the low-score boxes).
    """
    detector = Detector.from_checkpoint(weight, device=device, point=point or OperatingPoint.evaluation())
    dataset = NestedLatentWiderFaceDataset(dataset_root, split, latent_type)
    if dataset.expected_shape[0] != detector.in_channels:
        raise ChannelMismatchError(
            f"{dataset_root}/{split}: latents have {dataset.expected_shape[0]} channels, "
            f"{weight} expects {detector.in_channels}"
        )
    predictions, landmarks = predict_dataset(detector, dataset, batch_size, workers, progress)
    return predictions, landmarks, dataset
