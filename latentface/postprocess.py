"""From raw head outputs to detections: decode, threshold, top-k, NMS, keep-top-k."""
from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from latentface.boxes import decode_boxes, decode_landmarks

# Operating points (DESIGN.md 2): evaluation keeps low-score boxes, display does not.
EVAL_CONF = 0.02
DISPLAY_CONF = 0.6


@torch.no_grad()
def postprocess(
    outputs,
    anchors: torch.Tensor,
    conf: float = EVAL_CONF,
    nms_iou: float = 0.4,
    top_k: int = 5000,
    keep_top_k: int = 750,
) -> list[dict[str, torch.Tensor]]:
    """Per image ``{"boxes" [K,4] xyxy pixels, "scores" [K], "landmarks" [K,5,2]}``, best first.

    NMS runs once for the whole batch with ``batched_nms`` keyed by image, so boxes of
    different images never suppress each other.
    """
    logits, box_out, lmk_out = outputs
    scores = logits.float().softmax(-1)[..., 1]  # [B, A]
    batch = scores.shape[0]
    cand_img, cand_idx, cand_score = [], [], []
    for b in range(batch):
        idx = torch.nonzero(scores[b] > conf).squeeze(1)
        s = scores[b, idx]
        if len(s) > top_k:
            s, order = s.topk(top_k)
            idx = idx[order]
        cand_img.append(torch.full_like(idx, b))
        cand_idx.append(idx)
        cand_score.append(s)
    img, idx, score = torch.cat(cand_img), torch.cat(cand_idx), torch.cat(cand_score)
    boxes = decode_boxes(box_out[img, idx].float(), anchors[idx])
    landmarks = decode_landmarks(lmk_out[img, idx].float(), anchors[idx])
    keep = batched_nms(boxes, score, img, nms_iou)  # sorted by decreasing score
    results = []
    for b in range(batch):
        k = keep[img[keep] == b][:keep_top_k]
        results.append({"boxes": boxes[k], "scores": score[k], "landmarks": landmarks[k]})
    return results
