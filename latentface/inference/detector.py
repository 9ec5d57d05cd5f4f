"""The :class:`Detector` API: a trained model plus its operating point, run on latents.

:func:`predict_dataset` runs it over a dataset (the evaluation's prediction format);
:func:`detect_files` over latent files in batches; :func:`load_model_latent` reads one file
for a model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from latentface.data.dataset import BadLatentError, collate_faces, load_latent
from latentface.inference.operating_point import OperatingPoint
from latentface.inference.postprocessing import postprocess
from latentface.model.builder import model_from_checkpoint
from latentface.util.device import resolve_device

ON_BAD_LATENT = ("raise", "skip")


class Detector:
    """A trained model plus its operating point; call it on latents to get faces.

    ``detector(latents)`` takes [B, C, H, W] or [C, H, W] (tensor or array) and returns one dict
    per image: ``boxes`` [K, 4] xyxy in image pixels, ``scores`` [K], ``landmarks`` [K, 5, 2],
    as float32 numpy arrays, best first.

    ``point`` (default: the evaluation point, conf 0.02) with ``overrides`` (``conf``, ``nms``,
    ``topk``, ``keep``) applied is :attr:`point`; ``device`` is a name as
    :func:`~latentface.util.device.resolve_device` takes it (default: a GPU when there is one).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        point: OperatingPoint | None = None,
        device: str | torch.device | None = None,
        **overrides: Any,
    ):
        self.point = (point or OperatingPoint.evaluation()).replace(**overrides)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.source: str | None = None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        point: OperatingPoint | None = None,
        **overrides: Any,
    ) -> Detector:
        """The model a checkpoint describes, in eval mode, at ``point`` with ``overrides`` applied
        (e.g. ``conf=0.6``)."""
        model, _ = model_from_checkpoint(path)
        detector = cls(model, point=point, device=device, **overrides)
        detector.source = str(path)
        return detector

    @property
    def in_channels(self) -> int:
        return int(self.model.input_mean.numel())

    @torch.no_grad()
    def __call__(self, inputs) -> list[dict[str, np.ndarray]]:
        x = torch.as_tensor(np.asarray(inputs) if not torch.is_tensor(inputs) else inputs, dtype=torch.float32)
        if x.ndim == 3:
            x = x[None]
        x = x.to(self.device)
        outputs = self.model(x)
        dets = postprocess(outputs, self.model.anchors(x), self.point)
        return [{k: v.cpu().numpy() for k, v in d.items()} for d in dets]


def predict_dataset(detector: Detector, dataset, batch_size: int = 8, workers: int = 0, progress: bool = True):
    """Run ``detector`` over a dataset of (input, target) pairs.

    Returns ``{key: [K, 5] (x1, y1, x2, y2, score)}`` -- the evaluation's prediction format --
    and ``{key: [K, 5, 2]}`` landmarks.
    """
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_faces)
    predictions, landmarks = {}, {}
    for inputs, targets in tqdm(loader, desc="detect", unit="batch", disable=not progress):
        for det, target in zip(detector(inputs), targets):
            predictions[target["key"]] = np.concatenate([det["boxes"], det["scores"][:, None]], axis=1)
            landmarks[target["key"]] = det["landmarks"]
    return predictions, landmarks


def load_model_latent(path: str | os.PathLike, in_channels: int) -> torch.Tensor:
    """Read a latent file for a model with ``in_channels`` input channels -> float32 [C, H, W].

    Missing, unreadable, mis-shaped or non-finite files raise
    :class:`~latentface.data.dataset.BadLatentError` naming the file.
    """
    latent = load_latent(path)
    if latent.shape[0] != in_channels:
        raise BadLatentError(
            f"{path}: latent shape {list(latent.shape)}, the model expects [{in_channels}, H, W] "
            f"(a [1, {in_channels}, H, W] or [{in_channels}, H, W] array)"
        )
    return latent


def detect_files(
    detector: Detector,
    files: list[Path],
    batch_size: int = 8,
    on_bad_latent: str = "raise",
    progress: bool = True,
    skipped: dict[str, str] | None = None,
) -> Iterator[tuple[Path, torch.Tensor, dict[str, np.ndarray]]]:
    """(file, latent [C,H,W], detections) per file, run in batches of same-shaped consecutive latents.

    A bad latent stops with an error naming it (after yielding every file before it), or with
    ``on_bad_latent="skip"`` is recorded in ``skipped`` (path -> reason) and left out. A batch is
    run as soon as it is full, so results come as the files are read.
    """
    if on_bad_latent not in ON_BAD_LATENT:
        raise ValueError(f"on_bad_latent must be 'raise' or 'skip', got {on_bad_latent!r}")
    skipped = {} if skipped is None else skipped
    batch: list[tuple[Path, torch.Tensor]] = []

    def flush():
        dets = detector(torch.stack([latent for _, latent in batch]))
        out = [(file, latent, det) for (file, latent), det in zip(batch, dets)]
        batch.clear()
        return out

    for file in tqdm(files, desc="detect", unit="latent", disable=not progress):
        try:
            latent = load_model_latent(file, detector.in_channels)
        except BadLatentError as exc:
            if on_bad_latent == "raise":
                if batch:  # the good files before it are detected first: nothing before the bad file is lost
                    yield from flush()
                raise
            skipped[str(file)] = str(exc)
            continue
        if batch and batch[0][1].shape != latent.shape:
            yield from flush()
        batch.append((file, latent))
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()
