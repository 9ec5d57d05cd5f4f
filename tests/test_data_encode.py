"""`latentface encode`: real images + WIDER labels -> retina-modify layout, labels rescaled by hand-computed factors."""

import re

import cv2
import numpy as np
import pytest

from latentface.cli import main
from latentface.codec import dct
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.data.encode import encode_folder, resize_geometry
from latentface.data.labels import read_labels
from latentface.data.layout import image_path, latent_path

WIDER = """0--A/a.jpg
2
10 5 20 10 1 0 0 0 0 0
90 40 20 20 0 0 0 1 0 0
1--B/b.png
0
0 0 0 0 0 0 0 0 0 0
"""
RETINA = """# 0--A/a.jpg
10 5 20 10 12 7 0.0 28 7 0.0 20 10 0.0 14 13 0.0 26 13 0.0 0.9
90 40 20 20 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
# 1--B/b.png
"""


@pytest.fixture
def source(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "img" / "0--A").mkdir(parents=True)
    (tmp_path / "img" / "1--B").mkdir()
    a = cv2.GaussianBlur(rng.integers(0, 256, (50, 100, 3), dtype=np.uint8), (0, 0), 2)  # 100 wide, 50 high
    cv2.imwrite(str(tmp_path / "img" / "0--A" / "a.jpg"), a)
    cv2.imwrite(str(tmp_path / "img" / "1--B" / "b.png"), np.full((80, 64, 3), 90, np.uint8))
    (tmp_path / "wider.txt").write_text(WIDER)
    (tmp_path / "retina.txt").write_text(RETINA)
    return tmp_path


def test_geometry():
    assert resize_geometry(100, 50, 64, False) == (0.64, 1.28, 0, 0, 64, 64)
    assert resize_geometry(100, 50, 64, True) == (0.64, 0.64, 0, 16, 64, 32)
    assert resize_geometry(64, 80, 64, True) == (51 / 64, 0.8, 6, 0, 51, 64)  # 51.2 px rounds to 51


def test_stretch(source):
    out = source / "out"
    s = encode_folder(source / "img", source / "wider.txt", out, "train", size=64, rates=(25, 100), progress=False)
    assert s["images"] == 2 and s["faces"] == 2 and s["boxes_dropped"] == 0 and s["missing_images"] == 0
    recs = read_labels(out / "train" / "labels.txt")
    a = recs["a"]
    # x * 0.64, y * 1.28; the second face [90, 40, 110, 60] -> [57.6, 51.2, 70.4, 76.8] clipped to 64
    np.testing.assert_allclose(a.boxes, [[6.4, 6.4, 19.2, 19.2], [57.6, 51.2, 64, 64]], atol=1e-4)
    assert a.ignore.tolist() == [False, True] and a.attributes[0].tolist() == [1, 0, 0, 0, 0, 0]
    assert len(recs["b"]) == 0
    assert not (out / "train" / "labels_landmarks.txt").exists()  # WIDER input has no landmarks
    for key in ("a", "b"):
        assert cv2.imread(str(image_path(out, "train", key))).shape == (64, 64, 3)
        lat = np.load(latent_path(out, "train", key, 100))
        assert lat.shape == (1, 256, 4, 4) and lat.dtype == np.float16
        assert latent_path(out, "train", key, 25).exists() and not latent_path(out, "train", key, 75).exists()
    png = cv2.cvtColor(cv2.imread(str(image_path(out, "train", "b"))), cv2.COLOR_BGR2RGB)
    assert np.abs(dct.decode(np.load(latent_path(out, "train", "b", 100))).astype(int) - png).max() <= 1
    ds = NestedLatentWiderFaceDataset(out, "train", latent_type=100)
    assert ds.keys == ["a", "b"] and ds.codec == "dct" and ds.summary()["boxes_dropped"] == 0


def test_letterbox_with_landmarks(source):
    out = source / "out"
    encode_folder(
        source / "img", source / "retina.txt", out, "val", size=64, letterbox=True, rates=(75,), progress=False
    )
    a = read_labels(out / "val" / "labels_landmarks.txt")["a"]
    # scale 0.64, offset (0, 16)
    np.testing.assert_allclose(a.boxes, [[6.4, 19.2, 19.2, 25.6], [57.6, 41.6, 64, 54.4]], atol=1e-4)
    np.testing.assert_allclose(
        a.landmarks[0], [[7.68, 20.48], [17.92, 20.48], [12.8, 22.4], [8.96, 24.32], [16.64, 24.32]], atol=1e-4
    )
    assert a.has_landmarks.tolist() == [True, False] and np.all(a.landmarks[1] == -1)
    img = cv2.imread(str(image_path(out, "val", "a")))
    assert (
        img[:16].max() == 0 and img[48:].max() == 0 and img[16:48].max() > 0
    )  # black bars above and below the 64x32 image


def test_missing_images(source):
    (source / "img" / "1--B" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"wider.txt: image '1--B/b.png' is missing or unreadable"):
        encode_folder(source / "img", source / "wider.txt", source / "o1", size=64, rates=(75,), progress=False)
    s = encode_folder(
        source / "img", source / "wider.txt", source / "o2", size=64, rates=(75,), progress=False, on_missing="skip"
    )
    assert s["images"] == 1 and s["missing_images"] == 1


def test_cli(source, capsys):
    assert (
        main(
            [
                "encode",
                "--images",
                str(source / "img"),
                "--labels",
                str(source / "wider.txt"),
                "--root",
                str(source / "o"),
                "--size",
                "32",
                "--rates",
                "12",
                "--limit",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "wrote 1 images (2 faces)" in capsys.readouterr().out
    assert (
        main(
            [
                "encode",
                "--images",
                str(source / "img"),
                "--labels",
                str(source / "wider.txt"),
                "--root",
                str(source / "p"),
                "--size",
                "30",
            ]
        )
        == 2
    )
    assert re.search(r"latentface encode: error: .*multiple of 16", capsys.readouterr().err)


def test_a_failed_image_write_is_an_error_naming_the_file(source, monkeypatch):
    monkeypatch.setattr(cv2, "imwrite", lambda *args, **kwargs: False)  # as on a full disk
    with pytest.raises(OSError, match=r"o3/train/images/a.png: could not write the image"):
        encode_folder(
            source / "img", source / "wider.txt", source / "o3", size=64, rates=(75,), progress=False, on_missing="skip"
        )
