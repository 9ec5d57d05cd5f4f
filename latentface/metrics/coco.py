"""COCO box mAP of a face prediction set, from pycocotools."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from latentface.boxes import xyxy_to_xywh
from latentface.metrics.wider import ground_truth_set, no_faces_error, prediction_set


def coco_map(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any]) -> dict[str, float]:
    """COCO box AP from pycocotools: ``{"mAP": AP@[.5:.95], "AP50": AP@.5}``.

    Ignored faces are crowd regions (detections on them are neither counted nor
    penalised). Unlike the WIDER protocol, false positives on face-less images count.
    Up to max(100, most predictions in one image) detections per image are kept.
    """
    # imported here (start-up time): pycocotools is needed by `latentface evaluate` only, not by training's AP
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = ground_truth_set(ground_truth)
    preds = prediction_set(predictions, gt)
    if not any((~ignore).any() for _, ignore in gt.values()):
        raise no_faces_error()
    if not any(len(p) for p in preds.values()):
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
        evaluator.params.maxDets = [1, 10, max(100, max(len(p) for p in preds.values()))]
        # only the all-sizes range is reported: evaluating COCO's small/medium/large too costs 4x
        evaluator.params.areaRng, evaluator.params.areaRngLbl = evaluator.params.areaRng[:1], ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    # summarize() hard-codes 100 detections for its first number, so read the table directly
    precision = evaluator.eval["precision"][:, :, 0, 0, -1]  # [IoU threshold, recall point]
    at_50 = np.isclose(evaluator.params.iouThrs, 0.5)

    def mean(values):
        return float(values[values > -1].mean())

    return {"mAP": mean(precision), "AP50": mean(precision[at_50])}
