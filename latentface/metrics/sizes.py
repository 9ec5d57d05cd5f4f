"""Face-size buckets and the WIDER AP per bucket."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from latentface.metrics.wider import match_predictions, voc_ap

#: Face height buckets in pixels: tiny < 16 <= small < 32 <= medium <= 96 < large.
SIZE_BUCKETS = ("tiny", "small", "medium", "large")
#: The bucket edges in pixels of face height (y2 - y1), between the :data:`SIZE_BUCKETS`.
BUCKET_EDGES = (16, 32, 96)


def size_buckets(boxes: np.ndarray) -> dict[str, np.ndarray]:
    """Bucket membership by face height y2 - y1 (WIDER's h): tiny < 16 <= small < 32 <= medium <= 96 < large."""
    height = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height = height[:, 3] - height[:, 1]
    small, medium, large = BUCKET_EDGES
    return {
        "tiny": height < small,
        "small": (height >= small) & (height < medium),
        "medium": (height >= medium) & (height <= large),
        "large": height > large,
    }


def bucket_index(boxes: np.ndarray) -> np.ndarray:
    """Per box the index of its height bucket in :data:`SIZE_BUCKETS` (-1 for a non-finite height)."""
    member = size_buckets(boxes)
    bucket = np.full(len(next(iter(member.values()))), -1)
    for i, name in enumerate(SIZE_BUCKETS):
        bucket[member[name]] = i
    return bucket


def ap_by_size(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any], iou_threshold: float = 0.5) -> dict:
    """WIDER AP per face-height bucket: ``{bucket: {"ap": float or None, "faces": n}}``.

    Faces outside the bucket are treated as ignored, so a detection of them is
    neither counted nor penalised; scores are normalised over the whole set as for
    the overall AP. A bucket without faces has AP None.
    """
    matches = match_predictions(predictions, ground_truth, iou_threshold)
    gt = matches.ground_truth
    in_bucket = {key: size_buckets(boxes) for key, (boxes, _) in gt.items()}
    result = {}
    for name in SIZE_BUCKETS:
        ignores = {key: ignore | ~in_bucket[key][name] for key, (_, ignore) in gt.items()}
        precision, recall, faces = matches.curve(ignores)
        result[name] = {"ap": voc_ap(recall, precision) if faces else None, "faces": faces}
    return result
