"""Metrics (latentface.metrics): the WIDER FACE protocol with hand-computed APs, size buckets,
the official .mat subsets, COCO mAP, the report and plot; and the official per-image text
format (latentface.formats.widerface).

Scores: the official evaluation min-max normalises scores over the set (range taken
together with [0, 1]) and sweeps thresholds 0.999, 0.998, ..., 0. Most cases use scores
1.0 and 0.0 so normalisation is the identity; a score normalised to 0 counts only at the
last threshold.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io

from latentface.data.labels import read_labels
from latentface.formats.widerface import read_widerface_predictions, write_widerface_predictions
from latentface.metrics.coco import coco_map
from latentface.metrics.mat import load_wider_mat, mat_frame_transform, to_mat_frame, wider_easy_medium_hard
from latentface.metrics.report import evaluation_report, format_report, plot_pr_curve
from latentface.metrics.sizes import BUCKET_EDGES, SIZE_BUCKETS, ap_by_size, bucket_index, size_buckets
from latentface.metrics.wider import (
    THRESHOLDS,
    ground_truth_arrays,
    iou_plus_one,
    match_outcomes,
    voc_ap,
    wider_ap,
    wider_pr_curve,
)


def gt(boxes, ignore=None):
    return {
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "ignore": np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore, bool),
    }


def det(box, score):
    return [*box, score]


A = [10, 10, 49, 49]
B = [100, 100, 139, 139]
C = [200, 20, 259, 79]
FAR = [400, 400, 430, 430]  # overlaps nothing


def one(box, score=0.9):
    """One detection plus a false positive at score 0. A lone score is the official 0/0 case (AP 0);
    the added one normalises the detection to 1 and itself to 0, where it only counts at the last
    threshold, after every face the detection finds: the AP is the detection's alone."""
    return np.array([det(box, score), det(FAR, 0.0)])


def test_thresholds_are_the_official_sweep():
    assert len(THRESHOLDS) == 1000
    assert THRESHOLDS[0] == 0.999 and THRESHOLDS[-1] == 0.0 and np.all(np.diff(THRESHOLDS) < 0)


def test_perfect_detector_scores_one():
    truth = {"a": gt([A, B]), "b": gt([C])}
    preds = {"a": np.array([det(A, 0.9), det(B, 0.7)]), "b": np.array([det(C, 0.8)])}
    precision, recall, thresholds = wider_pr_curve(preds, truth)
    assert precision.shape == recall.shape == thresholds.shape == (1000,)
    # every proposal is a hit: precision 1 wherever there is a proposal, recall reaches 3/3
    assert recall[-1] == 1.0 and precision[-1] == 1.0
    assert wider_ap(preds, truth) == 1.0


def test_equal_scores_give_the_official_zero_everywhere():
    # the official normalisation divides 0 by 0 when every score is the same: NaN scores that no
    # threshold keeps, so no proposal, no recall and AP 0 -- the same here, on every curve
    truth = {"a": gt([A, B]), "b": gt(np.zeros((0, 4)))}
    for score in (0.0, 0.5, 1.0):
        same = {"a": np.array([det(A, score), det(B, score)]), "b": np.array([det(FAR, score)])}
        assert wider_ap(same, truth) == 0.0
        precision, recall, _ = wider_pr_curve(same, truth)
        assert not precision.any() and not recall.any()
        assert {v["ap"] for v in ap_by_size(same, truth).values()} <= {0.0, None}
        report = evaluation_report(same, truth, coco=False)
        assert report["ap"] == 0.0 and any("same score" in w for w in report["warnings"])
    # scores above 1 are not all-equal in the official sense (its range starts at [1, 0]): 2 -> 1
    assert wider_ap({"a": np.array([det(A, 2.0), det(B, 2.0)])}, truth) == 1.0
    # one distinct score is enough to leave the 0/0 case: A at 1, B at 0 -> AP 1
    assert wider_ap({"a": np.array([det(A, 0.5), det(B, 0.25)])}, truth) == 1.0
    distinct = {"a": np.array([det(A, 0.5), det(B, 0.25)]), "b": np.zeros((0, 5))}
    assert evaluation_report(distinct, truth, coco=False)["warnings"] == []


def test_ground_truth_records_with_attributes():
    record = SimpleNamespace(boxes=np.array([A], np.float32), ignore=np.array([False]))
    assert wider_ap({"a": one(A)}, {"a": record}) == 1.0


def test_ignored_faces_neither_count_nor_penalise():
    truth = {"a": gt([A, B], ignore=[False, True])}
    # B ignored and missed: only A counts, found -> AP 1 (were B counted: recall 1/2, AP 1/2)
    assert wider_ap({"a": one(A)}, truth) == 1.0
    assert wider_ap({"a": one(A)}, {"a": gt([A, B])}) == 0.5
    # a top-scored detection of the ignored face is dropped, not a false positive:
    # at t > 0 no proposal; at t = 0 one proposal (A), one face -> P = 1, R = 1 -> AP 1
    # (were it a proposal, P would be 1/2 at R = 1 -> AP 1/2)
    preds = {"a": np.array([det(B, 1.0), det(A, 0.0)])}
    precision, recall, _ = wider_pr_curve(preds, truth)
    assert precision[0] == 0.0 and recall[0] == 0.0
    assert precision[-1] == 1.0 and recall[-1] == 1.0
    assert wider_ap(preds, truth) == 1.0


def test_duplicate_detection_is_a_false_positive():
    truth = {"a": gt([A, B])}
    a_shifted = [12, 10, 51, 49]  # IoU with A = 38*40/(2*1600 - 38*40) = 0.905
    preds = {"a": np.array([det(A, 1.0), det(a_shifted, 0.6543), det(B, 0.0)])}
    # t in (0.6543, 0.999]: {A}            P = 1,   R = 1/2
    # t in (0, 0.6543]:     {A, dup}       P = 1/2, R = 1/2
    # t = 0:                {A, dup, B}    P = 2/3, R = 1
    # AP = 1/2 * max(1, 1/2, 2/3) + 1/2 * 2/3 = 5/6
    assert wider_ap(preds, truth) == pytest.approx(5 / 6, abs=1e-12)


def test_face_found_twice_has_no_fallback_to_second_best_face():
    # two overlapping faces; the second detection's best face is the one already found
    face_a, face_b = [0, 0, 99, 99], [20, 0, 119, 99]
    second = [8, 0, 107, 99]  # IoU with A = 92*100/10800 = 0.852, with B = 88*100/11200 = 0.786
    truth = {"a": gt([face_a, face_b])}
    preds = {"a": np.array([det(face_a, 1.0), det(second, 0.0)])}
    # official matching: the second detection takes A again (recalled already) -> false positive
    # t > 0: P = 1, R = 1/2;  t = 0: P = 1/2, R = 1/2  -> AP = 1/2
    assert wider_ap(preds, truth) == 0.5
    # COCO's matcher falls back to the unmatched face B (IoU 87/111 = 0.78 without +1): AP50 = 1
    assert coco_map(preds, truth)["AP50"] == pytest.approx(1.0)


def test_image_without_predictions_counts_its_faces():
    truth = {"a": gt([A]), "b": gt([B]), "c": gt([C])}
    # "b" absent, "c" empty: one face of three found, precision 1 -> AP = 1/3
    preds = {"a": one(A), "c": np.zeros((0, 5))}
    assert wider_ap(preds, truth) == pytest.approx(1 / 3, abs=1e-12)


def test_false_positives_on_an_image_without_faces_count_as_in_the_official_benchmark():
    truth = {"a": gt([A]), "empty": gt(np.zeros((0, 4)))}
    preds = {"a": np.array([det(A, 0.5)]), "empty": np.array([det(FAR, 0.9), det(B, 0.8)])}
    # the official .mat gives a face-less image a dummy box, so its detections are false positives:
    # normalised 0.9 -> 1, 0.8 -> 0.75, 0.5 -> 0; ranked FP, FP, TP -> P = 1/3 at R = 1 -> AP = 1/3
    assert wider_ap(preds, truth) == pytest.approx(1 / 3, abs=1e-12)
    # COCO agrees: precision 1/3 at every recall -> AP = 1/3
    coco = coco_map(preds, truth)
    assert coco["AP50"] == pytest.approx(1 / 3, abs=1e-6)
    assert coco["mAP"] == pytest.approx(1 / 3, abs=1e-6)


def test_half_right_hand_computed():
    truth = {"a": gt([A, B]), "b": gt([A, C])}
    preds = {"a": np.array([det(A, 0.8), det(FAR, 0.6)]), "b": np.array([det(A, 0.4), det(FAR, 0.2)])}
    # normalised over the set (min 0.2, max 0.8): 1, 2/3, 1/3, 0
    # t > 2/3:        {A}               P = 1,   R = 1/4
    # t in (1/3,2/3]: {A, FP}           P = 1/2, R = 1/4
    # t in (0, 1/3]:  {A, FP, A}        P = 2/3, R = 2/4
    # t = 0:          {A, FP, A, FP}    P = 1/2, R = 2/4
    # AP = 1/4 * 1 + 1/4 * 2/3 = 5/12
    assert wider_ap(preds, truth) == pytest.approx(5 / 12, abs=1e-12)


def test_iou_plus_one_pixel_convention_at_the_border():
    face = [0, 0, 9, 9]  # 10 x 10 pixels with the +1 convention
    half = [0, 0, 9, 4]  # 10 x 5: IoU = 50/100 = 0.5 exactly (plain IoU: 9*4/(9*9) = 0.444)
    less = [0, 0, 9, 3]  # 10 x 4: IoU = 0.4
    assert iou_plus_one(np.array([half, less], float), np.array([face], float))[:, 0].tolist() == [0.5, 0.4]
    truth = {"a": gt([face])}
    assert wider_ap({"a": one(half)}, truth) == 1.0
    assert wider_ap({"a": one(less)}, truth) == 0.0
    assert wider_ap({"a": one(less)}, truth, iou_threshold=0.4) == 1.0


def test_unknown_prediction_keys_and_empty_ground_truth_are_errors():
    with pytest.raises(ValueError, match=r"not in the ground truth.*'a\.jpg'"):
        wider_ap({"a.jpg": np.array([det(A, 0.9)])}, {"a": gt([A])})
    with pytest.raises(ValueError, match="no face to evaluate"):
        wider_ap({}, {"a": gt([A], ignore=[True])})
    with pytest.raises(ValueError, match=r"predictions for 'a'.*\[K,5\]"):
        wider_ap({"a": np.zeros((2, 4))}, {"a": gt([A])})


def _reference_ap(predictions, truth):
    """The protocol written as plain loops, to cross-check the vectorised code."""
    scores = [s for p in predictions.values() for s in p[:, 4]]
    low, high = min(scores + [1.0]), max(scores + [0.0])
    proposals, recalled, faces = np.zeros(1000), np.zeros(1000), 0
    for key, g in truth.items():
        boxes, ignore = g["boxes"].astype(float), g["ignore"]
        faces += int((~ignore).sum())
        p = predictions.get(key, np.zeros((0, 5)))
        if len(p) == 0:
            continue
        if len(boxes) == 0:  # the official .mat's dummy box: every detection is a false positive
            boxes, ignore = np.zeros((1, 4)), np.ones(1, bool)
        p = p[np.argsort(-p[:, 4], kind="stable")]
        found, is_proposal, n_found = set(), [], []
        for row in p:
            ious = []
            for b in boxes:
                iw = min(row[2], b[2]) - max(row[0], b[0]) + 1
                ih = min(row[3], b[3]) - max(row[1], b[1]) + 1
                inter = iw * ih if iw > 0 and ih > 0 else 0.0
                union = (row[2] - row[0] + 1) * (row[3] - row[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
                ious.append(inter / union)
            j = int(np.argmax(ious))
            is_proposal.append(not (ious[j] >= 0.5 and ignore[j]))
            if ious[j] >= 0.5 and not ignore[j]:
                found.add(j)
            n_found.append(len(found))
        for t in range(1000):
            kept = [i for i, row in enumerate(p) if (row[4] - low) / (high - low) >= 1 - (t + 1) / 1000]
            if kept:
                proposals[t] += sum(is_proposal[: kept[-1] + 1])
                recalled[t] += n_found[kept[-1]]
    precision = np.array([r / q if q else 0.0 for r, q in zip(recalled, proposals)])
    recall = recalled / faces
    ap, envelope = 0.0, 0.0
    for i in range(999, -1, -1):  # precision envelope from the high-recall end
        envelope = max(envelope, precision[i])
        ap += (recall[i] - (recall[i - 1] if i else 0.0)) * envelope
    return ap


def test_random_sets_match_a_loop_reference():
    rng = np.random.default_rng(0)
    for _ in range(3):
        truth, preds = {}, {}
        for k in range(12):
            n = int(rng.integers(0, 5))
            xy = rng.uniform(0, 200, (n, 2))
            boxes = np.concatenate([xy, xy + rng.uniform(8, 60, (n, 2))], axis=1)
            truth[f"im{k}"] = gt(boxes, rng.random(n) < 0.2)
            jitter = boxes[rng.integers(0, n, 6)] + rng.normal(0, 6, (6, 4)) if n else rng.uniform(0, 250, (6, 4))
            jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
            if k % 5:  # some images have no prediction at all
                preds[f"im{k}"] = np.concatenate([jitter, rng.uniform(0.02, 1, (6, 1))], axis=1)
        assert wider_ap(preds, truth) == pytest.approx(_reference_ap(preds, truth), abs=1e-12)


def test_ap_by_size_buckets():
    tiny, small, medium, large = [0, 0, 9, 9], [100, 0, 119, 19], [200, 0, 249, 49], [300, 0, 419, 119]
    truth = {"a": gt([tiny, small, medium, large])}
    preds = {"a": np.array([det(tiny, 0.9), det([500, 500, 540, 540], 0.85), det(medium, 0.8), det(large, 0.7)])}
    # normalised (min 0.7, max 0.9): tiny 1, FP 0.75, medium 0.5, large 0
    # tiny:   tiny hit first, others dropped or after     -> AP 1
    # small:  missed                                       -> AP 0
    # medium: tiny dropped (ignored here), FP, then medium: P = 1/2 at R = 1 -> AP 1/2
    # large:  FP, (medium dropped), large: P = 1/2 at R = 1 -> AP 1/2
    result = ap_by_size(preds, truth)
    assert result == {
        "tiny": {"ap": 1.0, "faces": 1},
        "small": {"ap": 0.0, "faces": 1},
        "medium": {"ap": 0.5, "faces": 1},
        "large": {"ap": 0.5, "faces": 1},
    }
    # all together: P/R = 1/(1/4), 1/2/(1/4), 2/3/(2/4), 3/4/(3/4) -> AP = 1/4 + 1/4*3/4 + 1/4*3/4 = 5/8
    assert wider_ap(preds, truth) == pytest.approx(5 / 8, abs=1e-12)


def test_ap_by_size_bucket_borders_and_ignored_faces():
    heights = [15.9, 16, 31.9, 32, 96, 96.1, 50]
    boxes = [[i * 200, 0, i * 200 + 20, h] for i, h in enumerate(heights)]
    truth = {"a": gt(boxes, ignore=[False] * 6 + [True])}
    result = ap_by_size({"a": np.array([det(b, 0.9 - 0.1 * i) for i, b in enumerate(boxes)])}, truth)
    assert {name: r["faces"] for name, r in result.items()} == {"tiny": 1, "small": 2, "medium": 2, "large": 1}
    assert all(r["ap"] == 1.0 for r in result.values())
    # no predictions: the tiny face is missed (AP 0), the empty buckets have no AP
    empty = ap_by_size({}, {"a": gt([[0, 0, 9, 9]])})
    assert empty["large"] == {"ap": None, "faces": 0} and empty["tiny"] == {"ap": 0.0, "faces": 1}


def test_coco_map_perfect_and_empty():
    truth = {"a": gt([A, B]), "b": gt([C, [300, 300, 339, 339]], ignore=[False, True])}
    perfect = {"a": np.array([det(A, 0.9), det(B, 0.8)]), "b": np.array([det(C, 0.7)])}
    assert coco_map(perfect, truth) == {"mAP": pytest.approx(1.0), "AP50": pytest.approx(1.0)}
    assert coco_map({}, truth) == {"mAP": 0.0, "AP50": 0.0}
    assert coco_map({"a": np.zeros((0, 5))}, truth) == {"mAP": 0.0, "AP50": 0.0}


def _cell(items):
    """A MATLAB cell column as scipy.io.savemat writes it."""
    arr = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        arr[i, 0] = item
    return arr


def _write_wider_mats(gt_dir):
    """Two events, three images, four faces in the official kit's layout (boxes x, y, w, h)."""
    f1, f2, f3, f4 = [10, 10, 40, 40], [100, 100, 8, 8], [30, 30, 50, 60], [5, 5, 90, 90]
    scipy.io.savemat(
        gt_dir / "wider_face_val.mat",
        {
            "event_list": _cell(["0--Parade", "1--Handshaking"]),
            "file_list": _cell([_cell(["0_Parade_a", "0_Parade_b"]), _cell(["1_Handshaking_c"])]),
            "face_bbx_list": _cell(
                [_cell([np.array([f1, f2], float), np.array([f3], float)]), _cell([np.array([f4], float)])]
            ),
        },
    )
    subsets = {"easy": ([[1]], [], []), "medium": ([[1]], [[1]], [[1]]), "hard": ([[1], [2]], [[1]], [[1]])}
    for subset, (a, b, c) in subsets.items():
        index = [np.array(x, float).reshape(-1, 1) for x in (a, b, c)]
        scipy.io.savemat(gt_dir / f"wider_{subset}_val.mat", {"gt_list": _cell([_cell(index[:2]), _cell(index[2:])])})
    return f1, f2, f3, f4


def _xyxy(xywh):
    x, y, w, h = xywh
    return [x, y, x + w, y + h]


def test_wider_mat_round_trip_and_easy_medium_hard(tmp_path):
    f1, f2, f3, f4 = _write_wider_mats(tmp_path)
    wider = load_wider_mat(tmp_path)
    assert list(wider) == ["0_Parade_a", "0_Parade_b", "1_Handshaking_c"]
    assert wider["0_Parade_a"]["name"] == "0--Parade/0_Parade_a.jpg"
    np.testing.assert_array_equal(wider["0_Parade_a"]["boxes"], [_xyxy(f1), _xyxy(f2)])
    assert wider["0_Parade_a"]["hard"].tolist() == [True, True]
    assert wider["0_Parade_a"]["easy"].tolist() == [True, False]
    assert wider["0_Parade_b"]["easy"].tolist() == [False] and wider["0_Parade_b"]["medium"].tolist() == [True]

    preds = {
        "0_Parade_a": np.array([det(_xyxy(f1), 0.9)]),
        "0_Parade_b": np.array([det(_xyxy(f3), 0.8)]),
        "1_Handshaking_c": np.array([det(_xyxy(f4), 0.7), det(FAR, 0.75)]),
    }
    # normalised (min 0.7, max 0.9): f1 1, f3 0.5, FP 0.25, f4 0
    # easy   (f1):             f1 hit first, the rest dropped or FP after -> AP 1
    # medium (f1, f3, f4):     P/R 1/(1/3), 1/(2/3), 2/3/(2/3), 3/4/1 -> AP 2/3 + 1/3 * 3/4 = 11/12
    # hard   (f1, f2, f3, f4): P/R 1/(1/4), 1/(2/4), 2/3/(2/4), 3/4/(3/4) -> AP 1/2 + 1/4 * 3/4 = 11/16
    aps = wider_easy_medium_hard(preds, tmp_path)
    assert aps == {"easy": 1.0, "medium": pytest.approx(11 / 12, abs=1e-12), "hard": pytest.approx(11 / 16, abs=1e-12)}

    report = evaluation_report(preds, {k: {"boxes": v["boxes"]} for k, v in wider.items()}, gt_dir=tmp_path)
    assert report["wider"] == aps and report["ap"] == aps["hard"]
    assert set(report["curves"]) == {"all", "easy", "medium", "hard"}

    (tmp_path / "wider_medium_val.mat").unlink()
    with pytest.raises(FileNotFoundError, match=rf"wider_medium_val\.mat.*{tmp_path.name}"):
        load_wider_mat(tmp_path)


def test_wider_mat_with_a_missing_variable(tmp_path):
    _write_wider_mats(tmp_path)
    scipy.io.savemat(tmp_path / "wider_hard_val.mat", {"other": np.zeros(2)})
    with pytest.raises(ValueError, match=r"wider_hard_val\.mat: no variable 'gt_list'"):
        load_wider_mat(tmp_path)


def test_evaluation_report_and_plot(tmp_path):
    truth = {"a": gt([A, B], ignore=[False, True]), "b": gt([C])}
    preds = {"a": np.array([det(A, 0.9), det(FAR, 0.3)]), "b": np.array([det(C, 0.6)])}
    report = evaluation_report(preds, truth)
    assert (report["images"], report["faces"], report["ignored_faces"], report["predictions"]) == (2, 2, 1, 3)
    assert report["ap"] == wider_ap(preds, truth) == 1.0  # the lowest score is the FP
    assert report["ap_by_size"]["medium"] == {"ap": 1.0, "faces": 2}
    assert report["coco"]["mAP"] == pytest.approx(1.0)
    assert "wider" not in report and len(report["curves"]["all"]["precision"]) == 1000
    assert "coco" not in evaluation_report(preds, truth, coco=False)
    for target, curves in [("report.png", report), ("tuple.png", wider_pr_curve(preds, truth))]:
        path = plot_pr_curve(curves, tmp_path / "plots" / target)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_voc_ap_uses_the_precision_envelope():
    # recall 0.5 at precision 0.5, then 1.0 at precision 2/3: envelope lifts the first step to 2/3
    assert voc_ap(np.array([0.5, 1.0]), np.array([0.5, 2 / 3])) == pytest.approx(2 / 3, abs=1e-12)


def test_widerface_text_round_trip(tmp_path):
    preds = {
        "0_Parade_Parade_0_1014": np.array([det([1.5, 2.25, 30.5, 40.75], 0.5), det(A, 0.875)]),
        "1_Handshaking_7": np.zeros((0, 5)),
    }
    names = {
        "0_Parade_Parade_0_1014": "0--Parade/0_Parade_Parade_0_1014.jpg",
        "1_Handshaking_7": "1--Handshaking/1_Handshaking_7.jpg",
    }
    written = write_widerface_predictions(preds, tmp_path, names)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "0--Parade/0_Parade_Parade_0_1014.txt",
        "1--Handshaking/1_Handshaking_7.txt",
    ]
    assert written[0].read_text().splitlines() == [
        "0_Parade_Parade_0_1014",
        "2",
        "10 10 39 39 0.875",
        "1.5 2.25 29 38.5 0.5",
    ]
    back = read_widerface_predictions(tmp_path)
    assert set(back) == set(preds)
    np.testing.assert_array_equal(back["0_Parade_Parade_0_1014"], preds["0_Parade_Parade_0_1014"][::-1])
    assert back["1_Handshaking_7"].shape == (0, 5)
    with pytest.raises(KeyError, match="no image name"):
        write_widerface_predictions({"x": np.zeros((0, 5))}, tmp_path, names)


def test_widerface_text_errors_name_file_and_line(tmp_path):
    event = tmp_path / "0--Parade"
    event.mkdir()
    bad = event / "img_1.txt"
    bad.write_text("img_1\n2\n1 2 3 4 0.9\n1 2 three 4 0.8\n")
    with pytest.raises(ValueError, match=rf"{bad.name}:4: expected 'x y w h score'"):
        read_widerface_predictions(tmp_path)
    bad.write_text("img_1\n3\n1 2 3 4 0.9\n")
    with pytest.raises(ValueError, match=rf"{bad.name}:2: the count line says 3 boxes, the file has 1"):
        read_widerface_predictions(tmp_path)
    bad.write_text("img_2\n0\n")
    with pytest.raises(ValueError, match=rf"{bad.name}:1: image name 'img_2'"):
        read_widerface_predictions(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such prediction directory"):
        read_widerface_predictions(tmp_path / "missing")


def test_faceless_false_positives_are_left_out_only_when_asked():
    truth = {"a": gt([A]), "empty": gt(np.zeros((0, 4)))}
    preds = {"a": np.array([det(A, 0.5)]), "empty": np.array([det(FAR, 0.9), det(B, 0.8)])}
    # the protocol: counted; normalised 0.9 -> 1, 0.8 -> 0.75, 0.5 -> 0; at t = 0 three proposals, one face
    precision, recall, _ = wider_pr_curve(preds, truth)
    assert precision[0] == 0.0 and recall[0] == 0.0  # the FP alone: no recall yet
    assert precision[-1] == pytest.approx(1 / 3) and recall[-1] == 1.0
    assert voc_ap(recall, precision) == pytest.approx(1 / 3)
    precision, recall, _ = wider_pr_curve(preds, truth, count_faceless=False)  # outside the protocol
    assert precision[-1] == 1.0 and recall[-1] == 1.0


def test_match_outcomes_is_the_curve_per_detection():
    boxes_gt, ignore = ground_truth_arrays(gt([A, B, C], ignore=[False, False, True]))
    assert boxes_gt.dtype == np.float64 and ignore.tolist() == [False, False, True]
    a_shifted = [12, 10, 51, 49]
    boxes = np.array([A, C, a_shifted, FAR, B], float)  # best first
    proposal, recalls = match_outcomes(boxes, boxes_gt, ignore)
    assert proposal.tolist() == [True, False, True, True, True]  # C is ignored: no proposal
    assert recalls.tolist() == [True, False, False, False, True]  # the duplicate of A recalls nothing
    # the same detections scored best first give the same counts on the curve at t = 0
    preds = {"a": np.concatenate([boxes, np.linspace(1, 0, 5)[:, None]], axis=1)}
    precision, recall, _ = wider_pr_curve(preds, {"a": gt([A, B, C], ignore=[False, False, True])})
    assert precision[-1] == pytest.approx(recalls.sum() / proposal.sum()) and recall[-1] == 1.0
    with pytest.raises(ValueError, match="a dict needs a 'boxes' entry"):
        ground_truth_arrays({"ignore": []}, "x")


def test_size_bucket_edges_and_indices():
    assert BUCKET_EDGES == (16, 32, 96) and SIZE_BUCKETS == ("tiny", "small", "medium", "large")
    heights = [15.9, 16, 31.9, 32, 96, 96.1]
    boxes = np.array([[0, 0, 10, h] for h in heights])
    assert bucket_index(boxes).tolist() == [0, 1, 1, 2, 2, 3]
    member = size_buckets(boxes)
    assert [SIZE_BUCKETS[i] for i in bucket_index(boxes)] == [
        next(name for name in SIZE_BUCKETS if member[name][j]) for j in range(len(heights))
    ]
    assert bucket_index(np.zeros((0, 4))).shape == (0,)


def test_mat_frame_transform_fits_the_resize():
    labels = {
        "a": SimpleNamespace(boxes=np.array([[10, 10, 30, 40], [50, 60, 90, 100]], float)),
        "b": SimpleNamespace(boxes=np.zeros((0, 4))),
    }
    wider = {
        "a": {"name": "0--Parade/a.jpg", "boxes": labels["a"].boxes * [2, 3, 2, 3] + [5, 0, 5, 0]},
        "b": {"name": "0--Parade/b.jpg", "boxes": np.zeros((0, 4))},
    }
    maps = mat_frame_transform(labels, wider)
    np.testing.assert_allclose(maps["a"], [2, 5, 3, 0], atol=1e-9)
    np.testing.assert_allclose(maps["b"], maps["a"])  # a face-less image takes the median map
    moved = to_mat_frame({"a": np.array([[10, 10, 30, 40, 0.9]]), "unknown": np.zeros((0, 5))}, maps)
    assert list(moved) == ["a"]
    np.testing.assert_allclose(moved["a"], [[25, 30, 65, 120, 0.9]])
    wider["a"]["boxes"] = wider["a"]["boxes"][:1]
    with pytest.raises(ValueError, match="the labels have 2 faces, the WIDER .mat 1"):
        mat_frame_transform(labels, wider)


def test_format_report_lists_every_number():
    truth = {"a": gt([A, B], ignore=[False, True]), "b": gt([C])}
    preds = {"a": np.array([det(A, 0.9), det(FAR, 0.3)]), "b": np.array([det(C, 0.6)])}
    text = format_report(evaluation_report(preds, truth))
    assert "2 images, 2 faces (1 ignored), 3 predictions" in text and "WIDER AP@0.5: 1.0000" in text
    assert "tiny - (0)" in text and "medium 1.0000 (2)" in text and "COCO mAP@[.5:.95]: 1.0000" in text


def test_the_evaluate_facade_re_exports_the_stable_names():
    import latentface.evaluate as facade
    import latentface.formats.widerface as widerface
    import latentface.inference.evaluate as inference_evaluate
    import latentface.metrics as metrics

    for name in facade.__all__:
        home = widerface if "widerface" in name else inference_evaluate if name == "evaluate_checkpoint" else metrics
        assert getattr(facade, name) is getattr(home, name), name


# ----------------------------------------------------------- one protocol on every path


def _random_wider(rng, events=2, images=10, faces=6, faceless=(0, 3)):
    """Official-kit ground truth of random images: {event: [(name, xywh [N,4], {subset: 1-based indices})]}.

    Face-less images (``faceless`` indices of each event) get the kit's dummy [0 0 0 0] box, listed
    in no subset, as the official .mat holds them.
    """
    data = {}
    for e in range(events):
        event = f"{e}--Event{e}"
        rows = []
        for i in range(images):
            name = f"{e}_Event{e}_{i}"
            if i in faceless:
                rows.append((name, np.zeros((1, 4)), {s: [] for s in ("easy", "medium", "hard")}))
                continue
            n = int(rng.integers(1, faces + 1))
            xy = rng.integers(0, 400, (n, 2)).astype(float)
            xywh = np.concatenate([xy, rng.integers(4, 120, (n, 2)).astype(float)], axis=1)
            hard = [j + 1 for j in range(n) if rng.random() < 0.9]
            medium = [j for j in hard if rng.random() < 0.7]
            easy = [j for j in medium if rng.random() < 0.6]
            rows.append((name, xywh, {"easy": easy, "medium": medium, "hard": hard}))
        data[event] = rows
    return data


def _save_wider(gt_dir, data):
    events = list(data)
    scipy.io.savemat(
        gt_dir / "wider_face_val.mat",
        {
            "event_list": _cell(events),
            "file_list": _cell([_cell([name for name, _, _ in data[e]]) for e in events]),
            "face_bbx_list": _cell([_cell([xywh for _, xywh, _ in data[e]]) for e in events]),
        },
    )
    for subset in ("easy", "medium", "hard"):
        lists = [_cell([np.array(k[subset], float).reshape(-1, 1) for _, _, k in data[e]]) for e in events]
        scipy.io.savemat(gt_dir / f"wider_{subset}_val.mat", {"gt_list": _cell(lists)})


def _random_predictions(rng, truth_xyxy, extra=4):
    """Sub-pixel detections near each face plus false positives (some at negative x, near zero:
    where x2 - x1 is not exact in float64), with random scores."""
    preds = {}
    for key, boxes in truth_xyxy.items():
        near = boxes[rng.integers(0, len(boxes), 5)] + rng.normal(0, 4, (5, 4)) if len(boxes) else np.zeros((0, 4))
        xy = rng.uniform(-0.9, 380, (extra, 2))
        far = np.concatenate([xy, xy + rng.uniform(0.3, 90, (extra, 2))], axis=1)
        rows = np.concatenate([near, far])
        rows[:, 2:] = np.maximum(rows[:, 2:], rows[:, :2] + 0.01)
        preds[key] = np.concatenate([rows, rng.uniform(0.02, 1.0, (len(rows), 1))], axis=1)
    return preds


def test_labels_and_mat_ground_truth_give_the_same_ap_face_less_images_included(tmp_path):
    """The same faces through a WIDER labels file (face-less image: count 0 and the all-zero line) and
    through the official .mat (dummy [0 0 0 0] box): the same AP, bit for bit."""
    rng = np.random.default_rng(3)
    data = _random_wider(rng, faceless=(1, 4))
    for rows in data.values():  # every real face in every subset: each subset is then the labels' set
        for _, xywh, subsets in rows:
            if xywh.any():
                subsets.update({s: list(range(1, len(xywh) + 1)) for s in subsets})
    _save_wider(tmp_path, data)
    lines = []
    for event, rows in data.items():
        for name, xywh, _ in rows:
            faces = [] if not xywh.any() else [" ".join(str(int(v)) for v in b) + " 0 0 0 0 0 0" for b in xywh]
            lines += [f"{event}/{name}.jpg", str(len(faces)), *(faces or ["0 0 0 0 0 0 0 0 0 0"])]
    (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
    labels = read_labels(tmp_path / "labels.txt")
    assert sum(len(r) == 0 for r in labels.values()) == 4

    preds = _random_predictions(rng, {k: r.boxes.astype(np.float64) for k, r in labels.items()})
    from_mat = wider_easy_medium_hard(preds, tmp_path)
    from_labels = wider_ap(preds, labels)
    assert from_mat == {"easy": from_labels, "medium": from_labels, "hard": from_labels}
    assert evaluation_report(preds, labels, gt_dir=tmp_path, coco=False)["wider"]["hard"] == from_labels
    # the face-less images' false positives are what this checks: skipping them changes the AP
    assert wider_ap(preds, labels) != pytest.approx(
        voc_ap(*wider_pr_curve(preds, labels, count_faceless=False)[1::-1]), abs=1e-6
    )


def test_written_prediction_files_evaluate_exactly_as_in_memory(tmp_path):
    """Random sub-pixel boxes and scores: every AP of the files read back equals the in-memory one."""
    rng = np.random.default_rng(11)
    data = _random_wider(rng, images=12)
    (tmp_path / "gt").mkdir()
    _save_wider(tmp_path / "gt", data)
    wider = load_wider_mat(tmp_path / "gt")
    preds = _random_predictions(rng, {k: v["boxes"] for k, v in wider.items()})
    names = {key: v["name"] for key, v in wider.items()}
    write_widerface_predictions(preds, tmp_path / "preds", names)
    back = read_widerface_predictions(tmp_path / "preds")
    truth = {key: {"boxes": v["boxes"], "ignore": ~v["hard"]} for key, v in wider.items()}

    assert wider_easy_medium_hard(back, tmp_path / "gt") == wider_easy_medium_hard(preds, tmp_path / "gt")
    assert wider_ap(back, truth) == wider_ap(preds, truth)
    assert ap_by_size(back, truth) == ap_by_size(preds, truth)
    for key, rows in preds.items():  # best first; scores, x1, y1 exact; x2 = x + w within rounding
        rows = rows[np.argsort(-rows[:, 4], kind="stable")]
        np.testing.assert_array_equal(back[key][:, [0, 1, 4]], rows[:, [0, 1, 4]])
        np.testing.assert_allclose(back[key][:, 2:4], rows[:, 2:4], rtol=0, atol=1e-12)
    # the detector's boxes are float32: their float64 difference is exact, so everything reads back exactly
    single = {key: rows.astype(np.float32).astype(np.float64) for key, rows in preds.items()}
    write_widerface_predictions(single, tmp_path / "single", names)
    again = read_widerface_predictions(tmp_path / "single")
    for key, rows in single.items():
        np.testing.assert_array_equal(again[key], rows[np.argsort(-rows[:, 4], kind="stable")])


def test_coco_reports_the_standard_100_detections_and_labels_the_rest():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    # "a": one face found by the 121st best of 150 detections; "b": one face found by its best one
    truth = {"a": gt([A]), "b": gt([B])}
    far = [[400 + 3 * i, 400, 430 + 3 * i, 430] for i in range(149)]
    crowd = np.array([det(box, 0.9 - i * 0.001) for i, box in enumerate(far[:120])] + [det(A, 0.75)])
    crowd = np.concatenate([crowd, [det(box, 0.5 - i * 0.001) for i, box in enumerate(far[120:])]])
    preds = {"a": crowd, "b": np.array([det(B, 0.95)])}
    coco = coco_map(preds, truth)
    # standard: "a"'s hit is cut (rank 121 > 100): recall 1/2 at precision 1 -> AP50 = 51/101 (COCO's
    # 101 recall points, 0 ... 0.5 reached); every IoU threshold alike -> mAP = AP50
    assert coco["AP50"] == pytest.approx(51 / 101, abs=1e-12) and coco["mAP"] == pytest.approx(51 / 101, abs=1e-12)
    more = coco["beyond_100"]
    assert more["max_detections"] == 150 and more["AP50"] > coco["AP50"]
    # pycocotools' own standard run (its defaults, maxDets 1/10/100) prints the same first two numbers
    image_id = {"a": 1, "b": 2}
    ds = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1, "name": "face"}],
        "annotations": [
            {"id": i + 1, "image_id": image_id[k], "category_id": 1, "iscrowd": 0, "bbox": b, "area": b[2] * b[3]}
            for i, (k, b) in enumerate([("a", [10, 10, 39, 39]), ("b", [100, 100, 39, 39])])
        ],
    }
    coco_gt = COCO()
    coco_gt.dataset = ds
    coco_gt.createIndex()
    dets = [
        {"image_id": image_id[k], "category_id": 1, "score": float(r[4]), "bbox": [*r[:2], *(r[2:4] - r[:2])]}
        for k, rows in preds.items()
        for r in rows
    ]
    evaluator = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert coco["mAP"] == pytest.approx(evaluator.stats[0], abs=1e-12)
    assert coco["AP50"] == pytest.approx(evaluator.stats[1], abs=1e-12)
    assert "not COCO's standard" in format_report(evaluation_report(preds, truth))
    assert "beyond_100" not in coco_map({"b": np.array([det(B, 0.95)])}, truth)
