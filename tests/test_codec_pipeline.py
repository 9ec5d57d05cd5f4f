"""The whole pipeline with the ``learned`` codec: synth, encode, dataset, training, detection pictures,
the tuner, the RGB baseline's decoded images, the demo; codec.json names the codec and its weights."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from latentface.cli import main
from latentface.codec import dct, learned
from latentface.data.augment import RandomHorizontalFlip, hflip
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.data.encode import encode_folder
from latentface.data.labels import read_labels
from latentface.data.layout import (
    CodecMismatchError,
    dataset_codec,
    image_path,
    latent_path,
    read_codec_description,
    read_codec_name,
)
from latentface.data.synth import draw_image, generate_dataset, image_key
from latentface.inference import Detector, picture_background
from latentface.model import LatentRetinaFace
from latentface.tools.bench.accuracy import decoded_root
from latentface.tools.demo import default_synthetic_root, synthetic_dataset
from latentface.tools.tuner import ThresholdTuner
from latentface.train import TrainConfig, train
from latentface.training.data import build_datasets
from latentface.training.recipes import RECIPES
from latentface.util.io import read_image
from tests.helpers import tiny_train_config

SIZE = 64  # latents [256, 4, 4]
pytestmark = pytest.mark.usefixtures("one_thread")


def tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """2 training + 2 validation images of 64 px, written by `latentface synth --codec learned` at rates 12 and 75."""
    out = tmp_path_factory.mktemp("learned") / "synth"
    assert (
        main(
            [
                "synth",
                "--codec",
                "learned",
                "--root",
                str(out),
                "--train",
                "2",
                "--val",
                "2",
                "--size",
                str(SIZE),
                "--rates",
                "12,75",
                "--seed",
                "5",
                "--no_progress",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def weights(root, tmp_path_factory):
    """A 2-step training run on the learned latents: its final weights."""
    run_dir = train(tiny_train_config(root, tmp_path_factory.mktemp("runs"), name="learned"))
    return run_dir / "weight_final.pth"


def with_other_weights(root, tmp_path):
    """A copy of ``root`` whose codec.json says other learned-codec weights wrote it, without its images."""
    copy = tmp_path / "other-weights"
    shutil.copytree(root, copy)
    for split in ("train", "val"):
        shutil.rmtree(copy / split / "images")
    description = read_codec_description(copy)
    (copy / "codec.json").write_text(json.dumps({**description, "weights_digest": "0" * 64}))
    return copy


def test_synth_writes_learned_latents_and_names_the_weights(root):
    description = read_codec_description(root)
    assert description == {
        "codec": "learned",
        "weights_digest": learned.weights_digest(),
        "size": SIZE,
        "rates": [12, 75],
        "seed": 5,
        "generator": "latentface synth",
    }
    assert read_codec_name(root) == "learned" and dataset_codec(root) is learned
    for split, keys in (("train", [image_key(0), image_key(1)]), ("val", [image_key(2), image_key(3)])):
        assert list(read_labels(root / split / "labels.txt")) == keys
        for key in keys:
            image = read_image(image_path(root, split, key))
            for rate in (12, 75):
                latent = np.load(latent_path(root, split, key, rate))
                assert latent.shape == (1, 256, SIZE // 16, SIZE // 16) and latent.dtype == np.float16
                assert np.array_equal(latent, learned.encode(image, rate))  # the codec's own encode, byte for byte
            assert learned.psnr(learned.decode(np.load(latent_path(root, split, key, 75))), image) > 18
            assert not latent_path(root, split, key, 50).exists()


def test_every_rate_from_one_analysis_equals_the_codec(root):
    image = read_image(image_path(root, "train", image_key(0)))
    for codec in (dct, learned):
        latents = codec.encode_rates(image, codec.QUALITIES)
        assert all(np.array_equal(latents[q], codec.encode(image, q)) for q in codec.QUALITIES)


def test_same_seed_same_bytes_with_two_workers(root, tmp_path):
    generate_dataset(
        tmp_path / "two", 2, 2, size=SIZE, rates=(12, 75), seed=5, progress=False, workers=2, codec="learned"
    )
    first, second = tree_bytes(root), tree_bytes(tmp_path / "two")
    assert list(first) == list(second) and all(first[k] == second[k] for k in first)


def test_encode_with_the_learned_codec(root, tmp_path):
    images = tmp_path / "images"
    for key in (image_key(2), image_key(3)):  # the validation images as the "real" photos, 64 px already
        (images / "0--Synthetic").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(images / "0--Synthetic" / f"{key}.png"), cv2.imread(str(image_path(root, "val", key))))
    labels = (root / "val" / "labels.txt").read_text().replace(".jpg", ".png")
    (tmp_path / "labels.txt").write_text(labels)
    out = tmp_path / "encoded"
    assert (
        main(
            [
                "encode",
                "--codec",
                "learned",
                "--images",
                str(images),
                "--labels",
                str(tmp_path / "labels.txt"),
                "--root",
                str(out),
                "--split",
                "val",
                "--size",
                str(SIZE),
                "--rates",
                "75",
                "--no_progress",
            ]
        )
        == 0
    )
    description = read_codec_description(out)
    assert description["codec"] == "learned" and description["weights_digest"] == learned.weights_digest()
    for key in (image_key(2), image_key(3)):
        assert np.array_equal(np.load(latent_path(out, "val", key, 75)), np.load(latent_path(root, "val", key, 75)))
    ds = NestedLatentWiderFaceDataset(out, "val", 75)
    assert ds.codec == "learned" and len(ds) == 2
    assert (
        main(
            [
                "encode",
                "--codec",
                "learned",
                "--images",
                str(images),
                "--labels",
                str(tmp_path / "labels.txt"),
                "--root",
                str(tmp_path / "two"),
                "--split",
                "val",
                "--size",
                str(SIZE),
                "--rates",
                "75",
                "--workers",
                "2",
                "--no_progress",
            ]
        )
        == 0
    )
    assert tree_bytes(tmp_path / "two") == tree_bytes(out)  # the same bytes from two processes
    # one root, one codec: another split with the dct codec would mix the two under one codec.json
    assert (
        main(
            [
                "encode",
                "--codec",
                "dct",
                "--images",
                str(images),
                "--labels",
                str(tmp_path / "labels.txt"),
                "--root",
                str(out),
                "--split",
                "train",
                "--size",
                str(SIZE),
                "--no_progress",
            ]
        )
        == 2
    )
    assert read_codec_name(out) == "learned"


def test_encode_gives_the_same_bytes_whatever_torch_threads(tmp_path):
    """At 640x640 the learned codec's floats depend on the thread split: encode runs on one thread."""
    image = draw_image(np.random.default_rng(0), 640)[0]
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (tmp_path / "labels.txt").write_text("0--A/a.png\n1\n10 10 20 20 0 0 0 0 0 0\n")
    expected = learned.encode_rates(image, learned.QUALITIES)  # on one thread (the module's fixture)
    torch.set_num_threads(2)
    try:
        encode_folder(
            tmp_path / "img", tmp_path / "labels.txt", tmp_path / "out", size=640, progress=False, codec="learned"
        )
        assert torch.get_num_threads() == 2  # given back
    finally:
        torch.set_num_threads(1)
    for q in learned.QUALITIES:
        assert np.array_equal(np.load(latent_path(tmp_path / "out", "train", "a", q)), expected[q])


def test_the_dataset_loads_and_flips_learned_latents_plainly(root):
    ds = NestedLatentWiderFaceDataset(root, "train", "mixed")
    assert ds.codec == "learned" and len(ds) == 2
    latent, target = ds[0]
    assert latent.shape == (256, SIZE // 16, SIZE // 16)
    config = TrainConfig(dataset_root=str(root), augment=True, crop=1.0)
    train_set, _ = build_datasets(config)
    flip = train_set.transform.transforms[0]
    assert isinstance(flip, RandomHorizontalFlip) and flip.channel_signs == "learned"  # codec.json's codec, not dct
    mirrored, _ = flip.flip(latent, target)
    assert torch.equal(mirrored, latent.flip(-1))  # no exact sign rule for a learned latent: the plain mirror
    assert not torch.equal(hflip(latent, target, "dct")[0], mirrored)


def test_two_training_steps_then_detection_pictures_over_the_decoded_image(root, weights, tmp_path, capsys):
    assert weights.is_file()
    out = tmp_path / "detect"
    assert (
        main(
            [
                "detect",
                "--latent",
                str(root / "val"),
                "--weight",
                str(weights),
                "--output",
                str(out),
                "--background",
                "decoded",
                "--no_progress",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "pictures").iterdir()) == [f"{image_key(2)}.png", f"{image_key(3)}.png"]
    file = latent_path(root, "val", image_key(2), 75)
    latent = np.load(file)[0]
    decoded, what = picture_background(file, latent, "decoded")
    assert what == "decoded (learned codec)" and np.array_equal(decoded, learned.decode(latent))
    assert decoded.shape == (SIZE, SIZE, 3)


def test_other_weights_are_refused_not_decoded(root, weights, tmp_path, capsys):
    copy = with_other_weights(root, tmp_path)
    file = latent_path(copy, "val", image_key(2), 75)
    latent = np.load(file)[0]
    for background in ("decoded", "auto"):  # auto: no stored image, so it would decode
        with pytest.raises(CodecMismatchError, match="sha256 0000.*refusing to decode them with other weights"):
            picture_background(file, latent, background)
    assert picture_background(file, latent, "latent")[1].startswith("latent")  # drawing without decoding still works
    assert (
        main(
            [
                "detect",
                "--latent",
                str(copy / "val"),
                "--weight",
                str(weights),
                "--output",
                str(tmp_path / "d"),
                "--background",
                "decoded",
                "--no_progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latentface detect: error:") and "other weights" in err[0]
    with pytest.raises(CodecMismatchError):
        decoded_root(copy, 75)


def test_the_rgb_baseline_trains_on_images_decoded_by_the_learned_codec(root):
    out = decoded_root(root, 75)
    key = image_key(0)
    decoded = read_image(out / "train" / "images" / f"{key}.png")
    assert np.array_equal(decoded, learned.decode(np.load(latent_path(root, "train", key, 75))))
    assert not np.array_equal(decoded, dct.decode(np.load(latent_path(root, "train", key, 75))))


def test_the_tuner_runs_on_learned_latents(root):
    torch.manual_seed(0)
    model = LatentRetinaFace(backbone="resnet18", bridge="pixelshuffle", out_channels=16).eval()
    tuner = ThresholdTuner(Detector(model, device="cpu"), {"latent_75.npy": NestedLatentWiderFaceDataset(root, "val")})
    metrics = tuner.set(conf=0.5).metrics()
    assert metrics["images"] == 2 and 0 <= metrics["recall"] <= 1
    rgb, what = tuner.picture(background="decoded")
    assert what == "decoded (learned codec)" and rgb.shape == (SIZE, SIZE, 3)


def test_an_unknown_codec_is_one_error_line(tmp_path, capsys):
    assert (
        main(
            [
                "synth",
                "--codec",
                "jpegai",
                "--root",
                str(tmp_path / "x"),
                "--train",
                "1",
                "--val",
                "0",
                "--size",
                str(SIZE),
                "--no_progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["latentface synth: error: unknown codec 'jpegai'; available: ['dct', 'learned']"]
    assert not (tmp_path / "x").exists()  # refused before anything is written
    assert main(["demo", "--quick", "--codec", "jpegai", "--out", str(tmp_path / "demo"), "--no_progress"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "latentface demo: error: unknown codec 'jpegai'; available: ['dct', 'learned']"
    ]


def test_the_demo_keeps_one_synthetic_folder_per_codec(tmp_path):
    assert default_synthetic_root(False, "learned").as_posix() == "data/synthetic-demo-learned"
    assert default_synthetic_root(True, "dct").as_posix() == "data/synthetic-demo-quick-dct"
    quick = RECIPES["demo-quick"]
    data = tmp_path / "synthetic"
    assert synthetic_dataset(data, quick, progress=False, codec="dct") == (data, False)
    assert synthetic_dataset(data, quick, progress=False, codec="learned") == (data, False)  # not the dct latents
    assert read_codec_name(data) == "learned"
    assert synthetic_dataset(data, quick, progress=False, codec="learned") == (data, True)


def test_quick_demo_with_the_learned_codec_records_it(tmp_path, capsys):
    out, data = tmp_path / "demo", tmp_path / "synthetic"
    assert (
        main(
            ["demo", "--quick", "--codec", "learned", "--out", str(out), "--synthetic_root", str(data), "--no_progress"]
        )
        == 0
    )
    summary = json.loads((out / "demo.json").read_text())
    assert summary["codec"]["codec"] == "learned" and summary["codec"]["weights_digest"] == learned.weights_digest()
    assert summary["detections"]["background"] == ["decoded"]  # drawn over the learned codec's decoded image
    assert "learned codec" in (out / "report.md").read_text()


def test_a_given_dataset_keeps_its_own_codec(root, tmp_path, capsys):
    assert (
        main(
            [
                "demo",
                "--quick",
                "--codec",
                "dct",
                "--dataset_root",
                str(root),
                "--out",
                str(tmp_path / "demo"),
                "--no_progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "written by the learned codec" in err[0]
