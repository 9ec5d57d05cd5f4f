"""`latentface detect` and the Detector API: JSON schema, pictures, thresholds, clear errors on bad input."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from latentface import viz
from latentface.checkpoint import save_checkpoint
from latentface.cli import main
from latentface.cli.args import operating_point
from latentface.codec import dct
from latentface.data.layout import find_latents
from latentface.formats.detections import detection_record, detections_json, read_detections
from latentface.formats.widerface import read_widerface_predictions
from latentface.inference import Detector, OperatingPoint, picture_background
from latentface.model import LatentRetinaFace
from latentface.util.io import read_image

# Face probability of every anchor in the rigged model below: softmax([0, 5])[1].
FACE_SCORE = float(torch.tensor([0.0, 5.0]).softmax(0)[1])


@pytest.fixture(scope="module")
def dataset(synthetic_dataset):
    """2 training and 2 validation images of 64x64 pixels: latents [256, 4, 4]; images and codec.json kept."""
    return synthetic_dataset(2, 2, size=64, rates=(75,), seed=5)


@pytest.fixture(scope="module")
def weight(tmp_path_factory):
    """A checkpoint whose every anchor is a face (score FACE_SCORE) with zero offsets: each detection is
    an anchor box, with all five landmarks at its centre."""
    torch.manual_seed(0)
    model = LatentRetinaFace(backbone="resnet18", bridge="pixelshuffle", out_channels=16, blocks=1)
    with torch.no_grad():
        for head in (*model.heads.box, *model.heads.landmark, *model.heads.cls):
            head.weight.zero_()
            head.bias.zero_()
        for head in model.heads.cls:
            head.bias[1::2] = 5.0
    path = tmp_path_factory.mktemp("weights") / "rigged.pth"
    save_checkpoint({"model": model.state_dict(), "config": model.config}, path)
    return path


def latent_file(root, split="val", index=2):
    return root / split / "latent" / f"0_Synthetic_Synthetic_0_{index}" / "latent_75.npy"


def fails(argv, capsys, message):
    """``main(argv)`` stops at the command's error boundary: exit status 2, one line naming the problem."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    start = err.find(f"latentface {argv[0]}: error: ")  # after any progress bar
    assert start >= 0 and re.search(message, err[start:]), err


def test_detect_one_file_writes_the_json_schema_and_a_picture(dataset, weight, tmp_path, capsys):
    out = tmp_path / "one.json"
    assert (
        main(
            [
                "detect",
                "--latent",
                str(latent_file(dataset)),
                "--weight",
                str(weight),
                "--keep",
                "5",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    assert set(record) == {"image", "latent", "image_size", "detections"}
    assert record["image"] == "0_Synthetic_Synthetic_0_2" and record["image_size"] == [64, 64]
    assert len(record["detections"]) == 5
    anchor_sizes = {round(16 * 2 ** (k / 3) * 2**level, 2) for level in range(5) for k in range(3)}
    for det in record["detections"]:
        x1, y1, x2, y2 = det["box"]
        assert det["score"] == pytest.approx(FACE_SCORE, abs=1e-5)
        assert round(x2 - x1, 2) in anchor_sizes and x2 - x1 == pytest.approx(y2 - y1, abs=0.02)
        centre = [pytest.approx((x1 + x2) / 2, abs=0.02), pytest.approx((y1 + y2) / 2, abs=0.02)]
        assert det["landmarks"] == [centre] * 5
    assert read_detections(out) == [record]
    picture = read_image(out.with_suffix(".png"))
    assert picture.shape == (64, 64, 3)
    assert "1 latent(s), 5 face(s)" in capsys.readouterr().out


def test_detect_folder_writes_a_list_pictures_and_wider_text_files(dataset, weight, tmp_path):
    out = tmp_path / "folder"
    assert (
        main(
            [
                "detect",
                "--latent",
                str(dataset),
                "--weight",
                str(weight),
                "--keep",
                "3",
                "--output",
                str(out),
                "--batch_size",
                "3",
                "--no_progress",
            ]
        )
        == 0
    )
    records = json.loads((out / "detections.json").read_text())
    keys = [f"0_Synthetic_Synthetic_0_{i}" for i in range(4)]
    assert [r["image"] for r in records] == keys  # sorted files: train 0, 1 then val 2, 3
    assert all(len(r["detections"]) == 3 and r["image_size"] == [64, 64] for r in records)
    assert sorted(p.name for p in (out / "pictures").iterdir()) == [f"{k}.png" for k in keys]

    # The rigged model's scores tie, so compare with a JSON run over the same files in the same batches.
    val = tmp_path / "val"
    assert (
        main(
            [
                "detect",
                "--latent",
                str(dataset / "val"),
                "--weight",
                str(weight),
                "--keep",
                "3",
                "--conf",
                "0.02",
                "--max_pictures",
                "0",
                "--output",
                str(val),
                "--no_progress",
            ]
        )
        == 0
    )
    records = json.loads((val / "detections.json").read_text())
    wider = tmp_path / "wider"
    assert (
        main(
            [
                "detect",
                "--latent",
                str(dataset / "val"),
                "--weight",
                str(weight),
                "--keep",
                "3",
                "--format",
                "widerface",
                "--max_pictures",
                "0",
                "--output",
                str(wider),
                "--no_progress",
            ]
        )
        == 0
    )
    assert sorted(p.relative_to(wider).as_posix() for p in wider.rglob("*.txt")) == [
        "widerface/0--Synthetic/0_Synthetic_Synthetic_0_2.txt",
        "widerface/0--Synthetic/0_Synthetic_Synthetic_0_3.txt",
    ]
    read = read_widerface_predictions(wider / "widerface")
    by_key = {r["image"]: r for r in records}
    for key, rows in read.items():
        expected = np.array([[*d["box"], d["score"]] for d in by_key[key]["detections"]])
        np.testing.assert_allclose(rows, expected, atol=0.011)
    assert not (wider / "pictures").exists()


def test_pictures_are_drawn_over_the_image_then_the_decoded_latent_then_the_latent_view(dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    file = latent_file(root)
    latent = np.load(file)[0]
    image, what = picture_background(file, latent)
    stored = read_image(root / "val/images/0_Synthetic_Synthetic_0_2.png")
    assert what.startswith("image") and np.array_equal(image, stored)
    shutil.rmtree(root / "val" / "images")
    decoded, what = picture_background(file, latent)
    assert what == "decoded (dct codec)" and np.array_equal(decoded, dct.decode(latent))
    with pytest.raises(FileNotFoundError, match="no RGB image for key '0_Synthetic_Synthetic_0_2'"):
        picture_background(file, latent, "image")
    (root / "codec.json").unlink()
    view, what = picture_background(file, latent)
    assert what.startswith("latent") and np.array_equal(view, viz.latent_pca_image(latent))
    with pytest.raises(ValueError, match="its codec is unknown"):
        picture_background(file, latent, "decoded")
    explicit, what = picture_background(file, latent, "decoded", codec="dct")  # --codec dct: the user vouches
    assert np.array_equal(explicit, decoded)


def test_latent_view_colours_follow_the_latent_and_cells_are_16_pixel_blocks():
    latent = np.zeros((8, 2, 3), np.float32)
    latent[0, :, :2] = 10.0  # left two columns differ from the right one along a single direction
    view = viz.latent_pca_image(latent)
    assert view.shape == (32, 48, 3)
    blocks = view.reshape(2, 16, 3, 16, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()  # every cell is one colour
    assert (view[0, 0] == view[31, 31]).all() and (view[0, 0] != view[0, 47]).any()
    assert np.array_equal(view, viz.latent_pca_image(latent[None]))  # [1, C, h, w] accepted, same colours


def test_drawn_boxes_land_where_the_detections_are():
    image = np.zeros((64, 64, 3), np.uint8)
    det = {
        "boxes": np.array([[10.0, 20.0, 40.0, 50.0]]),
        "scores": np.array([0.9]),
        "landmarks": np.full((1, 5, 2), 25.0),
    }
    drawn = viz.draw_detections(image, det)
    assert (drawn[35, 10] == viz.DETECTION_COLOUR).all() and (drawn[25, 25] == viz.LANDMARK_COLOURS[-1]).all()
    assert (drawn[5, 5] == 0).all() and (image == 0).all()  # the input is left untouched
    half = viz.draw_detections(np.zeros((32, 32, 3), np.uint8), det, input_size=(64, 64))
    assert (half[17, 5] == viz.DETECTION_COLOUR).all()  # scaled to a half-size image
    none = viz.draw_detections(image, det, min_score=0.95)
    assert (none == 0).all()


def test_detections_json_has_one_detection_per_line_and_reads_back(tmp_path):
    det = {
        "boxes": np.array([[1.234, 2.0, 30.0, 40.5]]),
        "scores": np.array([0.987654]),
        "landmarks": np.full((1, 5, 2), 7.0),
    }
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "landmarks": np.zeros((0, 5, 2))}
    records = [detection_record("a", (32, 48), det), detection_record("b", (32, 48), empty, latent="b.npy")]
    text = detections_json(records)
    assert text.count("\n") == 6 and json.loads(text) == records
    assert records[0]["detections"][0] == {
        "box": [1.23, 2.0, 30.0, 40.5],
        "score": 0.98765,
        "landmarks": [[7.0, 7.0]] * 5,
    }
    (tmp_path / "d.json").write_text(text)
    assert read_detections(tmp_path / "d.json") == records
    (tmp_path / "d.json").write_text('{"image": "a"}')
    with pytest.raises(ValueError, match="d.json: not a detections file"):
        read_detections(tmp_path / "d.json")


def test_thresholds_file_round_trip_and_flags_override_it(tmp_path):
    path = OperatingPoint(conf=0.45, nms=0.3, topk=1000, keep=100).save(tmp_path / "t.json")
    assert OperatingPoint.load(path).to_dict() == {"conf": 0.45, "nms": 0.3, "topk": 1000, "keep": 100}
    args = type("Args", (), dict(thresholds=str(path), conf=None, nms=0.5, topk=None, keep=None, format="json"))()

    def resolve(args):  # what `latentface detect` runs at
        return operating_point(args, evaluation=args.format == "widerface").to_dict()

    assert resolve(args) == {"conf": 0.45, "nms": 0.5, "topk": 1000, "keep": 100}
    args.thresholds = None
    assert resolve(args) == {"conf": 0.6, "nms": 0.5, "topk": 5000, "keep": 750}
    args.format = "widerface"
    assert resolve(args)["conf"] == 0.02
    bad = tmp_path / "bad.json"
    bad.write_text('{"confidence": 0.5}')
    with pytest.raises(ValueError, match=r"bad.json: unknown threshold 'confidence'"):
        OperatingPoint.load(bad)
    bad.write_text('{"conf": 1.5}')
    with pytest.raises(ValueError, match=r"bad.json: threshold 'conf' must lie in \[0, 1\], got 1.5"):
        OperatingPoint.load(bad)
    bad.write_text('{"conf": 0.5,')
    with pytest.raises(ValueError, match="bad.json: not a valid thresholds file"):
        OperatingPoint.load(bad)


def test_detector_from_checkpoint_takes_a_thresholds_file(weight, tmp_path):
    path = OperatingPoint(conf=0.9, nms=0.3, topk=50, keep=2).save(tmp_path / "t.json")
    detector = Detector.from_checkpoint(weight, device="cpu", point=OperatingPoint.load(path), nms=0.5)
    assert detector.point.to_dict() == {"conf": 0.9, "nms": 0.5, "topk": 50, "keep": 2}
    dets = detector(torch.zeros(3, 256, 4, 4))
    assert len(dets) == 3 and all(d["boxes"].shape == (2, 4) and d["landmarks"].shape == (2, 5, 2) for d in dets)


def test_bad_inputs_stop_with_a_message_naming_the_file(dataset, weight, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    fails(
        ["detect", "--latent", str(latent_file(dataset)), "--weight", str(corrupt), "--output", str(tmp_path)],
        capsys,
        r"corrupt.pth: not a readable latentface checkpoint",
    )

    wrong = tmp_path / "rgb_like.npy"
    np.save(wrong, np.zeros((1, 3, 4, 4), np.float16))
    fails(
        ["detect", "--latent", str(wrong), "--weight", str(weight), "--output", str(tmp_path)],
        capsys,
        r"rgb_like.npy: latent shape \[3, 4, 4\], the model expects \[256, H, W\]",
    )
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((256, 16), np.float32))
    fails(
        ["detect", "--latent", str(flat), "--weight", str(weight), "--output", str(tmp_path)],
        capsys,
        r"flat.npy: latent shape \[256, 16\], expected \[1,C,H,W\] or \[C,H,W\]",
    )

    fails(
        [
            "detect",
            "--latent",
            str(latent_file(dataset)),
            "--weight",
            str(weight),
            "--network",
            "resnet50",
            "--output",
            str(tmp_path),
        ],
        capsys,
        r"rigged.pth: holds a resnet18 model, but --network says resnet50",
    )
    fails(
        ["detect", "--latent", str(dataset), "--weight", str(weight), "--latent_type", "50", "--output", str(tmp_path)],
        capsys,
        r"no latent_50.npy files \(found latent_75.npy; pass --latent_type\)",
    )
    fails(
        ["detect", "--latent", str(dataset), "--weight", str(weight), "--conf", "1.5", "--output", str(tmp_path)],
        capsys,
        r"command line: threshold 'conf' must lie in \[0, 1\], got 1.5",
    )


def test_bad_latents_in_a_folder_can_be_skipped_and_counted(dataset, weight, tmp_path, capsys):
    folder = tmp_path / "latents"
    folder.mkdir()
    np.save(folder / "good.npy", np.load(latent_file(dataset)))
    np.save(folder / "nan.npy", np.full((1, 256, 4, 4), np.nan, np.float32))
    fails(
        ["detect", "--latent", str(folder), "--weight", str(weight), "--output", str(tmp_path / "a")],
        capsys,
        r"nan.npy: latent has 4096 non-finite values",
    )
    assert (
        main(
            [
                "detect",
                "--latent",
                str(folder),
                "--weight",
                str(weight),
                "--output",
                str(tmp_path / "b"),
                "--on_bad_latent",
                "skip",
                "--no_progress",
                "--keep",
                "1",
            ]
        )
        == 0
    )
    assert [r["image"] for r in json.loads((tmp_path / "b" / "detections.json").read_text())] == ["good"]
    assert "1 bad latent(s) skipped" in capsys.readouterr().out
    assert find_latents(folder) == [folder / "good.npy", folder / "nan.npy"]


def test_empty_latents_are_bad_latents_and_skip_still_writes_the_others(dataset, weight, tmp_path, capsys):
    """A latent with H or W of 0 is refused before the model, naming the file; skip writes the good ones."""
    folder = tmp_path / "latents"
    folder.mkdir()
    np.save(folder / "a_good.npy", np.load(latent_file(dataset)))
    np.save(folder / "b_empty_h.npy", np.zeros((256, 0, 8), np.float16))
    np.save(folder / "c_empty_w.npy", np.zeros((1, 256, 8, 0), np.float32))
    np.save(folder / "d_good.npy", np.load(latent_file(dataset, index=3)))
    fails(
        ["detect", "--latent", str(folder / "b_empty_h.npy"), "--weight", str(weight), "--output", str(tmp_path / "a")],
        capsys,
        r"b_empty_h.npy: latent shape \[256, 0, 8\] is empty",
    )
    fails(
        ["detect", "--latent", str(folder), "--weight", str(weight), "--output", str(tmp_path / "a")],
        capsys,
        r"b_empty_h.npy: latent shape \[256, 0, 8\] is empty",
    )
    out = tmp_path / "b"
    argv = ["detect", "--latent", str(folder), "--weight", str(weight), "--output", str(out)]
    assert main([*argv, "--on_bad_latent", "skip", "--no_progress", "--keep", "1"]) == 0
    assert [r["image"] for r in json.loads((out / "detections.json").read_text())] == ["a_good", "d_good"]
    printed = capsys.readouterr().out
    assert "2 bad latent(s) skipped" in printed and "c_empty_w.npy: latent shape [1, 256, 8, 0] is empty" in printed


# ------------------------------------------------------------------ latentface evaluate


def _cell(items):
    arr = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        arr[i, 0] = item
    return arr


def _write_mats(gt, keys, boxes):
    """The official kit's four .mat files for one event; every face in every subset."""
    import scipy.io

    scipy.io.savemat(
        gt / "wider_face_val.mat",
        {
            "event_list": _cell(["0--Synthetic"]),
            "file_list": _cell([_cell(keys)]),
            "face_bbx_list": _cell([_cell(boxes)]),
        },
    )
    for subset in ("easy", "medium", "hard"):
        every = [np.arange(1, len(b) + 1, dtype=float).reshape(-1, 1) for b in boxes]
        scipy.io.savemat(gt / f"wider_{subset}_val.mat", {"gt_list": _cell([_cell(every)])})


def test_evaluate_saved_predictions_with_official_wider_mats_in_the_original_frame(dataset, tmp_path, capsys):
    from latentface.data.dataset import NestedLatentWiderFaceDataset
    from latentface.data.labels import read_labels
    from latentface.formats.widerface import write_widerface_predictions

    records = NestedLatentWiderFaceDataset(dataset, "val").records
    # every face found, at distinct scores (one score for all is the official 0/0: AP 0)
    scores = iter(np.linspace(0.9, 0.5, sum(len(r) for r in records.values())))
    perfect = {key: np.array([[*box, next(scores)] for box in r.boxes]).reshape(-1, 5) for key, r in records.items()}
    write_widerface_predictions(perfect, tmp_path / "preds", {k: r.name for k, r in records.items()})
    # The "original" images were 2x wider and 3x taller than the 64x64 encoded ones.
    labels = read_labels(dataset / "val" / "labels.txt")
    keys = list(labels)
    boxes = [
        np.array([[2 * b[0], 3 * b[1], 2 * (b[2] - b[0]), 3 * (b[3] - b[1])] for b in labels[k].boxes]) for k in keys
    ]
    gt = tmp_path / "gt"
    gt.mkdir()
    _write_mats(gt, keys, boxes)

    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--predictions",
                str(tmp_path / "preds"),
                "--dataset_root",
                str(dataset),
                "--wider_gt",
                str(gt),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["ap"] == pytest.approx(1.0) and report["coco"]["AP50"] == pytest.approx(1.0)
    assert report["wider"] == {"easy": pytest.approx(1.0), "medium": pytest.approx(1.0), "hard": pytest.approx(1.0)}
    assert set(report) >= {"images", "faces", "ignored_faces", "predictions", "ap_by_size", "curves", "source"}
    assert (out / "pr_curve.png").stat().st_size > 1000
    assert "WIDER AP@0.5: 1.0000" in capsys.readouterr().out

    boxes[0] = boxes[0][:1] if len(boxes[0]) > 1 else np.concatenate([boxes[0], boxes[0]])
    _write_mats(gt, keys, boxes)
    fails(
        [
            "evaluate",
            "--predictions",
            str(tmp_path / "preds"),
            "--dataset_root",
            str(dataset),
            "--wider_gt",
            str(gt),
            "--output",
            str(out),
        ],
        capsys,
        f"image 0--Synthetic/{keys[0]}.jpg: the labels have {len(labels[keys[0]])} faces",
    )


def test_mat_frame_fit_recovers_a_resize_with_letterbox_offset():
    from latentface.metrics.mat import mat_frame_transform, to_mat_frame

    ours = type("R", (), {"boxes": np.array([[10.0, 20.0, 30.0, 60.0], [40.0, 5.0, 50.0, 15.0]])})()
    theirs = {
        "a": {"name": "e/a.jpg", "boxes": ours.boxes * [2.5, 1.5, 2.5, 1.5] + [0, 12, 0, 12]},
        "b": {"name": "e/b.jpg", "boxes": np.zeros((0, 4))},
    }
    maps = mat_frame_transform({"a": ours, "b": type("R", (), {"boxes": np.zeros((0, 4))})()}, theirs)
    np.testing.assert_allclose(maps["a"], [2.5, 0.0, 1.5, 12.0], atol=1e-9)
    np.testing.assert_allclose(maps["b"], maps["a"])  # no face: the median map
    moved = to_mat_frame({"a": np.array([[10.0, 20.0, 30.0, 60.0, 0.7]])}, maps)
    np.testing.assert_allclose(moved["a"], [[25.0, 42.0, 75.0, 102.0, 0.7]])
    theirs["a"]["boxes"] = theirs["a"]["boxes"] + [[0, 0, 0, 0], [9, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"e/a.jpg: its label boxes are not a resize of its WIDER .mat boxes"):
        mat_frame_transform({"a": ours}, theirs)


def test_evaluate_a_checkpoint_writes_report_curve_and_wider_files(dataset, weight, tmp_path):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--weight",
                str(weight),
                "--dataset_root",
                str(dataset),
                "--keep",
                "4",
                "--output",
                str(out),
                "--no_progress",
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 2 and report["predictions"] == 8
    assert report["source"]["thresholds"] == {"conf": 0.02, "nms": 0.4, "topk": 5000, "keep": 4}
    assert set(report["ap_by_size"]) == {"tiny", "small", "medium", "large"} and set(report["coco"]) == {"mAP", "AP50"}
    assert len(list((out / "widerface").rglob("*.txt"))) == 2 and (out / "pr_curve.png").is_file()


def test_the_detect_facade_keeps_the_public_names():
    import latentface.detect as facade
    from latentface import inference
    from latentface.data import layout
    from latentface.formats import detections

    assert facade.Detector is inference.Detector and facade.predict_dataset is inference.predict_dataset
    assert facade.find_latents is layout.find_latents and facade.latent_key is layout.latent_key
    assert facade.detections_json is detections.detections_json


def test_evaluate_counts_images_without_prediction_files_warns_and_can_require_all(dataset, tmp_path, capsys):
    from latentface.data.dataset import NestedLatentWiderFaceDataset
    from latentface.data.labels import read_labels
    from latentface.formats.widerface import write_widerface_predictions

    records = NestedLatentWiderFaceDataset(dataset, "val").records
    first, second = list(records)
    assert len(records[first]) and len(records[second])
    r = records[first]  # only the first image has a prediction file: every face of it, distinct scores
    preds = {first: np.concatenate([r.boxes, np.linspace(0.9, 0.5, len(r))[:, None]], axis=1)}
    write_widerface_predictions(preds, tmp_path / "preds", {first: r.name})
    labels = read_labels(dataset / "val" / "labels.txt")
    boxes = [
        np.array([[2 * b[0], 3 * b[1], 2 * (b[2] - b[0]), 3 * (b[3] - b[1])] for b in labels[k].boxes]) for k in labels
    ]
    gt = tmp_path / "gt"
    gt.mkdir()
    _write_mats(gt, list(labels), boxes)
    argv = ["evaluate", "--predictions", str(tmp_path / "preds"), "--dataset_root", str(dataset), "--no_coco"]
    out = tmp_path / "eval"
    assert main([*argv, "--wider_gt", str(gt), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    counted = {key: int((~rec.ignore).sum()) for key, rec in records.items()}
    # the second image's faces are missed (the official protocol), not dropped: recall n1/(n1+n2) at precision 1
    assert report["images_without_predictions"] == 1 and report["images"] == 2
    assert report["ap"] == pytest.approx(counted[first] / (counted[first] + counted[second]), abs=1e-12)
    # --wider_gt: the .mat's faces of the unpredicted image count as missed too (they were cut before)
    assert report["wider_images_without_predictions"] == 1
    assert report["wider"]["hard"] == pytest.approx(len(boxes[0]) / (len(boxes[0]) + len(boxes[1])), abs=1e-12)
    warned = [line for line in err.splitlines() if line.startswith("latentface evaluate: warning: ")]
    assert len(warned) == 2 and all(f"e.g. {second}" in line for line in warned), err
    assert f"1 of 2 images of the ground truth have no predictions ({counted[second]} faces counted as missed)" in err
    assert "Traceback" not in err

    fails(
        [*argv, "--require_all", "--output", str(out)],
        capsys,
        rf"preds: 1 of 2 images of split 'val' have no predictions .*e\.g\. {second}; --require_all",
    )
    # every file there: no warning, and --require_all passes
    write_widerface_predictions({second: np.zeros((0, 5))}, tmp_path / "preds", {second: records[second].name})
    assert main([*argv, "--require_all", "--wider_gt", str(gt), "--output", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["json", "widerface"])
def test_a_bad_latent_under_raise_keeps_every_result_before_it_and_names_skip(dataset, weight, tmp_path, capsys, fmt):
    folder = tmp_path / "latents"
    folder.mkdir()
    np.save(folder / "a_good.npy", np.load(latent_file(dataset)))
    np.save(folder / "b_good.npy", np.load(latent_file(dataset, index=3)))
    np.save(folder / "c_nan.npy", np.full((1, 256, 4, 4), np.nan, np.float32))
    np.save(folder / "d_good.npy", np.load(latent_file(dataset)))
    out = tmp_path / "out"
    argv = ["detect", "--latent", str(folder), "--weight", str(weight), "--output", str(out), "--keep", "2"]
    fails(
        # batch size 3: the two good files wait in a batch when the bad one is read; 1: each is run at once
        [*argv, "--format", fmt, "--batch_size", "3" if fmt == "json" else "1", "--no_progress"],
        capsys,
        r"c_nan.npy: latent has 4096 non-finite values.*; the 2 result\(s\) before it are in .*; "
        r"--on_bad_latent skip skips bad latents and goes on",
    )
    if fmt == "json":  # a valid JSON list of the two results before the bad file
        assert [r["image"] for r in read_detections(out / "detections.json")] == ["a_good", "b_good"]
    else:
        assert sorted(p.stem for p in (out / "widerface").rglob("*.txt")) == ["a_good", "b_good"]
    assert sorted(p.stem for p in (out / "pictures").iterdir()) == ["a_good", "b_good"]
