"""Detection from latents: the :class:`Detector` API (the ``detect`` subcommand builds on it)."""
from __future__ import annotations

import os

import numpy as np
import torch
from tqdm.auto import tqdm

from latentface.checkpoint import model_from_checkpoint
from latentface.postprocess import EVAL_CONF, postprocess


class Detector:
    """A trained model plus its operating point; call it on latents to get faces.

    ``detector(latents)`` takes [B, C, H, W] or [C, H, W] (tensor or array) and returns one dict
    per image: ``boxes`` [K, 4] xyxy in image pixels, ``scores`` [K], ``landmarks`` [K, 5, 2],
    as float32 numpy arrays, best first.
    """

    def __init__(self, model: torch.nn.Module, conf: float = EVAL_CONF, nms: float = 0.4, top_k: int = 5000,
                 keep: int = 750, device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.conf, self.nms, self.top_k, self.keep = conf, nms, top_k, keep

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device=None, **thresholds) -> "Detector":
        model, _ = model_from_checkpoint(path)
        return cls(model, device=device, **thresholds)

    @torch.no_grad()
    def __call__(self, inputs) -> list[dict[str, np.ndarray]]:
        x = torch.as_tensor(np.asarray(inputs) if not torch.is_tensor(inputs) else inputs, dtype=torch.float32)
        if x.ndim == 3:
            x = x[None]
        x = x.to(self.device)
        outputs = self.model(x)
        dets = postprocess(outputs, self.model.anchors(x), self.conf, self.nms, self.top_k, self.keep)
        return [{k: v.cpu().numpy() for k, v in d.items()} for d in dets]


def predict_dataset(detector: Detector, dataset, batch_size: int = 8, workers: int = 0, progress: bool = True):
    """Run ``detector`` over a dataset of (input, target) pairs.

    Returns ``{key: [K, 5] (x1, y1, x2, y2, score)}`` -- the evaluation's prediction format --
    and ``{key: [K, 5, 2]}`` landmarks.
    """
    from torch.utils.data import DataLoader

    from latentface.data.dataset import collate_faces

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_faces)
    predictions, landmarks = {}, {}
    for inputs, targets in tqdm(loader, desc="detect", unit="batch", disable=not progress):
        for det, target in zip(detector(inputs), targets):
            predictions[target["key"]] = np.concatenate([det["boxes"], det["scores"][:, None]], axis=1)
            landmarks[target["key"]] = det["landmarks"]
    return predictions, landmarks
