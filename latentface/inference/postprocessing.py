"""From raw head outputs to detections: decode, threshold, top-k, NMS, keep-top-k."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from latentface.boxes import decode_boxes, decode_landmarks
from latentface.inference.operating_point import OperatingPoint

#: What evaluation runs at (conf 0.02): the default of :func:`postprocess`.
EVALUATION_POINT = OperatingPoint.evaluation()


@torch.no_grad()
def postprocess(
    outputs,
    anchors: torch.Tensor,
    point: OperatingPoint = EVALUATION_POINT,
) -> list[dict[str, torch.Tensor]]:
    """Per image ``{"boxes" [K,4] xyxy pixels, "scores" [K], "landmarks" [K,5,2]}``, best first.

    ``point``: keep scores above ``point.conf``, the ``point.topk`` best per image, NMS at IoU
    ``point.nms``, then the ``point.keep`` best. NMS runs once for the whole batch with
    ``batched_nms`` keyed by image, so boxes of different images never suppress each other.
    """
    logits, box_out, lmk_out = outputs
    scores = logits.float().softmax(-1)[..., 1]  # [B, A]
    batch = scores.shape[0]
    cand_img, cand_idx, cand_score = [], [], []
    for b in range(batch):
        idx = torch.nonzero(scores[b] > point.conf).squeeze(1)
        s = scores[b, idx]
        if len(s) > point.topk:
            s, order = s.topk(point.topk)
            idx = idx[order]
        cand_img.append(torch.full_like(idx, b))
        cand_idx.append(idx)
        cand_score.append(s)
    img, idx, score = torch.cat(cand_img), torch.cat(cand_idx), torch.cat(cand_score)
    boxes = decode_boxes(box_out[img, idx].float(), anchors[idx])
    landmarks = decode_landmarks(lmk_out[img, idx].float(), anchors[idx])
    keep = batched_nms(boxes, score, img, point.nms)  # sorted by decreasing score
    results = []
    for b in range(batch):
        k = keep[img[keep] == b][: point.keep]
        results.append({"boxes": boxes[k], "scores": score[k], "landmarks": landmarks[k]})
    return results
