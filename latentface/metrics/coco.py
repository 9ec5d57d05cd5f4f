"""COCO box mAP of a face prediction set, from pycocotools."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from latentface.boxes import xyxy_to_xywh
from latentface.metrics.wider import ground_truth_set, no_faces_error, prediction_set

#: COCO's standard number of detections kept per image (the best-scored ones).
COCO_MAX_DETECTIONS = 100


def coco_map(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any]) -> dict:
    """COCO box AP from pycocotools: ``{"mAP": AP@[.5:.95], "AP50": AP@.5}`` at COCO's standard
    100 detections per image (the best-scored 100), the numbers ``COCOeval.summarize`` prints first.

    Ignored faces are crowd regions (detections on them are neither counted nor penalised).
    False positives on face-less images count. When an image has more than 100 predictions,
    ``"beyond_100": {"max_detections": most in one image, "mAP", "AP50"}`` adds the numbers with
    every prediction kept, labelled as not COCO's standard (from the same evaluation pass).
    """
    # imported here (start-up time): pycocotools is needed by `latentface evaluate` only, not by training's AP
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = ground_truth_set(ground_truth)
    preds = prediction_set(predictions, gt)
    if not any((~ignore).any() for _, ignore in gt.values()):
        raise no_faces_error()
    most = max((len(p) for p in preds.values()), default=0)
    if most == 0:
        return {"mAP": 0.0, "AP50": 0.0}
    image_id = {key: i + 1 for i, key in enumerate(gt)}

    def xywh(box):
        return xyxy_to_xywh(box[:4]).tolist()

    annotations = []
    for key, (boxes, ignore) in gt.items():
        for box, ignored in zip(boxes, ignore):
            bbox = xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id[key],
                    "category_id": 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": int(ignored),
                }
            )
    detections = [
        {"image_id": image_id[key], "category_id": 1, "bbox": xywh(row), "score": float(row[4])}
        for key, p in preds.items()
        for row in p
    ]

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": [{"id": i} for i in image_id.values()],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "face"}],
        }
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        # evaluate() matches up to the last maxDets per image in score order; accumulate() then cuts
        # each image to every maxDets, so 100 is COCO's own number and a larger last entry adds
        # the all-detections one from the same matching
        max_dets = [1, 10, COCO_MAX_DETECTIONS] + ([most] if most > COCO_MAX_DETECTIONS else [])
        evaluator.params.maxDets = max_dets
        # only the all-sizes range is reported: evaluating COCO's small/medium/large too costs 4x
        evaluator.params.areaRng, evaluator.params.areaRngLbl = evaluator.params.areaRng[:1], ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    at_50 = np.isclose(evaluator.params.iouThrs, 0.5)

    def numbers(m: int) -> dict[str, float]:
        precision = evaluator.eval["precision"][:, :, 0, 0, m]  # [IoU threshold, recall point]
        return {"mAP": _mean(precision), "AP50": _mean(precision[at_50])}

    result: dict = numbers(2)
    if most > COCO_MAX_DETECTIONS:
        result["beyond_100"] = {"max_detections": most, **numbers(3)}
    return result


def _mean(values: np.ndarray) -> float:
    """COCOeval.summarize's mean: over the entries that exist (-1 marks none)."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0
