"""Anchor matching and RetinaFace's multi-task loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, box_iou

from latentface.boxes import encode_boxes, encode_landmarks

POSITIVE_IOU = 0.35
BEST_ANCHOR_MIN_IOU = 0.2


def valid_faces(boxes: torch.Tensor) -> torch.Tensor:
    """Mask of faces with positive width and height: zero-area boxes never reach the loss."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def match_anchors(
    boxes: torch.Tensor,
    anchors: torch.Tensor,
    positive_iou: float = POSITIVE_IOU,
    best_min_iou: float = BEST_ANCHOR_MIN_IOU,
) -> torch.Tensor:
    """Index of the face each anchor is assigned to, or -1 for background.

    ``boxes`` [N, 4] xyxy (valid faces only), ``anchors`` [A, 4] cxcywh. An anchor is positive
    when its best IoU with a face is >= ``positive_iou``; each face also takes its own best
    anchor when that IoU is >= ``best_min_iou`` (so small faces are not left without one).
    """
    matched = torch.full((anchors.shape[0],), -1, dtype=torch.long, device=anchors.device)
    if boxes.numel() == 0:
        return matched
    iou = box_iou(boxes, box_convert(anchors, "cxcywh", "xyxy"))  # [N, A]
    best_iou, best_face = iou.max(dim=0)
    matched = torch.where(best_iou >= positive_iou, best_face, matched)
    faces = (iou.max(dim=1).values >= best_min_iou).nonzero().squeeze(1)
    return _take_best_anchors(matched, iou, faces)


def _take_best_anchors(matched: torch.Tensor, iou: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``matched`` with each of ``faces`` (indices into ``iou``'s rows) assigned its best-overlapping anchor.
    Where two faces share a best anchor the later face takes it, as in RetinaFace, deterministically."""
    return matched.scatter_reduce(0, iou[faces].argmax(dim=1), faces, reduce="amax", include_self=False)


ATSS_TOPK = 9


def match_anchors_adaptive(
    boxes: torch.Tensor, anchors: torch.Tensor, levels: torch.Tensor, topk: int = ATSS_TOPK
) -> torch.Tensor:
    """Adaptive training sample selection (ATSS, Zhang et al., CVPR 2020): index of each anchor's face or -1.

    Per face, the anchors of the ``topk`` locations of each pyramid level nearest the face's centre are
    candidates (ATSS's k = 9 was set with one anchor per location; with several, each location brings all
    of them, else 9 anchors would cover 1.5 locations of the six-per-location layout); those whose IoU
    reaches the mean + standard deviation of the candidates' IoUs, and whose centre lies inside the face,
    are positive. The threshold adapts to the face's size: a face smaller than
    the smallest anchor still gets its best-overlapping anchors, where a fixed IoU threshold leaves it one
    at most; a face with no anchor centre inside it keeps its single best anchor. An anchor claimed by
    several faces goes to the one it overlaps most. ``levels`` [A] is the level of
    each anchor (:meth:`latentface.anchors.AnchorLayout.levels_of`).
    """
    matched = torch.full((anchors.shape[0],), -1, dtype=torch.long, device=anchors.device)
    if boxes.numel() == 0:
        return matched
    corners = box_convert(anchors, "cxcywh", "xyxy")
    iou = box_iou(boxes, corners)  # [N, A]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    distance = torch.cdist(centres, anchors[:, :2])  # [N, A]
    candidates = torch.zeros_like(iou, dtype=torch.bool)
    for level in levels.unique():
        where = (levels == level).nonzero().squeeze(1)
        per_location = int((anchors[where, :2] == anchors[where[0], :2]).all(dim=1).sum())
        nearest = distance[:, where].topk(min(topk * per_location, len(where)), dim=1, largest=False).indices
        candidates[torch.arange(len(boxes), device=boxes.device)[:, None], where[nearest]] = True
    count = candidates.sum(1, keepdim=True)
    mean = (iou * candidates).sum(1, keepdim=True) / count
    std = (((iou - mean) ** 2 * candidates).sum(1, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
    cx, cy = anchors[None, :, 0], anchors[None, :, 1]
    inside = (cx > boxes[:, None, 0]) & (cx < boxes[:, None, 2]) & (cy > boxes[:, None, 1]) & (cy < boxes[:, None, 3])
    positive = candidates & (iou >= mean + std) & inside
    best_iou, best_face = torch.where(positive, iou, -1.0).max(dim=0)
    matched = torch.where(best_iou >= 0, best_face, matched)
    # A face with no anchor centre inside it (smaller than the stride) keeps its best-overlapping anchor.
    bare = ~positive.any(dim=1) & (iou.max(dim=1).values > 0)
    return _take_best_anchors(matched, iou, bare.nonzero().squeeze(1))


MATCHINGS = ("iou", "adaptive")


class MultiBoxLoss(nn.Module):
    """2 x box smooth-L1 + softmax CE with 7:1 hard-negative mining + landmark smooth-L1.

    Box and class losses are averaged over positive anchors, the landmark loss over positive
    anchors whose face has landmarks. Each image contributes at least ``min_negatives`` mined
    negatives, so images without faces still teach the background. ``matching`` is ``iou``
    (RetinaFace's fixed thresholds) or ``adaptive`` (ATSS; needs the anchors' ``levels``).
    """

    def __init__(
        self,
        matching: str = "iou",
        positive_iou: float = POSITIVE_IOU,
        best_min_iou: float = BEST_ANCHOR_MIN_IOU,
        neg_pos_ratio: int = 7,
        min_negatives: int = 7,
        box_weight: float = 2.0,
        landmark_weight: float = 1.0,
    ):
        super().__init__()
        if matching not in MATCHINGS:
            raise ValueError(f"unknown anchor matching {matching!r}; choose one of {list(MATCHINGS)}")
        self.matching = matching
        self.positive_iou, self.best_min_iou = positive_iou, best_min_iou
        self.neg_pos_ratio, self.min_negatives = neg_pos_ratio, min_negatives
        self.box_weight, self.landmark_weight = box_weight, landmark_weight

    def match(self, boxes: torch.Tensor, anchors: torch.Tensor, levels: torch.Tensor | None) -> torch.Tensor:
        """Index of each anchor's face (valid ``boxes`` only) or -1, by this loss's matching."""
        if self.matching == "iou":
            return match_anchors(boxes, anchors, self.positive_iou, self.best_min_iou)
        if levels is None:
            raise ValueError("adaptive matching needs each anchor's pyramid level (AnchorLayout.levels_of)")
        return match_anchors_adaptive(boxes, anchors, levels)

    def targets(self, targets: list[dict], anchors: torch.Tensor, levels: torch.Tensor | None = None):
        """Per-anchor labels (1 face, 0 background), box and landmark targets and landmark masks."""
        labels, box_t, lmk_t, lmk_mask = [], [], [], []
        for t in targets:
            boxes = t["boxes"].to(anchors)
            keep = valid_faces(boxes)
            boxes = boxes[keep]
            landmarks = t["landmarks"].to(anchors)[keep]
            has_lmk = t["has_landmarks"].to(anchors.device)[keep]
            matched = self.match(boxes, anchors, levels)
            pos = matched >= 0
            idx = matched.clamp(min=0)
            labels.append(pos.long())
            if len(boxes):
                box_t.append(encode_boxes(boxes[idx], anchors))
                lmk_t.append(encode_landmarks(landmarks[idx], anchors))
                lmk_mask.append(pos & has_lmk[idx])
            else:
                box_t.append(anchors.new_zeros(anchors.shape))
                lmk_t.append(anchors.new_zeros((anchors.shape[0], 10)))
                lmk_mask.append(torch.zeros_like(pos))
        return torch.stack(labels), torch.stack(box_t), torch.stack(lmk_t), torch.stack(lmk_mask)

    def forward(
        self, outputs, targets: list[dict], anchors: torch.Tensor, levels: torch.Tensor | None = None, matched=None
    ) -> dict[str, torch.Tensor]:
        """The weighted total and its parts; ``matched`` is :meth:`targets`' result where the caller needs
        the positives too (distillation), so the anchors are matched once."""
        logits, box_out, lmk_out = outputs
        if logits.shape[1] != anchors.shape[0]:
            raise ValueError(f"model produced {logits.shape[1]} anchors' outputs but the layout has {anchors.shape[0]}")
        labels, box_t, lmk_t, lmk_mask = self.targets(targets, anchors, levels) if matched is None else matched
        pos = labels > 0
        num_pos = pos.sum()
        norm = num_pos.clamp(min=1).to(logits.dtype)

        box_loss = F.smooth_l1_loss(box_out[pos].float(), box_t[pos], reduction="sum") / norm
        n_lmk = lmk_mask.sum().clamp(min=1)
        lmk_loss = F.smooth_l1_loss(lmk_out[lmk_mask].float(), lmk_t[lmk_mask], reduction="sum") / n_lmk

        # Hard-negative mining: per image, the negatives with the highest loss, 7 per positive.
        ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
        mining = ce.detach().masked_fill(pos, -1.0)
        rank = mining.argsort(dim=1, descending=True).argsort(dim=1)
        num_neg = (self.neg_pos_ratio * pos.sum(1)).clamp(min=self.min_negatives, max=labels.shape[1] - 1)
        neg = (rank < num_neg[:, None]) & ~pos
        cls_loss = ce[pos | neg].sum() / norm

        total = self.box_weight * box_loss + cls_loss + self.landmark_weight * lmk_loss
        return {"total": total, "box": box_loss, "cls": cls_loss, "landmark": lmk_loss}
