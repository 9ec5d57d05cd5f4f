"""Every evaluation number in one JSON-serialisable report, its text summary and its PR plot."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from latentface.metrics.coco import coco_map
from latentface.metrics.mat import load_wider_mat, wider_subset_curves
from latentface.metrics.sizes import ap_by_size
from latentface.metrics.wider import equal_scores, ground_truth_set, prediction_set, voc_ap, wider_pr_curve

#: How many image keys a warning names at most.
EXAMPLES = 3


def missing_predictions(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any]) -> list[str]:
    """The ground-truth keys without a prediction entry, in ground-truth order (they count as missed faces)."""
    return [key for key in ground_truth if key not in predictions]


def missing_warning(missing: list[str], images: int, faces: int, of: str = "the ground truth") -> str:
    """One line: how many images have no prediction, how many faces that misses, a few example keys."""
    shown = ", ".join(missing[:EXAMPLES]) + (", ..." if len(missing) > EXAMPLES else "")
    counted = f"{faces} faces counted as missed"
    return f"{len(missing)} of {images} images of {of} have no predictions ({counted}), e.g. {shown}"


def evaluation_report(
    predictions: Mapping[str, Any],
    ground_truth: Mapping[str, Any],
    gt_dir: str | os.PathLike | None = None,
    coco: bool = True,
) -> dict:
    """Every evaluation number in one JSON-serialisable dict.

    Keys: images, faces (counted), ignored_faces, predictions, images_without_predictions
    (ground-truth images with no prediction entry: their faces count as missed), ap (WIDER
    protocol), ap_by_size, coco {mAP, AP50} at COCO's 100 detections per image (unless
    ``coco=False``: pycocotools takes minutes on hundreds of detections per image over
    thousands of images), wider {easy, medium, hard} when ``gt_dir`` holds the official .mat
    files, warnings (lines saying what lowers the numbers without being an error: images
    without predictions, all scores equal), and curves {name: {precision, recall}} for
    :func:`plot_pr_curve`.
    """
    gt = ground_truth_set(ground_truth)
    preds = prediction_set(predictions, gt)
    precision, recall, _ = wider_pr_curve(preds, ground_truth)
    missing = missing_predictions(preds, gt)
    warnings = []
    if missing:
        faces = int(sum((~gt[key][1]).sum() for key in missing))
        warnings.append(missing_warning(missing, len(gt), faces))
    if equal_scores(preds):
        warnings.append(
            "every prediction has the same score: the official min-max normalisation divides 0 by 0, "
            "so the WIDER AP is 0 (give the detector's own scores)"
        )
    report = {
        "images": len(gt),
        "faces": int(sum((~ignore).sum() for _, ignore in gt.values())),
        "ignored_faces": int(sum(ignore.sum() for _, ignore in gt.values())),
        "predictions": int(sum(len(p) for p in preds.values())),
        "images_without_predictions": len(missing),
        "ap": voc_ap(recall, precision),
        "ap_by_size": ap_by_size(preds, ground_truth),
        "warnings": warnings,
        "curves": {"all": {"precision": precision.tolist(), "recall": recall.tolist()}},
    }
    if coco:
        report["coco"] = coco_map(preds, ground_truth)
    if gt_dir is not None:
        add_wider_subsets(report, preds, load_wider_mat(gt_dir))
    return report


def add_wider_subsets(report: dict, predictions: Mapping[str, Any], wider: Mapping[str, dict]) -> dict:
    """Add the official easy/medium/hard AP (``report["wider"]``) and curves to a report, in place.

    ``wider``: :func:`~latentface.metrics.mat.load_wider_mat` records of every image of the
    benchmark, predicted or not (an image without predictions counts its faces as missed, as in
    the official code; ``report["wider_images_without_predictions"]`` counts them and a warning
    names a few); the predictions must be in the .mat's pixel frame
    (:func:`~latentface.metrics.mat.to_mat_frame`).
    """
    curves = wider_subset_curves(predictions, wider)
    report["wider"] = {subset: voc_ap(r, p) for subset, (p, r) in curves.items()}
    missing = missing_predictions(predictions, wider)
    report["wider_images_without_predictions"] = len(missing)
    if missing:
        faces = int(sum(wider[key]["hard"].sum() for key in missing))
        report.setdefault("warnings", []).append(missing_warning(missing, len(wider), faces, "the WIDER .mat (hard)"))
    report.setdefault("curves", {}).update(
        {subset: {"precision": p.tolist(), "recall": r.tolist()} for subset, (p, r) in curves.items()}
    )
    return report


def _named_curves(report_or_curves: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (precision, recall)} from a report, a {name: curve} mapping or one curve tuple."""
    if isinstance(report_or_curves, Mapping) and "curves" in report_or_curves:
        report_or_curves = report_or_curves["curves"]
    if not isinstance(report_or_curves, Mapping):
        report_or_curves = {"all": report_or_curves}
    curves = {}
    for name, curve in report_or_curves.items():
        if isinstance(curve, Mapping):
            precision, recall = curve["precision"], curve["recall"]
        else:
            precision, recall = curve[0], curve[1]
        curves[name] = (np.asarray(precision, dtype=np.float64), np.asarray(recall, dtype=np.float64))
    return curves


def plot_pr_curve(report_or_curves: Any, path: str | os.PathLike, title: str = "WIDER FACE precision-recall") -> Path:
    """Write the precision-recall curve(s) as a PNG.

    Takes an :func:`evaluation_report`, a ``{name: (precision, recall, ...)}`` mapping or
    the tuple :func:`wider_pr_curve` returns. Each legend entry carries its AP.
    """
    # imported here (start-up time: the metrics are used without plots); the Figure API draws
    # and saves without pyplot state or a display
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    for name, (precision, recall) in _named_curves(report_or_curves).items():
        shown = recall > 0  # thresholds above every proposal carry no point
        ax.plot(recall[shown], precision[shown], label=f"{name} (AP {voc_ap(recall, precision):.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def format_report(report: Mapping[str, Any], warnings: bool = True) -> str:
    """The report's numbers as a few readable lines (curves left out; ``warnings=False``: the
    warnings too, for a caller that prints them elsewhere)."""
    lines = [
        f"{report['images']} images, {report['faces']} faces ({report['ignored_faces']} ignored), "
        f"{report['predictions']} predictions",
        f"WIDER AP@0.5: {report['ap']:.4f}",
    ]
    sizes = ", ".join(
        f"{name} {v['ap']:.4f} ({v['faces']})" if v["ap"] is not None else f"{name} - (0)"
        for name, v in report["ap_by_size"].items()
    )
    lines.append(f"AP by face height (faces): {sizes}")
    if "coco" in report:
        coco = report["coco"]
        lines.append(f"COCO mAP@[.5:.95]: {coco['mAP']:.4f}, AP50: {coco['AP50']:.4f} (100 detections per image)")
        if "beyond_100" in coco:
            more = coco["beyond_100"]
            lines.append(
                f"  not COCO's standard: with up to {more['max_detections']} detections per image "
                f"mAP {more['mAP']:.4f}, AP50 {more['AP50']:.4f}"
            )
    if "wider" in report:
        lines.append("WIDER " + ", ".join(f"{k} {v:.4f}" for k, v in report["wider"].items()))
    lines += [f"warning: {w}" for w in report.get("warnings", [])] if warnings else []
    return "\n".join(lines)
