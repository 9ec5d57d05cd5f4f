"""Face detection metrics: the WIDER FACE protocol, AP by face size, the official
easy/medium/hard subsets, COCO mAP, and the per-image text format of the official
WIDER evaluation.

The WIDER numbers follow the widely used Python evaluation of the benchmark
(``widerface_evaluate/evaluation.py``) step by step, so that they can be set next to
published figures:

1. Scores are min-max normalised over the whole prediction set. As in the official
   code the running minimum starts at 1 and the running maximum at 0, which is plain
   min-max for probabilities. Where every score is the same the official code divides
   by zero; here every prediction then gets score 1 (a single operating point).
2. Per image, predictions in descending score order each take the face of highest
   IoU, with the +1 pixel convention (width = x2 - x1 + 1), when that IoU >= 0.5:

   - that face is ignored: the prediction is dropped (not a proposal, no penalty);
   - that face is not yet recalled: it is recalled now (a true positive);
   - that face was already recalled: the prediction stays a proposal that recalls
     nothing (a false positive), even when another, unrecalled face overlaps it by
     0.5 or more: there is no fall-back to the second-best face.

   A prediction whose best IoU is below 0.5 is a false positive.
3. An image with no ground-truth face, or with no prediction, is skipped: its faces
   count in recall, but false positives on a face-less image are not counted
   (COCO mAP, also reported, does count them).
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

import contextlib
import io
import os
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

import numpy as np
import scipy.io

THRESH_NUM = 1000
#: Score thresholds of the official curve, highest first: 0.999, 0.998, ..., 0.0.
THRESHOLDS = 1.0 - (np.arange(THRESH_NUM) + 1) / THRESH_NUM
#: Face height buckets in pixels: tiny < 16 <= small < 32 <= medium <= 96 < large.
SIZE_BUCKETS = ("tiny", "small", "medium", "large")
WIDER_SUBSETS = ("easy", "medium", "hard")
#: The ground-truth files of the official WIDER FACE evaluation kit.
WIDER_MAT_FILES = {
    "all": "wider_face_val.mat",
    "easy": "wider_easy_val.mat",
    "medium": "wider_medium_val.mat",
    "hard": "wider_hard_val.mat",
}


# --------------------------------------------------------------------- inputs


def _prediction_array(value: Any, key: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 5))
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(
            f"predictions for {key!r}: expected an array [K,5] (x1,y1,x2,y2,score), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"predictions for {key!r}: non-finite values")
    return arr


def _ground_truth_entry(obj: Any, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(boxes float64 [N,4] xyxy, ignore bool [N]) from a record or a dict."""
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


def _ground_truth_set(ground_truth: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {key: _ground_truth_entry(obj, key) for key, obj in ground_truth.items()}


def _prediction_set(predictions: Mapping[str, Any], gt_keys) -> dict[str, np.ndarray]:
    preds = {key: _prediction_array(value, key) for key, value in predictions.items()}
    unknown = [key for key in preds if key not in gt_keys]
    if unknown:
        raise ValueError(
            f"{len(unknown)} prediction key(s) not in the ground truth, e.g. {unknown[:3]}: "
            "keys must be the image names without directory or extension")
    return preds


# ----------------------------------------------------------- WIDER protocol


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


def _normalised_sorted(preds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scores min-max normalised over the set (official bounds), rows by descending score."""
    scores = [p[:, 4] for p in preds.values() if len(p)]
    if not scores:
        return preds
    low = min(1.0, min(float(s.min()) for s in scores))
    high = max(0.0, max(float(s.max()) for s in scores))
    out = {}
    for key, p in preds.items():
        p = p.copy()
        p[:, 4] = 1.0 if high == low else (p[:, 4] - low) / (high - low)
        out[key] = p[np.argsort(-p[:, 4], kind="stable")]
    return out


def _best_faces(preds: np.ndarray, boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Per prediction the index of its highest-IoU face (the first on ties), -1 below the threshold."""
    iou = iou_plus_one(preds[:, :4], boxes)
    best = iou.argmax(axis=1)
    return np.where(iou.max(axis=1) >= iou_threshold, best, -1)


def _match_set(predictions, ground_truth, iou_threshold):
    """The ground truth, and for each image that is evaluated (normalised scores in
    descending order, best face per prediction).

    Matching depends on the boxes only, so curves for several ignore masks (size
    buckets, easy/medium/hard) share it.
    """
    gt = _ground_truth_set(ground_truth)
    preds = _normalised_sorted(_prediction_set(predictions, gt))
    matches = {
        key: (p[:, 4], _best_faces(p, gt[key][0], iou_threshold))
        for key, p in preds.items()
        if len(p) and len(gt[key][0])
    }
    return gt, matches


def _image_counts(scores: np.ndarray, face: np.ndarray, ignore: np.ndarray):
    """Proposals and recalled faces at each threshold for one image (official ``image_eval``)."""
    hit = face >= 0
    hits_ignored = hit & ignore[np.maximum(face, 0)]
    proposal = ~hits_ignored
    counted = np.flatnonzero(hit & ~hits_ignored)
    newly_recalled = np.zeros(len(face), bool)  # first prediction to reach each counted face
    _, first = np.unique(face[counted], return_index=True)
    newly_recalled[counted[first]] = True
    # scores are descending, so the predictions kept at threshold t are a prefix
    kept = np.searchsorted(-scores, -THRESHOLDS, side="right")
    last = np.maximum(kept - 1, 0)
    proposals = np.where(kept > 0, np.cumsum(proposal)[last], 0)
    recalled = np.where(kept > 0, np.cumsum(newly_recalled)[last], 0)
    return proposals, recalled


def _curve(gt, matches, ignores: Mapping[str, np.ndarray]):
    """(precision [1000], recall [1000], number of counted faces) for one ignore mask per image."""
    proposals = np.zeros(THRESH_NUM)
    recalled = np.zeros(THRESH_NUM)
    faces = 0
    for key in gt:
        ignore = ignores[key]
        faces += int((~ignore).sum())
        if key in matches:
            p, r = _image_counts(*matches[key], ignore)
            proposals += p
            recalled += r
    precision = np.divide(recalled, proposals, out=np.zeros(THRESH_NUM), where=proposals > 0)
    recall = recalled / faces if faces else np.zeros(THRESH_NUM)
    return precision, recall, faces


def _no_faces_error(what: str = "the ground truth") -> ValueError:
    return ValueError(f"no face to evaluate: {what} is empty or every face is ignored")


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP: area under the precision envelope (the official ``voc_ap``)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def wider_pr_curve(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any], iou_threshold: float = 0.5):
    """The official WIDER FACE precision/recall curve (see the module docstring).

    Returns (precision [1000], recall [1000], thresholds [1000]); index i is the
    normalised-score threshold ``thresholds[i]`` = 1 - (i+1)/1000, so recall grows with i.
    """
    gt, matches = _match_set(predictions, ground_truth, iou_threshold)
    precision, recall, faces = _curve(gt, matches, {key: ignore for key, (_, ignore) in gt.items()})
    if faces == 0:
        raise _no_faces_error()
    return precision, recall, THRESHOLDS.copy()


def wider_ap(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any], iou_threshold: float = 0.5) -> float:
    """AP of the official WIDER FACE protocol (see the module docstring)."""
    precision, recall, _ = wider_pr_curve(predictions, ground_truth, iou_threshold)
    return voc_ap(recall, precision)


def size_buckets(boxes: np.ndarray) -> dict[str, np.ndarray]:
    """Bucket membership by face height y2 - y1 (WIDER's h): tiny < 16 <= small < 32 <= medium <= 96 < large."""
    height = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height = height[:, 3] - height[:, 1]
    return {
        "tiny": height < 16,
        "small": (height >= 16) & (height < 32),
        "medium": (height >= 32) & (height <= 96),
        "large": height > 96,
    }


def ap_by_size(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any], iou_threshold: float = 0.5) -> dict:
    """WIDER AP per face-height bucket: ``{bucket: {"ap": float or None, "faces": n}}``.

    Faces outside the bucket are treated as ignored, so a detection of them is
    neither counted nor penalised; scores are normalised over the whole set as for
    the overall AP. A bucket without faces has AP None.
    """
    gt, matches = _match_set(predictions, ground_truth, iou_threshold)
    in_bucket = {key: size_buckets(boxes) for key, (boxes, _) in gt.items()}
    result = {}
    for name in SIZE_BUCKETS:
        ignores = {key: ignore | ~in_bucket[key][name] for key, (_, ignore) in gt.items()}
        precision, recall, faces = _curve(gt, matches, ignores)
        result[name] = {"ap": voc_ap(recall, precision) if faces else None, "faces": faces}
    return result


# ------------------------------------------------- official .mat ground truth


def _cells(value: Any) -> list:
    """The elements of a MATLAB cell array as loaded by scipy (object array, any shape)."""
    return list(np.asarray(value, dtype=object).ravel())


def _text(value: Any, where: str) -> str:
    flat = np.asarray(value).ravel()
    if flat.size != 1 or not isinstance(flat[0], str):
        raise ValueError(f"{where}: expected a string, got {value!r}")
    return str(flat[0])


def _mat_variable(mat: dict, name: str, path: Path) -> list:
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: no variable {name!r} (found {found})")
    return _cells(mat[name])


def load_wider_mat(gt_dir: str | os.PathLike) -> dict[str, dict]:
    """Read the official WIDER FACE validation ground truth (the evaluation kit's .mat files).

    Returns ``{image name without extension: {"name": "event/image.jpg",
    "boxes": float64 [N,4] xyxy (x2 = x + w, as the official code), "easy"/"medium"/"hard":
    bool [N] (the faces that subset counts)}}``, in the .mat's order.
    """
    gt_dir = Path(gt_dir)
    mats = {}
    for subset, filename in WIDER_MAT_FILES.items():
        path = gt_dir / filename
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: missing; the WIDER ground-truth directory {gt_dir} must hold "
                f"{', '.join(WIDER_MAT_FILES.values())} (from the WIDER FACE evaluation kit)")
        try:
            mats[subset] = (path, scipy.io.loadmat(path))
        except Exception as exc:  # scipy raises several types for a corrupt file
            raise ValueError(f"{path}: not a readable .mat file ({exc})") from exc

    path, mat = mats["all"]
    events = _mat_variable(mat, "event_list", path)
    files = _mat_variable(mat, "file_list", path)
    boxes = _mat_variable(mat, "face_bbx_list", path)
    if not len(events) == len(files) == len(boxes):
        raise ValueError(f"{path}: {len(events)} events but {len(files)} file lists and {len(boxes)} box lists")
    subsets = {}
    for subset in WIDER_SUBSETS:
        sub_path, sub_mat = mats[subset]
        subsets[subset] = (sub_path, _mat_variable(sub_mat, "gt_list", sub_path))
        if len(subsets[subset][1]) != len(events):
            raise ValueError(f"{sub_path}: gt_list has {len(subsets[subset][1])} events, {path} has {len(events)}")

    images: dict[str, dict] = {}
    for i, event_cell in enumerate(events):
        event = _text(event_cell, f"{path}: event_list[{i}]")
        names, event_boxes = _cells(files[i]), _cells(boxes[i])
        if len(names) != len(event_boxes):
            raise ValueError(f"{path}: event {event}: {len(names)} files but {len(event_boxes)} box lists")
        keep = {}
        for subset, (sub_path, gt_list) in subsets.items():
            keep[subset] = _cells(gt_list[i])
            if len(keep[subset]) != len(names):
                raise ValueError(f"{sub_path}: event {event}: {len(keep[subset])} images, {path} has {len(names)}")
        for j, name_cell in enumerate(names):
            name = _text(name_cell, f"{path}: event {event} file {j}")
            where = f"{path}: {event}/{name}"
            xywh = np.asarray(event_boxes[j], dtype=np.float64)
            if xywh.size == 0:
                xywh = xywh.reshape(0, 4)
            if xywh.ndim != 2 or xywh.shape[1] != 4:
                raise ValueError(f"{where}: boxes must be [N,4] x,y,w,h, got shape {xywh.shape}")
            record = {"name": f"{event}/{name}.jpg",
                      "boxes": np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)}
            for subset, (sub_path, _) in subsets.items():
                index = np.asarray(keep[subset][j]).ravel().astype(np.int64) - 1  # MATLAB counts from 1
                if ((index < 0) | (index >= len(xywh))).any():
                    raise ValueError(f"{sub_path}: {event}/{name}: face index out of 1..{len(xywh)}: {index + 1}")
                mask = np.zeros(len(xywh), bool)
                mask[index] = True
                record[subset] = mask
            if name in images:
                raise ValueError(f"{path}: image {name!r} appears twice")
            images[name] = record
    return images


def _subset_curves(predictions: Mapping[str, Any], wider: Mapping[str, dict], iou_threshold: float = 0.5):
    """{subset: (precision, recall)} against :func:`load_wider_mat` ground truth."""
    gt, matches = _match_set(predictions, {key: {"boxes": v["boxes"]} for key, v in wider.items()}, iou_threshold)
    curves = {}
    for subset in WIDER_SUBSETS:
        precision, recall, faces = _curve(gt, matches, {key: ~v[subset] for key, v in wider.items()})
        if faces == 0:
            raise _no_faces_error(f"the WIDER {subset} subset")
        curves[subset] = (precision, recall)
    return curves


def wider_easy_medium_hard(predictions: Mapping[str, Any], gt_dir: str | os.PathLike,
                           iou_threshold: float = 0.5) -> dict[str, float]:
    """Official WIDER FACE easy/medium/hard AP from the evaluation kit's .mat files in ``gt_dir``.

    Each subset counts the faces its ``gt_list`` names and ignores the others. Keys
    are image names without extension; boxes must be in the pixel frame of the .mat
    (the original WIDER images), so detections made on resized images must be scaled back.
    """
    curves = _subset_curves(predictions, load_wider_mat(gt_dir), iou_threshold)
    return {subset: voc_ap(recall, precision) for subset, (precision, recall) in curves.items()}


# ------------------------------------------------------------------- COCO


def coco_map(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any]) -> dict[str, float]:
    """COCO box AP from pycocotools: ``{"mAP": AP@[.5:.95], "AP50": AP@.5}``.

    Ignored faces are crowd regions (detections on them are neither counted nor
    penalised). Unlike the WIDER protocol, false positives on face-less images count.
    Up to max(100, most predictions in one image) detections per image are kept.
    """
    # pycocotools is imported here: `latentface evaluate` needs it, the rest of the package does not
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = _ground_truth_set(ground_truth)
    preds = _prediction_set(predictions, gt)
    if not any((~ignore).any() for _, ignore in gt.values()):
        raise _no_faces_error()
    if not any(len(p) for p in preds.values()):
        return {"mAP": 0.0, "AP50": 0.0}
    image_id = {key: i + 1 for i, key in enumerate(gt)}

    def xywh(box):
        return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]

    annotations = []
    for key, (boxes, ignore) in gt.items():
        for box, ignored in zip(boxes, ignore):
            bbox = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id[key], "category_id": 1,
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": int(ignored)})
    detections = [{"image_id": image_id[key], "category_id": 1, "bbox": xywh(row), "score": float(row[4])}
                  for key, p in preds.items() for row in p]

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {"images": [{"id": i} for i in image_id.values()], "annotations": annotations,
                           "categories": [{"id": 1, "name": "face"}]}
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


# ----------------------------------------------------------------- report


def evaluation_report(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any],
                      gt_dir: str | os.PathLike | None = None, coco: bool = True) -> dict:
    """Every number of DESIGN section 6 in one JSON-serialisable dict.

    Keys: images, faces (counted), ignored_faces, predictions, ap (WIDER protocol),
    ap_by_size, coco {mAP, AP50} (unless ``coco=False``: pycocotools takes minutes on
    hundreds of detections per image over thousands of images), wider {easy, medium,
    hard} when ``gt_dir`` holds the official .mat files, and curves {name: {precision,
    recall}} for :func:`plot_pr_curve`.
    """
    gt = _ground_truth_set(ground_truth)
    preds = _prediction_set(predictions, gt)
    precision, recall, _ = wider_pr_curve(preds, ground_truth)
    report = {
        "images": len(gt),
        "faces": int(sum((~ignore).sum() for _, ignore in gt.values())),
        "ignored_faces": int(sum(ignore.sum() for _, ignore in gt.values())),
        "predictions": int(sum(len(p) for p in preds.values())),
        "ap": voc_ap(recall, precision),
        "ap_by_size": ap_by_size(preds, ground_truth),
        "curves": {"all": {"precision": precision.tolist(), "recall": recall.tolist()}},
    }
    if coco:
        report["coco"] = coco_map(preds, ground_truth)
    if gt_dir is not None:
        curves = _subset_curves(preds, load_wider_mat(gt_dir))
        report["wider"] = {subset: voc_ap(r, p) for subset, (p, r) in curves.items()}
        report["curves"].update({subset: {"precision": p.tolist(), "recall": r.tolist()}
                                 for subset, (p, r) in curves.items()})
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
    # matplotlib's object API with the Agg canvas: no pyplot state, no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5))
    FigureCanvasAgg(fig)
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


# ------------------------------------------- official per-image text format


def write_widerface_predictions(predictions: Mapping[str, Any], out_dir: str | os.PathLike,
                                names: Mapping[str, str]) -> list[Path]:
    """Write predictions in the official WIDER evaluation's text format.

    One file ``out_dir/<event>/<image>.txt`` per image, where ``names[key]`` is the
    label name (``0--Parade/0_Parade_Parade_0_1014.jpg``): the image name without
    extension, the number of boxes, then one ``x y w h score`` line per box in
    descending score order (the official reader relies on that order).
    """
    out_dir = Path(out_dir)
    written = []
    for key, value in predictions.items():
        rows = _prediction_array(value, key)
        if key not in names:
            raise KeyError(f"no image name for prediction key {key!r}")
        rel = PurePosixPath(str(names[key]))
        if rel.is_absolute() or ".." in rel.parts or not rel.stem:
            raise ValueError(f"image name {names[key]!r} for {key!r} must be a relative path like event/image.jpg")
        rows = rows[np.argsort(-rows[:, 4], kind="stable")]
        lines = [rel.stem, str(len(rows))]
        lines += [f"{x1:.2f} {y1:.2f} {x2 - x1:.2f} {y2 - y1:.2f} {score:.6g}" for x1, y1, x2, y2, score in rows]
        path = out_dir.joinpath(*rel.with_suffix(".txt").parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        written.append(path)
    return written


def _read_prediction_file(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path}:{len(lines) + 1}: expected an image name line and a box count line")
    base = lines[0].strip().split("/")[-1]
    if path.stem not in (base, os.path.splitext(base)[0]):
        raise ValueError(f"{path}:1: image name {lines[0].strip()!r} does not match the file name")
    try:
        count = int(lines[1])
    except ValueError:
        raise ValueError(f"{path}:2: expected the number of boxes, got {lines[1]!r}") from None
    rows = []
    for lineno, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        fields = line.split()
        try:
            x, y, w, h, score = (float(f) for f in fields[:5])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'x y w h score', got {line!r}") from None
        if not np.isfinite([x, y, w, h, score]).all() or w < 0 or h < 0:
            raise ValueError(f"{path}:{lineno}: non-finite value or negative size in {line!r}")
        rows.append([x, y, x + w, y + h, score])
    if count != len(rows):
        raise ValueError(f"{path}:2: the count line says {count} boxes, the file has {len(rows)}")
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def read_widerface_predictions(pred_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a directory in the official WIDER text format into ``{key: [K,5] xyxy+score}``."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: no such prediction directory")
    files = sorted(pred_dir.rglob("*.txt"))
    if not files:
        raise ValueError(f"{pred_dir}: no .txt prediction files")
    predictions: dict[str, np.ndarray] = {}
    origin: dict[str, Path] = {}
    for path in files:
        if path.stem in origin:
            raise ValueError(f"{path}: image {path.stem!r} already read from {origin[path.stem]}")
        predictions[path.stem] = _read_prediction_file(path)
        origin[path.stem] = path
    return predictions


# ------------------------------------------------------------- command line


def mat_frame_transform(labels: Mapping[str, Any], wider: Mapping[str, dict]) -> dict[str, np.ndarray]:
    """Per image the map (ax, bx, ay, by) from the labels' pixel frame to the .mat's: x' = ax*x + bx.

    retina-modify's labels are on the resized 640x640 image while the official .mat files are
    on the original images; the original sizes are not stored, but each image's faces are the
    same faces in the same order, so a least-squares fit of the .mat boxes against the label
    boxes gives the resize (and any letterbox offset). An image whose faces do not correspond
    is an error naming it; an image without faces takes the median map of the others.
    """
    maps: dict[str, np.ndarray] = {}
    for key, record in labels.items():
        if key not in wider:
            continue
        ours = np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4)
        theirs = np.asarray(wider[key]["boxes"], dtype=np.float64).reshape(-1, 4)
        if len(ours) == 0:
            continue
        if len(ours) != len(theirs):
            raise ValueError(f"image {wider[key]['name']}: the labels have {len(ours)} faces, the WIDER .mat "
                             f"{len(theirs)}; --wider_gt needs the split's labels to be the WIDER validation labels")
        fit = []
        for axis in (0, 1):
            x, y = ours[:, [axis, axis + 2]].ravel(), theirs[:, [axis, axis + 2]].ravel()
            if np.ptp(x) > 0:
                a, b = np.polyfit(x, y, 1)
            else:
                a, b = 1.0, float(np.mean(y - x))
            tolerance = 2.0 + 0.02 * max(np.ptp(y), 1.0)
            if np.abs(a * x + b - y).max() > tolerance:
                raise ValueError(f"image {wider[key]['name']}: its label boxes are not a resize of its WIDER .mat "
                                 f"boxes (misfit {np.abs(a * x + b - y).max():.1f} px)")
            fit += [a, b]
        maps[key] = np.array(fit)
    if not maps:
        raise ValueError("no image of the split has faces both in its labels and in the WIDER .mat files")
    median = np.median(np.stack(list(maps.values())), axis=0)
    return {key: maps.get(key, median) for key in labels if key in wider}


def to_mat_frame(predictions: Mapping[str, np.ndarray], maps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Predictions [K,5] moved to the .mat frame with :func:`mat_frame_transform`'s maps (others dropped)."""
    out = {}
    for key, p in predictions.items():
        if key not in maps:
            continue
        ax, bx, ay, by = maps[key]
        p = np.array(p, dtype=np.float64).reshape(-1, 5)
        p[:, [0, 2]] = p[:, [0, 2]] * ax + bx
        p[:, [1, 3]] = p[:, [1, 3]] * ay + by
        out[key] = p
    return out


def configure_parser(parser) -> None:
    from latentface.cli import flag

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(*flag("--weight"), dest="weight", metavar="PTH", help="checkpoint to run on the split")
    source.add_argument(*flag("--predictions"), dest="predictions", metavar="DIR",
                        help="evaluate saved predictions instead: WIDER text files (latentface detect --format widerface)")
    parser.add_argument(*flag("--dataset_root"), dest="dataset_root", required=True, metavar="DIR",
                        help="dataset in the retina-modify layout")
    parser.add_argument("--split", default="val", help="split to evaluate (default val)")
    parser.add_argument(*flag("--latent_type"), dest="latent_type", default="latent_75.npy")
    parser.add_argument(*flag("--wider_gt"), dest="wider_gt", metavar="DIR", default=None,
                        help="folder with the official wider_{face,easy,medium,hard}_val.mat: adds easy/medium/hard AP")
    parser.add_argument(*flag("--output"), dest="output", default="runs/eval", metavar="DIR",
                        help="report.json, pr_curve.png and predictions go here (default runs/eval)")
    parser.add_argument(*flag("--thresholds"), dest="thresholds", metavar="JSON", default=None,
                        help="operating point JSON; evaluation's default confidence is 0.02")
    parser.add_argument("--conf", type=float, default=None, help="score threshold (default 0.02)")
    parser.add_argument("--nms", type=float, default=None, help="NMS IoU (default 0.4)")
    parser.add_argument("--topk", type=int, default=None, help="boxes kept before NMS (default 5000)")
    parser.add_argument("--keep", type=int, default=None, help="boxes kept after NMS (default 750)")
    parser.add_argument(*flag("--batch_size"), dest="batch_size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(*flag("--no_coco"), dest="no_coco", action="store_true",
                        help="skip COCO mAP (pycocotools is slow on very large prediction sets)")
    parser.add_argument(*flag("--no_progress"), dest="no_progress", action="store_true")


def evaluate_checkpoint(weight: str | os.PathLike, dataset_root: str | os.PathLike, split: str = "val",
                        latent_type: str = "latent_75.npy", thresholds: Mapping[str, float] | None = None,
                        batch_size: int = 8, workers: int = 0, device=None, progress: bool = True):
    """Run a checkpoint over a split: (predictions {key: [K,5]}, landmarks {key: [K,5,2]}, dataset)."""
    from latentface.data.dataset import NestedLatentWiderFaceDataset
    from latentface.detect import Detector, predict_dataset
    from latentface.postprocess import EVAL_CONF

    detector = Detector.from_checkpoint(weight, device=device, thresholds={"conf": EVAL_CONF, **(thresholds or {})})
    dataset = NestedLatentWiderFaceDataset(dataset_root, split, latent_type)
    if dataset.expected_shape[0] != detector.in_channels:
        raise ValueError(f"{dataset_root}/{split}: latents have {dataset.expected_shape[0]} channels, "
                         f"{weight} expects {detector.in_channels}")
    predictions, landmarks = predict_dataset(detector, dataset, batch_size, workers, progress)
    return predictions, landmarks, dataset


def run(args) -> int:
    from latentface.checkpoint import CheckpointError
    from latentface.data.dataset import BadLatentError
    from latentface.data.labels import LabelFormatError

    try:
        return _run(args)
    except (CheckpointError, BadLatentError, LabelFormatError, OSError, ValueError) as exc:
        raise SystemExit(f"latentface evaluate: {exc}") from None


def _run(args) -> int:
    import json

    from latentface.data.dataset import NestedLatentWiderFaceDataset
    from latentface.detect import resolve_thresholds
    from latentface.postprocess import EVAL_CONF

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.weight:
        thresholds = resolve_thresholds(args, default_conf=EVAL_CONF)
        predictions, _, dataset = evaluate_checkpoint(
            args.weight, args.dataset_root, args.split, args.latent_type, thresholds, args.batch_size,
            args.workers, args.device, progress=not args.no_progress)
        names = {key: rec.name for key, rec in dataset.records.items()}
        write_widerface_predictions(predictions, out / "widerface", names)
    else:
        thresholds = None
        dataset = NestedLatentWiderFaceDataset(args.dataset_root, args.split, args.latent_type)
        predictions = read_widerface_predictions(args.predictions)
    report = evaluation_report(predictions, dataset.records, coco=not args.no_coco)
    if args.wider_gt:
        from latentface.data.labels import read_labels

        wider = load_wider_mat(args.wider_gt)
        labels = read_labels(Path(args.dataset_root) / args.split / "labels.txt")
        moved = to_mat_frame(predictions, mat_frame_transform(labels, wider))
        curves = _subset_curves(moved, {key: wider[key] for key in moved})
        report["wider"] = {subset: voc_ap(r, p) for subset, (p, r) in curves.items()}
        report["curves"].update({subset: {"precision": p.tolist(), "recall": r.tolist()}
                                 for subset, (p, r) in curves.items()})
    report["source"] = {"weight": args.weight, "predictions": args.predictions, "dataset_root": str(args.dataset_root),
                        "split": args.split, "latent_type": args.latent_type, "thresholds": thresholds}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_pr_curve(report, out / "pr_curve.png")
    print(format_report(report))
    print(f"-> {out / 'report.json'}, {out / 'pr_curve.png'}" + (f", {out / 'widerface'}/" if args.weight else ""))
    return 0


def format_report(report: Mapping[str, Any]) -> str:
    """The report's numbers as a few readable lines (curves left out)."""
    lines = [f"{report['images']} images, {report['faces']} faces ({report['ignored_faces']} ignored), "
             f"{report['predictions']} predictions",
             f"WIDER AP@0.5: {report['ap']:.4f}"]
    sizes = ", ".join(f"{name} {v['ap']:.4f} ({v['faces']})" if v["ap"] is not None else f"{name} - (0)"
                      for name, v in report["ap_by_size"].items())
    lines.append(f"AP by face height (faces): {sizes}")
    if "coco" in report:
        lines.append(f"COCO mAP@[.5:.95]: {report['coco']['mAP']:.4f}, AP50: {report['coco']['AP50']:.4f}")
    if "wider" in report:
        lines.append("WIDER " + ", ".join(f"{k} {v:.4f}" for k, v in report["wider"].items()))
    return "\n".join(lines)
