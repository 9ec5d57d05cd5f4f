import json
import threading

import numpy as np
import pytest
import torch

from latentface.checkpoint import save_checkpoint
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.inference.detector import Detector
from latentface.inference.operating_point import OperatingPoint
from latentface.metrics.wider import match_outcomes
from latentface.model import LatentRetinaFace
from latentface.tools.tuner import MAX_CANDIDATES, ThresholdTuner
from latentface.tools.tuner import logic as tuner_logic

# Image "a": faces F1, F2 and an ignored F3; image "b" has no face.
GT = {
    "a": {
        "boxes": np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32),
        "ignore": np.array([False, False, True]),
    },
    "b": {"boxes": np.zeros((0, 4), np.float32), "ignore": np.zeros(0, bool)},
}
CANDIDATES = {
    "a": {
        "boxes": np.array(
            [
                [0, 0, 10, 10],  # d1 0.9: F1
                [0, 0, 10, 11],  # d2 0.8: IoU 0.91 with d1 (suppressed at NMS 0.4), F1 again
                [40, 0, 50, 10],  # d3 0.7: the ignored F3
                [20, 0, 30, 10],  # d4 0.3: F2
                [60, 0, 70, 10],
            ],  # d5 0.5: nothing
            np.float32,
        ),
        "scores": np.array([0.9, 0.8, 0.7, 0.3, 0.5], np.float32),
    },
    "b": {
        "boxes": np.array([[0, 0, 10, 10], [5, 5, 9, 9]], np.float32),
        "scores": np.array([0.6, 0.01], np.float32),
    },  # 0.01 is below the floor: never cached
}


def hand_tuner(**kwargs):
    return ThresholdTuner.from_candidates({"r": CANDIDATES}, {"r": GT}, **kwargs)


def counts(m):
    return (m["true_positives"], m["false_positives"], m["faces"], m["detections"], m["false_positives_faceless"])


def test_match_outcomes_follow_the_wider_rules():
    boxes = CANDIDATES["a"]["boxes"][[0, 1, 2, 4, 3]]  # best first: d1 d2 d3 d5 d4
    proposal, recalls = match_outcomes(boxes, GT["a"]["boxes"].astype(np.float64), GT["a"]["ignore"])
    assert proposal.tolist() == [True, True, False, True, True]  # d3 hits the ignored face
    assert recalls.tolist() == [True, False, False, False, True]  # d2 finds F1 already recalled
    proposal, recalls = match_outcomes(boxes[:2], np.zeros((0, 4)), np.zeros(0, bool))
    assert proposal.tolist() == [True, True] and recalls.tolist() == [False, False]


@pytest.mark.parametrize(
    "settings, expected, precision, recall",
    [
        # conf 0.02, NMS 0.4: a -> d1 d3 d5 d4 (d2 suppressed), b -> e1. TP d1 d4; FP d5 e1; d3 ignored;
        # e1 is on the face-less image b: a false positive (the official protocol), counted apart too
        (dict(conf=0.02), (2, 2, 2, 5, 1), 2 / 4, 1.0),
        (dict(conf=0.55), (1, 1, 2, 3, 1), 1 / 2, 1 / 2),  # a: d1 d3; b: e1
        (dict(conf=0.65), (1, 0, 2, 2, 0), 1.0, 1 / 2),  # a: d1 d3
        (dict(conf=0.95), (0, 0, 2, 0, 0), 0.0, 0.0),
        (dict(conf=0.02, nms=0.95), (2, 3, 2, 6, 1), 2 / 5, 1.0),  # d2 survives NMS: a second hit on F1
        (dict(conf=0.02, nms=0.95, topk=2), (1, 2, 2, 3, 1), 1 / 3, 1 / 2),  # a keeps d1 d2 before NMS
        (dict(conf=0.02, keep=1), (1, 1, 2, 2, 1), 1 / 2, 1 / 2),  # a: d1; b: e1
    ],
)
def test_metrics_at_hand_computed_operating_points(settings, expected, precision, recall):
    m = hand_tuner().set(**settings).metrics()
    assert counts(m) == expected
    assert m["precision"] == pytest.approx(precision)
    assert m["recall"] == pytest.approx(recall)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert m["f1"] == pytest.approx(f1)
    tp, fp, faceless = expected[0], expected[1], expected[4]
    assert m["precision_without_faceless"] == (tp / (tp + fp - faceless) if tp + fp - faceless else 0.0)
    assert {k: m[k] for k in ("conf", "nms", "topk", "keep")} == hand_tuner().set(**settings).thresholds()


def test_detections_of_one_image_are_thresholded_suppressed_and_cut():
    tuner = hand_tuner().set(conf=0.4, image="a")
    det = tuner.detections()
    assert det["scores"].tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert det["boxes"].tolist() == [[0, 0, 10, 10], [40, 0, 50, 10], [60, 0, 70, 10]]
    assert det["landmarks"].shape == (3, 5, 2)
    assert tuner.set(keep=2).detections()["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert len(tuner.detections(image="b")["scores"]) == 1
    assert len(tuner.set(conf=0.6).detections(image=1)["scores"]) == 0  # strictly above, as postprocess


def point_on_its_curve(m) -> tuple:
    """The curve's vertex for the point's threshold, and the point, as (recall, precision, faceless FP)."""
    j = m["curve_index"]
    vertex = (m["recall_curve"][j], m["precision_curve"][j], int(m["faceless_curve"][j]))
    return vertex, (m["recall"], m["precision"], m["false_positives_faceless"])


def test_operating_point_is_a_vertex_of_its_curve():
    tuner = hand_tuner()
    m = tuner.set(conf=0.02).metrics()
    # a and b best first: d1 .9 (TP), d3 .7 (ignored: no proposal), e1 .6 (FP, face-less), d5 .5 (FP), d4 .3 (TP)
    assert m["threshold_curve"].tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5, 0.3])
    assert m["precision_curve"].tolist() == [1.0, 1.0, 0.5, 1 / 3, 0.5]
    assert m["recall_curve"].tolist() == [0.5, 0.5, 0.5, 0.5, 1.0]
    assert m["faceless_curve"].tolist() == [0, 0, 1, 1, 1]
    assert m["proposals_curve"].tolist() == [1, 1, 2, 3, 4]
    for conf in (0.02, 0.4, 0.55, 0.6, 0.75, 0.85):
        vertex, point = point_on_its_curve(tuner.set(conf=conf).metrics())
        assert vertex == point, conf
    assert tuner.set(conf=0.95).metrics()["curve_index"] is None  # nothing above: no point to draw


def test_operating_point_is_on_the_drawn_curve_exactly_at_every_setting(shared):
    """The point and the curve drawn next to it, at many settings (keep=1 included): equal numbers."""
    tuner = shared
    checked = 0
    for rate in ("latent_75.npy", "latent_12.npy"):
        for nms, topk, keep in ((0.4, 5000, 750), (0.4, 5000, 1), (0.3, 200, 5), (0.7, 50, 750)):
            for conf in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9):
                m = tuner.set(rate=rate, conf=conf, nms=nms, topk=topk, keep=keep).metrics()
                if m["curve_index"] is None:
                    assert m["detections"] == 0
                    continue
                vertex, point = point_on_its_curve(m)
                assert vertex == point, (rate, conf, nms, topk, keep)
                checked += 1
    assert checked >= 30


def test_the_exact_curve_holds_every_point_of_the_official_curve(shared):
    """Same rule as latentface.metrics.wider: each of the official curve's 1000 sampled points is a vertex."""
    from latentface.metrics.wider import wider_pr_curve

    tuner = shared.set(rate="latent_75.npy", nms=0.4, topk=5000, keep=750)
    m = tuner.metrics()
    official_p, official_r, _ = wider_pr_curve(tuner.predictions_at_floor(), tuner.ground_truth["latent_75.npy"])
    vertices = set(zip(m["recall_curve"].tolist(), m["precision_curve"].tolist()))
    sampled = {(r, p) for r, p in zip(official_r.tolist(), official_p.tolist()) if r > 0}
    assert len(sampled) > 10 and sampled <= vertices


def test_the_tuner_uses_the_operating_point():
    tuner = hand_tuner(point=OperatingPoint(conf=0.55, nms=0.3, topk=100, keep=9), keep=5)
    assert tuner.point == OperatingPoint(conf=0.55, nms=0.3, topk=100, keep=5)
    assert (tuner.conf, tuner.nms, tuner.topk, tuner.keep) == (0.55, 0.3, 100, 5)
    assert tuner.set(conf=0.7).point == OperatingPoint(conf=0.7, nms=0.3, topk=100, keep=5)
    assert MAX_CANDIDATES == OperatingPoint().topk == hand_tuner().max_candidates


def test_bad_settings_name_the_valid_range():
    tuner = hand_tuner()
    with pytest.raises(ValueError, match=r"conf must be in \[0.02, 1\]"):
        tuner.set(conf=0.01)
    with pytest.raises(ValueError, match="nms IoU"):
        tuner.set(nms=0)
    with pytest.raises(ValueError, match=r"topk must be in \[1, 5000\]"):
        tuner.set(topk=6000)
    with pytest.raises(ValueError, match="unknown rate 75"):
        tuner.set(rate=75)
    with pytest.raises(ValueError, match=r"image index 2 out of range \[0, 2\)"):
        tuner.set(image=2)
    with pytest.raises(ValueError, match="unknown image key 'c'"):
        tuner.set(image="c")
    assert tuner.thresholds() == {"conf": 0.6, "nms": 0.4, "topk": 5000, "keep": 750}  # nothing half-applied


# ------------------------------------------------------------------- with a real model


@pytest.fixture(scope="module")
def val_sets(synthetic_dataset):
    root = synthetic_dataset(0, 6, size=64, rates=(12, 75))
    return {rate: NestedLatentWiderFaceDataset(root, "val", rate) for rate in ("latent_75.npy", "latent_12.npy")}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = LatentRetinaFace(backbone="resnet18", bridge="pixelshuffle", out_channels=16).eval()
    with torch.no_grad():  # spread the untrained face scores over (0, 1)
        for conv in net.heads.cls:
            conv.weight.mul_(40)
    return net


@pytest.fixture(scope="module")
def shared(model, val_sets):
    """One tuner for the tests that set every value they rely on (detection is cached across them)."""
    return ThresholdTuner(Detector(model, device="cpu"), val_sets)


@pytest.fixture()
def counted(model):
    """The model with a count of the images it has run on."""
    seen = {"images": 0}
    handle = model.register_forward_pre_hook(lambda m, args: seen.__setitem__("images", seen["images"] + len(args[0])))
    yield model, seen
    handle.remove()


def test_detections_equal_the_detector_at_every_operating_point(model, val_sets, shared):
    tuner = shared.set(rate="latent_75.npy")
    ds = val_sets["latent_75.npy"]
    latents = torch.stack([ds[i][0] for i in range(len(ds))])
    compared = 0
    for conf, nms, topk, keep in [
        (0.02, 0.4, 5000, 750),
        (0.5, 0.2, 300, 750),
        (0.7, 0.6, 50, 10),
        (0.02, 1.0, 20, 750),
    ]:
        tuner.set(conf=conf, nms=nms, topk=topk, keep=keep)
        expected = Detector(model, OperatingPoint(conf, nms, topk, keep), device="cpu")(latents)
        for i, want in enumerate(expected):
            got = tuner.detections(i)
            assert len(got["scores"]) == len(want["scores"]), (conf, nms, topk, keep, i)
            for name in ("boxes", "scores", "landmarks"):
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-3)
            compared += len(want["scores"])
    assert compared > 100  # the comparison covered many boxes, not empty lists


def test_operating_point_without_the_full_nms_equals_the_cut_of_it(model, val_sets):
    fresh = ThresholdTuner(Detector(model, device="cpu"), val_sets, conf=0.5, nms=0.3, topk=800, keep=40)
    quick = fresh.metrics(curve=False)  # NMS over the candidates above 0.5 only
    assert ("latent_75.npy", 0.3, 800) not in fresh._nms_cache
    dets = [fresh.detections(i) for i in range(6)]
    full = fresh.metrics()  # the curve runs NMS over every candidate
    assert ("latent_75.npy", 0.3, 800) in fresh._nms_cache
    assert {k: full[k] for k in quick} == quick
    for i, det in enumerate(dets):
        np.testing.assert_array_equal(fresh.detections(i)["boxes"], det["boxes"])


def test_the_model_runs_once_per_image_and_rate(counted, val_sets):
    model, seen = counted
    tuner = ThresholdTuner(Detector(model, device="cpu"), val_sets)
    assert seen["images"] == 0  # nothing runs before a rate is used
    for conf in (0.02, 0.5, 0.9):
        for nms in (0.3, 0.5):
            tuner.set(conf=conf, nms=nms, topk=100, keep=50).metrics()
            tuner.detections(image=3)
    assert seen["images"] == len(val_sets["latent_75.npy"])
    tuner.set(rate="latent_12.npy").metrics()
    tuner.set(rate=75, conf=0.3).detections()  # back to a cached rate, named by its number
    assert seen["images"] == 2 * len(val_sets["latent_75.npy"])
    assert set(tuner.detection_seconds) == {"latent_75.npy", "latent_12.npy"}


def test_raising_the_threshold_never_adds_detections_or_recall(shared):
    tuner = shared.set(rate="latent_75.npy", nms=0.4, topk=5000, keep=750)
    previous = None
    for conf in np.linspace(0.02, 0.99, 12):
        tuner.set(conf=float(conf))
        m = tuner.metrics(curve=False)
        per_image = [len(tuner.detections(i)["scores"]) for i in range(len(tuner.keys[tuner.rate]))]
        assert sum(per_image) == m["detections"]
        if previous is not None:
            assert all(a <= b for a, b in zip(per_image, previous[0]))
            assert m["recall"] <= previous[1]
        previous = per_image, m["recall"]
    low = tuner.set(conf=0.02).metrics()["recall"]
    assert tuner.set(conf=0.99).metrics()["recall"] <= low
    assert low > 0  # the untrained model's many boxes do reach some faces


def test_saved_thresholds_round_trip_through_detect(model, val_sets, shared, tmp_path):
    tuner = shared.set(rate="latent_75.npy", conf=0.37, nms=0.3, topk=400, keep=20)
    path = tuner.save(tmp_path / "sub" / "thresholds.json")
    assert json.loads(path.read_text()) == {"conf": 0.37, "nms": 0.3, "topk": 400, "keep": 20}
    assert OperatingPoint.load(path).to_dict() == tuner.thresholds()
    weights = save_checkpoint({"model": model.state_dict(), "config": model.config}, tmp_path / "w.pth")
    # what `detect --thresholds` does
    detector = Detector.from_checkpoint(weights, device="cpu", point=OperatingPoint.load(path))
    assert detector.point == tuner.point
    latent = val_sets["latent_75.npy"][2][0]
    np.testing.assert_allclose(detector(latent)[0]["boxes"], tuner.detections(2)["boxes"], rtol=1e-5, atol=1e-3)


@pytest.fixture()
def expensive_calls(monkeypatch):
    """Counts of the tuner's expensive steps: NMS over every candidate, and a PR curve."""
    calls = {"full_nms": 0, "nms": 0, "curve": 0}
    run_nms, pr_curve = tuner_logic._run_nms, tuner_logic.exact_pr_curve

    def counted_nms(cands, keys, nms, topk, above):
        calls["nms"] += 1
        calls["full_nms"] += above is None
        return run_nms(cands, keys, nms, topk, above)

    def counted_curve(*args, **kwargs):
        calls["curve"] += 1
        return pr_curve(*args, **kwargs)

    monkeypatch.setattr(tuner_logic, "_run_nms", counted_nms)
    monkeypatch.setattr(tuner_logic, "exact_pr_curve", counted_curve)
    return calls


def test_widgets_drive_the_tuner_quickly(shared, tmp_path, expensive_calls, counted, monkeypatch):
    tuner = shared.set(rate="latent_75.npy", conf=0.6, nms=0.4, topk=5000, keep=750, image=0)
    tuner.candidates("latent_12.npy")  # both rates detected before the model is counted
    box = tuner.widgets(save_path=tmp_path / "t.json")
    controls = box.controls
    assert set(controls) == {"conf", "nms", "topk", "keep", "rate", "image"}
    assert box.children and box.status.value
    box.wait()

    # a new score threshold is a cut of the cached NMS and a point on the cached curve: the model,
    # NMS over every candidate and the curve never run again (the quick path, whatever the machine load)
    _, seen = counted
    before, images = dict(expensive_calls), seen["images"]
    full_draws, point_draws = box.draws["full_draws"], box.draws["point_draws"]
    for conf in (0.3, 0.45, 0.6, 0.75, 0.9):
        controls["conf"].value = conf
        m = tuner.metrics(curve=False)
        assert tuner.conf == conf
        assert f"precision <b>{m['precision']:.3f}</b>, recall <b>{m['recall']:.3f}</b>" in box.status.value
        assert box.point_line.value == tuner.point_text(m)
    assert expensive_calls == before and seen["images"] == images
    # the point moves over the cached curve picture: no full redraw of the PR figure
    assert box.draws["full_draws"] == full_draws and box.draws["point_draws"] == point_draws + 5
    point = box.draws["point_draws"]

    # a new NMS IoU: the curve is computed off the widget thread. The curve computation is held until
    # the control's change has returned: were the curve computed on the widget thread, it would not return.
    release, held = threading.Event(), threading.Event()
    pr_curve = tuner_logic.exact_pr_curve

    def held_curve(*args, **kwargs):
        held.set()
        assert release.wait(60), "the curve thread was not released"
        return pr_curve(*args, **kwargs)

    monkeypatch.setattr(tuner_logic, "exact_pr_curve", held_curve)
    before = box.pr_image.value
    controls["nms"].value = 0.6
    assert not tuner.has_curve("latent_75.npy", 0.6, tuner.topk, tuner.keep)
    assert "(PR curve being computed)" in box.status.value
    assert held.wait(60)  # meanwhile the curve is being computed, in another thread
    assert box.draws["point_draws"] == point  # the point waits for its curve
    release.set()
    box.wait()
    assert ("latent_75.npy", 0.6, tuner.topk, tuner.keep) in tuner._curve_cache
    assert box.pr_image.value != before and box.pr_image.value[:4] == b"\x89PNG"
    assert "(PR curve being computed)" not in box.status.value and "detections" in box.status.value
    assert box.draws["full_draws"] == full_draws + 1
    controls["keep"].value = 5
    controls["image"].value = 2
    box.wait()
    assert (tuner.nms, tuner.keep, tuner.image) == (0.6, 5, 2)
    assert len(tuner.detections()["scores"]) <= 5
    controls["rate"].value = "latent_12.npy"
    box.wait()
    assert tuner.rate == "latent_12.npy" and "<b>latent_12.npy</b>" in box.status.value

    box.save_button.click()
    saved = OperatingPoint.load(tmp_path / "t.json").to_dict()
    assert saved == {"conf": 0.9, "nms": 0.6, "topk": tuner.topk, "keep": 5}
    assert "saved" in box.saved.value

    # thresholds at the sliders' steps, in the tuner, the file and the message; the message goes with a change
    controls["conf"].value = 0.22999999999999998
    controls["nms"].value = 0.35000000000000003
    assert (tuner.conf, tuner.nms) == (0.23, 0.35) and box.saved.value == ""
    box.save_button.click()
    assert json.loads((tmp_path / "t.json").read_text())["conf"] == 0.23
    assert "'conf': 0.23, 'nms': 0.35," in box.saved.value
    controls["keep"].value = 6
    box.wait()
    assert box.saved.value == ""


def test_saved_notebooks_show_the_tuners_figure(shared, tmp_path):
    box = shared.set(rate="latent_75.npy", conf=0.5).widgets(save_path=tmp_path / "t.json")
    box.wait()
    bundle = box._repr_mimebundle_()
    assert bundle["image/png"][:4] == b"\x89PNG"  # what a page without the widget manager shows
    assert bundle["text/plain"] == f"threshold tuner at {shared.thresholds()} (live controls need a running kernel)"
    assert "application/vnd.jupyter.widget-view+json" in bundle  # a live kernel still gets the controls


def test_plot_shows_the_image_and_the_curve(shared):
    tuner = shared.set(rate="latent_75.npy", conf=0.5, image=1)
    fig = tuner.plot()
    ax_img, ax_pr = fig.axes
    assert ax_img.images[0].get_array().shape == (64, 64, 3)
    m = tuner.metrics()
    point = ax_pr.lines[1].get_xydata()
    assert point.tolist() == [[m["recall"], m["precision"]]]
    assert point.tolist()[0] in ax_pr.lines[0].get_xydata().tolist()  # on the drawn curve, exactly
    assert ax_pr.get_title().splitlines()[1:] == tuner.point_text(m).split("; ", 1)
    # the legend sits below the axes (pr_artists, the widgets' figure too): it covers no point of the curve
    fig.draw_without_rendering()
    legend, axes = ax_pr.get_legend().get_window_extent(), ax_pr.get_window_extent()
    assert legend.y1 < axes.y0 and legend.x0 >= fig.bbox.x0 and legend.x1 <= fig.bbox.x1
    rgb, what = tuner.picture()
    assert rgb.shape == (64, 64, 3) and what.startswith("image")  # synth stores the images


def test_sweep_scans_thresholds_without_moving_the_operating_point():
    tuner = hand_tuner().set(conf=0.65)
    rows = tuner.sweep([0.02, 0.55, 0.95])
    assert [counts(r) for r in rows] == [(2, 2, 2, 5, 1), (1, 1, 2, 3, 1), (0, 0, 2, 0, 0)]
    assert [r["conf"] for r in rows] == [0.02, 0.55, 0.95]
    assert tuner.conf == 0.65
    default = tuner.sweep()
    assert [r["conf"] for r in default[:3]] == [0.02, 0.03, 0.04] and default[-1]["conf"] == 0.99


def test_the_logic_does_not_import_the_widget_toolkit():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(tuner_logic.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not any(name.startswith("ipywidgets") for name in imported)
    top_level = {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert "latentface.tools.tuner.widgets" in imported - top_level  # only inside ThresholdTuner.widgets
