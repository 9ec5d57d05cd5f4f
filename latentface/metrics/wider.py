"""The WIDER FACE protocol: matching, the precision/recall curve and its AP.

The numbers follow the widely used Python evaluation of the benchmark
(``widerface_evaluate/evaluation.py``) step by step, so that they can be set next to
published figures:

1. Scores are min-max normalised over the whole prediction set. As in the official
   code the running minimum starts at 1 and the running maximum at 0, which is plain
   min-max for probabilities. Where every score is the same (and in [0, 1]) the official
   code divides 0 by 0: every normalised score is NaN, no threshold keeps any prediction,
   and the AP is 0. The same happens here (:attr:`Matches.equal_scores` says so, and the
   evaluation report carries a warning): one behaviour everywhere, the official one.
2. Per image, predictions in descending score order each take the face of highest
   IoU, with the +1 pixel convention (width = x2 - x1 + 1), when that IoU >= 0.5
   (:func:`match_outcomes`):

   - that face is ignored: the prediction is dropped (not a proposal, no penalty);
   - that face is not yet recalled: it is recalled now (a true positive);
   - that face was already recalled: the prediction stays a proposal that recalls
     nothing (a false positive), even when another, unrecalled face overlaps it by
     0.5 or more: there is no fall-back to the second-best face.

   A prediction whose best IoU is below 0.5 is a false positive.
3. Every image counts. An image without a prediction (no key, or an empty array) adds its
   faces to recall and nothing else: its faces are missed (the official code reads an empty
   prediction file so; it stops at a missing one). An image without a face adds its
   predictions as false positives: the official ``.mat`` ground truth gives each face-less
   validation image a dummy ``[0 0 0 0]`` box, so the official benchmark never skips such
   an image either, and label files (which hold no box for it) give the same AP here.
   ``count_faceless=False`` skips face-less images instead (what the official code would
   do with a truly empty box list, which its files never hold): outside the protocol.
4. At each of 1000 thresholds t = 0.999, 0.998, ..., 0 the proposals and recalled
   faces with normalised score >= t are summed over images:
   precision = recalled faces / proposals, recall = recalled faces / counted faces.
   Where there is no proposal yet, precision is 0 (the official code gets NaN there);
   recall is 0 at those thresholds too, so the AP is the same.
5. AP is the VOC AP of that curve: the area under the precision envelope (running
   maximum from the high-recall end).

Predictions are ``Mapping[key, array [K,5]]`` (x1, y1, x2, y2, score in input
pixels); ground truth is ``Mapping[key, obj]`` where ``obj`` has ``.boxes`` (xyxy
[N,4]) and ``.ignore`` (bool [N]) or is a dict with those keys (``ignore`` optional).
A key in the ground truth but not in the predictions is an image with no prediction;
a prediction key missing from the ground truth is an error (a naming mismatch would
otherwise score a silent zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

THRESH_NUM = 1000
#: Score thresholds of the official curve, highest first: 0.999, 0.998, ..., 0.0.
THRESHOLDS = 1.0 - (np.arange(THRESH_NUM) + 1) / THRESH_NUM


# --------------------------------------------------------------------- inputs


def prediction_array(value: Any, key: str) -> np.ndarray:
    """One image's predictions as float64 [K,5] (x1, y1, x2, y2, score); a clear error names the image."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 5))
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"predictions for {key!r}: expected an array [K,5] (x1,y1,x2,y2,score), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"predictions for {key!r}: non-finite values")
    return arr


def ground_truth_arrays(obj: Any, key: str = "?") -> tuple[np.ndarray, np.ndarray]:
    """(boxes float64 [N,4] xyxy, ignore bool [N]) of one image's ground truth.

    ``obj`` is a record with ``.boxes`` (and optionally ``.ignore``) or a dict with a
    ``"boxes"`` entry (and optionally ``"ignore"``); no ignore flags: nothing ignored.
    """
    if isinstance(obj, Mapping):
        if "boxes" not in obj:
            raise ValueError(f"ground truth for {key!r}: a dict needs a 'boxes' entry")
        boxes, ignore = obj["boxes"], obj.get("ignore")
    elif hasattr(obj, "boxes"):
        boxes, ignore = obj.boxes, getattr(obj, "ignore", None)
    else:
        raise ValueError(f"ground truth for {key!r}: expected .boxes/.ignore or a dict, got {type(obj).__name__}")
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
        raise ValueError(f"ground truth for {key!r}: expected finite boxes [N,4], got shape {boxes.shape}")
    ignore = np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore, dtype=bool).reshape(-1)
    if len(ignore) != len(boxes):
        raise ValueError(f"ground truth for {key!r}: {len(boxes)} boxes but {len(ignore)} ignore flags")
    return boxes, ignore


def ground_truth_set(ground_truth: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{key: (boxes, ignore)} of every image (see :func:`ground_truth_arrays`)."""
    return {key: ground_truth_arrays(obj, key) for key, obj in ground_truth.items()}


def prediction_set(predictions: Mapping[str, Any], gt_keys) -> dict[str, np.ndarray]:
    """{key: [K,5]} of every image; a key not in ``gt_keys`` is an error (a naming mismatch)."""
    preds = {key: prediction_array(value, key) for key, value in predictions.items()}
    unknown = [key for key in preds if key not in gt_keys]
    if unknown:
        raise ValueError(
            f"{len(unknown)} prediction key(s) not in the ground truth, e.g. {unknown[:3]}: "
            "keys must be the image names without directory or extension"
        )
    return preds


def no_faces_error(what: str = "the ground truth") -> ValueError:
    return ValueError(f"no face to evaluate: {what} is empty or every face is ignored")


# ----------------------------------------------------------------- matching


def iou_plus_one(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [len(a), len(b)] of xyxy boxes with the +1 pixel convention of the
    WIDER FACE evaluation: a box covers x2 - x1 + 1 pixels."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / union, 0.0)


def best_faces(boxes: np.ndarray, boxes_gt: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Per detection the index of its highest-IoU face (the first on ties), -1 below the threshold.

    Depends on the boxes only, so outcomes for several ignore masks can share it.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    boxes_gt = np.asarray(boxes_gt, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0 or len(boxes_gt) == 0:
        return np.full(len(boxes), -1, dtype=np.int64)
    iou = iou_plus_one(boxes, boxes_gt)
    return np.where(iou.max(axis=1) >= iou_threshold, iou.argmax(axis=1), -1)


def outcomes(face: np.ndarray, ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is a proposal, recalls a new face) per detection (best first) from its :func:`best_faces` index.

    A detection whose best face is ignored is not a proposal; the first detection to reach a
    counted face recalls it; any other proposal is a false positive.
    """
    face = np.asarray(face, dtype=np.int64)
    ignore = np.asarray(ignore, dtype=bool).reshape(-1)
    hit = face >= 0
    on_ignored = hit & ignore[np.maximum(face, 0)] if len(ignore) else np.zeros(len(face), bool)
    counted = np.flatnonzero(hit & ~on_ignored)
    recalls_new = np.zeros(len(face), bool)
    _, first = np.unique(face[counted], return_index=True)
    recalls_new[counted[first]] = True
    return ~on_ignored, recalls_new


def match_outcomes(
    boxes: np.ndarray, boxes_gt: np.ndarray, ignore: np.ndarray, iou_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Per detection of one image (best first): (is a proposal, recalls a new face), by the WIDER rules.

    Cumulative sums over a best-first prefix give the counts at any score threshold. On an
    image without faces every detection is a proposal that recalls nothing.
    """
    return outcomes(best_faces(boxes, boxes_gt, iou_threshold), ignore)


def equal_scores(preds: Mapping[str, np.ndarray]) -> bool:
    """True when the official min-max normalisation divides 0 by 0: at least one prediction and
    every score the same value in [0, 1] (then no threshold keeps a prediction: AP 0)."""
    scores = [p[:, 4] for p in preds.values() if len(p)]
    if not scores:
        return False
    low = min(1.0, min(float(s.min()) for s in scores))
    high = max(0.0, max(float(s.max()) for s in scores))
    return high == low


def _normalised_sorted(preds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scores min-max normalised over the set (official bounds), rows by descending score.

    All scores equal (0/0 in the official code, NaN scores that no threshold keeps): every
    normalised score is -inf here, which no threshold keeps either, so the AP is 0 as there.
    """
    scores = [p[:, 4] for p in preds.values() if len(p)]
    if not scores:
        return preds
    low = min(1.0, min(float(s.min()) for s in scores))
    high = max(0.0, max(float(s.max()) for s in scores))
    out = {}
    for key, p in preds.items():
        p = p.copy()
        p[:, 4] = -np.inf if high == low else (p[:, 4] - low) / (high - low)
        out[key] = p[np.argsort(-p[:, 4], kind="stable")]
    return out


def _image_counts(scores: np.ndarray, is_proposal: np.ndarray, recalls_new: np.ndarray):
    """Proposals and recalled faces at each threshold for one image (official ``image_eval``)."""
    # scores are descending, so the predictions kept at threshold t are a prefix
    kept = np.searchsorted(-scores, -THRESHOLDS, side="right")
    last = np.maximum(kept - 1, 0)
    proposals = np.where(kept > 0, np.cumsum(is_proposal)[last], 0)
    recalled = np.where(kept > 0, np.cumsum(recalls_new)[last], 0)
    return proposals, recalled


@dataclass
class Matches:
    """A prediction set matched to its ground truth, ready for curves under any ignore masks.

    ``ground_truth``: ``{key: (boxes, ignore)}``; ``images``: for each evaluated image its
    normalised scores (descending) and each prediction's :func:`best_faces` index;
    ``equal_scores``: every score was the same (the official 0/0: AP 0, see :func:`equal_scores`).
    """

    ground_truth: dict[str, tuple[np.ndarray, np.ndarray]]
    images: dict[str, tuple[np.ndarray, np.ndarray]]
    equal_scores: bool = False

    def curve(self, ignores: Mapping[str, np.ndarray] | None = None):
        """(precision [1000], recall [1000], number of counted faces) under one ignore mask per image
        (default: the ground truth's own)."""
        proposals = np.zeros(THRESH_NUM)
        recalled = np.zeros(THRESH_NUM)
        faces = 0
        for key, (_, own) in self.ground_truth.items():
            ignore = own if ignores is None else ignores[key]
            faces += int((~ignore).sum())
            if key in self.images:
                scores, face = self.images[key]
                p, r = _image_counts(scores, *outcomes(face, ignore))
                proposals += p
                recalled += r
        precision = np.divide(recalled, proposals, out=np.zeros(THRESH_NUM), where=proposals > 0)
        recall = recalled / faces if faces else np.zeros(THRESH_NUM)
        return precision, recall, faces


def match_predictions(
    predictions: Mapping[str, Any],
    ground_truth: Mapping[str, Any],
    iou_threshold: float = 0.5,
    count_faceless: bool = True,
) -> Matches:
    """Validate, normalise and match a prediction set (steps 1-3 of the module docstring).

    ``count_faceless``: the detections on images without faces count as false positives
    (the default, as in the official benchmark); False skips those images (outside the protocol).
    """
    gt = ground_truth_set(ground_truth)
    valid = prediction_set(predictions, gt)
    preds = _normalised_sorted(valid)
    images = {
        key: (p[:, 4], best_faces(p[:, :4], gt[key][0], iou_threshold))
        for key, p in preds.items()
        if len(p) and (count_faceless or len(gt[key][0]))
    }
    return Matches(gt, images, equal_scores(valid))


# -------------------------------------------------------------------- curve


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP: area under the precision envelope (the official ``voc_ap``)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def wider_pr_curve(
    predictions: Mapping[str, Any],
    ground_truth: Mapping[str, Any],
    iou_threshold: float = 0.5,
    count_faceless: bool = True,
):
    """The official WIDER FACE precision/recall curve (see the module docstring).

    Returns (precision [1000], recall [1000], thresholds [1000]); index i is the
    normalised-score threshold ``thresholds[i]`` = 1 - (i+1)/1000, so recall grows with i.
    ``count_faceless=False``: leave out the false positives on images without faces (not the protocol).
    """
    precision, recall, faces = match_predictions(predictions, ground_truth, iou_threshold, count_faceless).curve()
    if faces == 0:
        raise no_faces_error()
    return precision, recall, THRESHOLDS.copy()


def wider_ap(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any], iou_threshold: float = 0.5) -> float:
    """AP of the official WIDER FACE protocol (see the module docstring)."""
    precision, recall, _ = wider_pr_curve(predictions, ground_truth, iou_threshold)
    return voc_ap(recall, precision)
