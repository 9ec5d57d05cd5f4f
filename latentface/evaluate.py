"""The evaluation names at their original path (re-exports only; no logic lives here).

The metrics are in :mod:`latentface.metrics`, the WIDER text prediction files in
:mod:`latentface.formats.widerface`, running a checkpoint over a split in
:mod:`latentface.inference.evaluate` and the ``latentface evaluate`` command in
:mod:`latentface.cli.evaluate`.
"""

from latentface.formats.widerface import read_widerface_predictions, write_widerface_predictions
from latentface.inference.evaluate import evaluate_checkpoint
from latentface.metrics import (
    SIZE_BUCKETS,
    THRESH_NUM,
    THRESHOLDS,
    WIDER_MAT_FILES,
    WIDER_SUBSETS,
    ap_by_size,
    coco_map,
    evaluation_report,
    format_report,
    iou_plus_one,
    load_wider_mat,
    mat_frame_transform,
    match_outcomes,
    plot_pr_curve,
    size_buckets,
    to_mat_frame,
    voc_ap,
    wider_ap,
    wider_easy_medium_hard,
    wider_pr_curve,
)

__all__ = [
    "SIZE_BUCKETS",
    "THRESHOLDS",
    "THRESH_NUM",
    "WIDER_MAT_FILES",
    "WIDER_SUBSETS",
    "ap_by_size",
    "coco_map",
    "evaluate_checkpoint",
    "evaluation_report",
    "format_report",
    "iou_plus_one",
    "load_wider_mat",
    "mat_frame_transform",
    "match_outcomes",
    "plot_pr_curve",
    "read_widerface_predictions",
    "size_buckets",
    "to_mat_frame",
    "voc_ap",
    "wider_ap",
    "wider_easy_medium_hard",
    "wider_pr_curve",
    "write_widerface_predictions",
]
