"""Run a checkpoint over a dataset split for evaluation: the predictions the metrics score."""

from __future__ import annotations

import os

import torch

from latentface.data.dataset import BadLatentError, NestedLatentWiderFaceDataset
from latentface.errors import LatentfaceError
from latentface.inference.detector import ON_BAD_LATENT, Detector, predict_dataset
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
    on_bad_latent: str = "raise",
    skipped: dict[str, str] | None = None,
):
    """Run a checkpoint over a split: (predictions {key: [K,5]}, landmarks {key: [K,5,2]}, dataset).

    ``point``: the operating point (default the evaluation's, conf 0.02: the PR curve needs
    the low-score boxes). Every latent is checked before the model runs (header, shape,
    finiteness): a bad one raises a :class:`BadLatentError` naming it, or with
    ``on_bad_latent="skip"`` is recorded in ``skipped`` (path -> reason) and its image gets no
    prediction; ``dataset.records`` keeps every image, so its faces count as missed.
    """
    if on_bad_latent not in ON_BAD_LATENT:
        raise ValueError(f"on_bad_latent must be 'raise' or 'skip', got {on_bad_latent!r}")
    detector = Detector.from_checkpoint(weight, device=device, point=point or OperatingPoint.evaluation())
    dataset = NestedLatentWiderFaceDataset(dataset_root, split, latent_type)
    if dataset.expected_shape[0] != detector.in_channels:
        raise ChannelMismatchError(
            f"{dataset_root}/{split}: latents have {dataset.expected_shape[0]} channels, "
            f"{weight} expects {detector.in_channels}"
        )
    bad = dataset.check_latents(progress=progress)
    if bad and on_bad_latent == "raise":
        first = next(iter(bad.values()))
        raise BadLatentError(
            f"{first} ({len(bad)} bad latent file(s) in {dataset.root / split}, found before the model ran; "
            "--on_bad_latent skip leaves them out, their faces counted as missed)"
        )
    records = dict(dataset.records)
    if bad:
        if skipped is not None:
            skipped.update({path: str(exc) for path, exc in bad.items()})
        dataset.leave_out(bad)
    predictions, landmarks = predict_dataset(detector, dataset, batch_size, workers, progress)
    dataset.records = records  # the images left out stay in the ground truth, without predictions
    return predictions, landmarks, dataset
