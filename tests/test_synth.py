"""Synthetic dataset: determinism (same seed, same bytes), layout, face statistics, CLI."""

import json
import re

import cv2
import numpy as np
import pytest

from latentface.cli import main
from latentface.codec import dct
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.data.labels import read_labels
from latentface.data.layout import image_path, latent_path
from latentface.data.synth import draw_image, generate_dataset, image_key


def tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "a"
    summary = generate_dataset(root, 4, 2, size=128, rates=(12, 75, 100), seed=3, progress=False)
    return root, summary


def test_same_seed_same_bytes(small, tmp_path):
    root, _ = small
    generate_dataset(tmp_path / "b", 4, 2, size=128, rates=(12, 75, 100), seed=3, progress=False, workers=2)
    first, second = tree_bytes(root), tree_bytes(tmp_path / "b")
    assert list(first) == list(second) and len(first) > 20
    assert all(first[k] == second[k] for k in first)  # also with 2 worker processes
    generate_dataset(tmp_path / "c", 4, 2, size=128, rates=(12, 75, 100), seed=4, progress=False)
    other = tree_bytes(tmp_path / "c")
    assert other["train/labels.txt"] != first["train/labels.txt"]
    assert other[f"train/images/{image_key(0)}.png"] != first[f"train/images/{image_key(0)}.png"]


def test_layout(small):
    root, summary = small
    assert summary["images"] == 6 and summary["images_per_s"] > 0
    assert json.loads((root / "codec.json").read_text())["codec"] == "dct"
    train, val = read_labels(root / "train" / "labels.txt"), read_labels(root / "val" / "labels.txt")
    assert list(train) == [image_key(i) for i in range(4)] and list(val) == [image_key(4), image_key(5)]
    assert train[image_key(0)].name == f"0--Synthetic/{image_key(0)}.jpg"
    assert image_key(12) == "0_Synthetic_Synthetic_0_12"
    lms = read_labels(root / "train" / "labels_landmarks.txt")
    for key, rec in train.items():
        assert np.array_equal(lms[key].boxes, rec.boxes) and rec.attributes is not None or len(rec) == 0
        img = cv2.imread(str(image_path(root, "train", key)))
        assert img.shape == (128, 128, 3)
        for q in (12, 75, 100):
            lat = np.load(latent_path(root, "train", key, q))
            assert lat.shape == (1, 256, 8, 8) and lat.dtype == np.float16
        assert not latent_path(root, "train", key, 50).exists()
        decoded = dct.decode(np.load(latent_path(root, "train", key, 100)))
        mse = np.mean((decoded.astype(float) - cv2.cvtColor(img, cv2.COLOR_BGR2RGB)) ** 2)
        assert 10 * np.log10(255**2 / mse) > 25  # the latent encodes the saved image


def test_dataset_reads_it_cleanly(small):
    root, _ = small
    ds = NestedLatentWiderFaceDataset(root, "val", latent_type="mixed")
    s = ds.summary()
    assert ds.keys == [image_key(4), image_key(5)] and ds.codec == "dct"
    assert s["labels_without_latent_folder"] == s["latent_folders_without_labels"] == 0
    assert s["missing_rate_files"] == {"latent_25.npy": 2, "latent_50.npy": 2}  # only 12, 75, 100 were written
    latent, target = ds[0]
    assert latent.shape == (256, 8, 8) and target["boxes"].shape[1] == 4


def test_face_statistics():
    """WIDER-like sizes, 0-20 faces, landmarks on the features, invalid flag on mostly hidden faces."""
    heights, counts, inside, has_lm, eyes_above_mouth = [], [], [], [], []
    for i in range(30):
        img, faces = draw_image(np.random.default_rng([9, i]), 640)
        assert img.shape == (640, 640, 3) and img.dtype == np.uint8
        b = faces["boxes"]
        assert np.all(b >= 0) and np.all(b <= 640) and np.all(b[:, 2:] > b[:, :2])
        heights += list(b[:, 3] - b[:, 1])
        counts.append(len(b))
        has_lm.append(faces["has_landmarks"])
        for box, lm, has in zip(b, faces["landmarks"], faces["has_landmarks"]):
            if has:
                inside.append(np.all((lm >= box[:2] - 1) & (lm <= box[2:] + 1)))
                eyes_above_mouth.append(lm[:2, 1].max() < lm[3:, 1].min())
            else:
                assert np.all(lm == -1)
    heights = np.array(heights)
    assert max(counts) <= 20 and min(counts) >= 0 and np.mean(counts) > 3
    assert np.mean((heights >= 6) & (heights <= 34)) > 0.4  # most faces are small
    assert heights.max() > 96 and heights.max() <= 0.8 * 640 * 1.3
    assert np.mean(np.concatenate(has_lm)) > 0.8
    assert np.mean(inside) > 0.97 and np.mean(eyes_above_mouth) > 0.97


def test_errors_and_overwrite(small, tmp_path):
    root, _ = small
    with pytest.raises(FileExistsError, match="already exists"):
        generate_dataset(root, 1, 1, size=128, progress=False)
    with pytest.raises(ValueError, match="multiple of 16"):
        generate_dataset(tmp_path / "x", 1, 1, size=100, progress=False)
    with pytest.raises(ValueError, match="rates must be among"):
        generate_dataset(tmp_path / "x", 1, 1, size=64, rates=(60,), progress=False)
    generate_dataset(tmp_path / "o", 3, 0, size=64, rates=(75,), progress=False)
    generate_dataset(tmp_path / "o", 1, 0, size=64, rates=(75,), progress=False, overwrite=True)
    assert len(list((tmp_path / "o" / "train" / "latent").iterdir())) == 1 and not (tmp_path / "o" / "val").exists()


def test_cli(tmp_path, capsys):
    assert (
        main(
            [
                "synth",
                "--root",
                str(tmp_path / "s"),
                "--train",
                "2",
                "--val",
                "1",
                "--size",
                "64",
                "--rates",
                "25,100",
                "--seed",
                "1",
                "--no_progress",
            ]
        )
        == 0
    )
    assert "wrote 3 images" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "s" / "train" / "latent" / image_key(0)).iterdir()) == [
        "latent_100.npy",
        "latent_25.npy",
    ]
    assert main(["synth", "--dataset_root", str(tmp_path / "s"), "--train", "1", "--val", "0", "--no_progress"]) == 2
    assert re.search(r"latentface synth: error: .*already exists", capsys.readouterr().err)
    assert main(["synth", "--root", str(tmp_path / "t"), "--rates", "25,high", "--no_progress"]) == 2
    assert "latentface synth: error: --rates must be comma-separated integers, got '25,high'" in capsys.readouterr().err


def test_a_failed_image_write_is_an_error_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "imwrite", lambda *args, **kwargs: False)  # as on a full disk
    with pytest.raises(OSError, match=rf"{tmp_path}/d/train/images/{image_key(0)}.png: could not write the image"):
        generate_dataset(tmp_path / "d", 1, 0, size=64, rates=(75,), progress=False)
