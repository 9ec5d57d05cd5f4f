"""Face detection metrics in plain NumPy: the WIDER FACE protocol (:mod:`.wider`), AP by face
size (:mod:`.sizes`), the official .mat ground truth and its easy/medium/hard subsets
(:mod:`.mat`), COCO mAP (:mod:`.coco`) and the evaluation report and plot (:mod:`.report`).

Nothing here runs a model: predictions and ground truth come in as arrays.
"""

from latentface.metrics.coco import coco_map
from latentface.metrics.mat import (
    WIDER_MAT_FILES,
    WIDER_SUBSETS,
    load_wider_mat,
    mat_frame_transform,
    to_mat_frame,
    wider_easy_medium_hard,
    wider_subset_curves,
)
from latentface.metrics.report import add_wider_subsets, evaluation_report, format_report, plot_pr_curve
from latentface.metrics.sizes import BUCKET_EDGES, SIZE_BUCKETS, ap_by_size, bucket_index, size_buckets
from latentface.metrics.wider import (
    THRESH_NUM,
    THRESHOLDS,
    Matches,
    best_faces,
    ground_truth_arrays,
    ground_truth_set,
    iou_plus_one,
    match_outcomes,
    match_predictions,
    outcomes,
    prediction_array,
    prediction_set,
    voc_ap,
    wider_ap,
    wider_pr_curve,
)

__all__ = [
    "BUCKET_EDGES",
    "SIZE_BUCKETS",
    "THRESHOLDS",
    "THRESH_NUM",
    "WIDER_MAT_FILES",
    "WIDER_SUBSETS",
    "Matches",
    "add_wider_subsets",
    "ap_by_size",
    "best_faces",
    "bucket_index",
    "coco_map",
    "evaluation_report",
    "format_report",
    "ground_truth_arrays",
    "ground_truth_set",
    "iou_plus_one",
    "load_wider_mat",
    "mat_frame_transform",
    "match_outcomes",
    "match_predictions",
    "outcomes",
    "plot_pr_curve",
    "prediction_array",
    "prediction_set",
    "size_buckets",
    "to_mat_frame",
    "voc_ap",
    "wider_ap",
    "wider_easy_medium_hard",
    "wider_pr_curve",
    "wider_subset_curves",
]
