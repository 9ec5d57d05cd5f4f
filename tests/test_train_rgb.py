"""The RGB baseline's data (PNG images, same targets, matching augmentations) and experiment tracking."""

import sys
import types

import cv2
import numpy as np
import pytest
import torch

from latentface.data.augment import RandomHorizontalFlip, RandomLatentCrop
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.data.images import RandomImageCrop, RandomImageFlip, RGBWiderFaceDataset, crop_image, hflip_image
from latentface.data.layout import image_path
from latentface.inference import Detector
from latentface.train import TrainConfig, train
from latentface.training.records import Tracker, draw_boxes
from latentface.viz import DETECTION_COLOUR, TRUTH_COLOUR

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(synthetic_dataset):
    return synthetic_dataset(4, 2, size=64, rates=(75,), seed=5)


def face_target(boxes, landmarks, has):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "landmarks": torch.tensor(landmarks, dtype=torch.float32),
        "has_landmarks": torch.tensor(has),
        "key": "k",
    }


def test_rgb_dataset_reads_the_png_with_the_latent_datasets_targets(dataset):
    rgb, latent = RGBWiderFaceDataset(dataset, "train"), NestedLatentWiderFaceDataset(dataset, "train")
    assert rgb.keys == latent.keys and rgb.image_size == latent.image_size == (64, 64)
    for i in range(len(rgb)):
        image, target = rgb[i]
        png = cv2.imread(str(image_path(dataset, "train", rgb.keys[i])))[:, :, ::-1]
        assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
        assert torch.equal(image, torch.from_numpy(png.transpose(2, 0, 1).copy()).float())
        expected = latent[i][1]
        assert target["key"] == expected["key"]
        for k in ("boxes", "landmarks", "has_landmarks"):
            assert torch.equal(target[k], expected[k])


def test_rgb_dataset_names_a_broken_image(dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    key = RGBWiderFaceDataset(copy, "val").keys[1]
    image_path(copy, "val", key).write_bytes(b"garbage")
    with pytest.raises(ValueError, match=rf"{image_path(copy, 'val', key)}: not a readable image"):
        RGBWiderFaceDataset(copy, "val")[1]


def test_image_flip_and_crop_by_hand():
    image = torch.arange(3 * 2 * 4, dtype=torch.float32).reshape(3, 2, 4)
    target = face_target(
        [[0, 0, 1, 2], [1, 0, 3, 1]],
        [[[1, 1], [2.5, 1], [2, 1.5], [1.25, 2], [2.25, 2]], [[-1, -1]] * 5],
        [True, False],
    )
    flipped, t = hflip_image(image, target)
    assert torch.equal(flipped[:, :, 0], image[:, :, 3])
    assert t["boxes"].tolist() == [[3, 0, 4, 2], [1, 0, 3, 1]]
    assert t["landmarks"][0].tolist() == [[1.5, 1], [3, 1], [2, 1.5], [1.75, 2], [2.75, 2]]  # left/right swapped
    assert t["landmarks"][1].tolist() == [[-1, -1]] * 5

    image = torch.zeros(3, 64, 64)
    target = face_target([[40, 20, 60, 30], [30, 18, 50, 28], [20, 20, 40, 30]], [[[45, 25]] * 5] * 3, [True] * 3)
    out, t = crop_image(image, target, top=16, left=32, height=32, width=32)
    assert out.shape == (3, 32, 32)
    assert t["boxes"].tolist() == [[8, 4, 28, 14], [0, 2, 18, 12]]  # third face's centre left the crop; second clipped
    assert t["landmarks"][0, 0].tolist() == [13, 9]


def test_image_augmentations_draw_like_the_latent_ones():
    """Same per-sample seed -> same flip and the same crop window for the latent and the RGB model."""
    target = face_target([[10, 12, 30, 40], [40, 2, 60, 20]], [[[15, 20]] * 5, [[45, 8]] * 5], [True, True])
    for seed in range(6):
        torch.manual_seed(seed)
        _, lt = RandomLatentCrop((2, 3))(*RandomHorizontalFlip(0.5)(torch.zeros(256, 4, 4), target))
        torch.manual_seed(seed)
        image, it = RandomImageCrop((2, 3))(*RandomImageFlip(0.5)(torch.zeros(3, 64, 64), target))
        assert image.shape == (3, 32, 48)
        for k in ("boxes", "landmarks", "has_landmarks"):
            assert torch.equal(lt[k], it[k]), (seed, k)


def test_rgb_baseline_trains_into_a_checkpoint_detect_reads(dataset, tmp_path):
    run_dir = train(
        TrainConfig(
            dataset_root=str(dataset),
            input="rgb",
            model="resnet18",
            out_channels=16,
            batch_size=2,
            epochs=1,
            workers=0,
            out=str(tmp_path),
            name="rgb",
            no_wandb=True,
            progress=False,
        )
    )
    detector = Detector.from_checkpoint(run_dir / "weight_final.pth", device="cpu")
    assert detector.model.config["kind"] == "rgb"
    assert detector(torch.zeros(3, 64, 64))[0]["landmarks"].shape[1:] == (5, 2)
    assert "ImageNet" in (run_dir / "stats.json").read_text()


def test_tracking_switches_off_with_one_line(monkeypatch, tmp_path):
    assert Tracker.wanted(no_wandb=True) == (False, "--no_wandb")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert Tracker.wanted(no_wandb=False) == (False, "WANDB_MODE=disabled")
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    lines = []
    tracker = Tracker(True, None, "p", "n", tmp_path, {}, None, log=lines.append)
    assert tracker.run is None and lines == [
        "experiment tracking off: wandb is not installed (pip install 'latentface[tracking]')"
    ]
    tracker.log({"a": 1}, step=1)  # no-ops
    tracker.finish()


def test_an_offline_run_keeps_its_wandb_id_without_asking_wandb_to_resume(monkeypatch, tmp_path):
    """Offline, wandb ignores ``resume`` with a warning in every resumed run's log (a Kaggle kernel's first run)."""
    inits = []
    monkeypatch.setitem(
        sys.modules,
        "wandb",
        types.SimpleNamespace(init=lambda **kw: inits.append(kw) or types.SimpleNamespace(url=None)),
    )
    for mode in ("offline", "online"):
        monkeypatch.setenv("WANDB_MODE", mode)
        Tracker(True, None, "p", "n", tmp_path, {}, "ab12cd34", log=lambda line: None)
    assert [(kw["id"], kw["resume"]) for kw in inits] == [("ab12cd34", None), ("ab12cd34", "allow")]


def test_draw_boxes_colours():
    """The W&B validation pictures use the colours of every other picture (latentface.viz)."""
    out = draw_boxes(np.zeros((20, 20, 3), np.uint8), np.array([[2, 2, 8, 8, 0.9]]), np.array([[10, 10, 15, 15]]))
    assert out[2, 5].tolist() == list(DETECTION_COLOUR) and out[10, 12].tolist() == list(TRUTH_COLOUR)
    assert out[0, 0].tolist() == [0, 0, 0]


def test_weights_and_biases_receives_losses_ap_and_validation_images(dataset, tmp_path, monkeypatch):
    """A stand-in wandb module records what training sends (the real one would need an account or a service)."""
    inits, logged = [], []

    class Run:
        url = None

        def log(self, data, step):
            logged.append((step, data))

        def finish(self):
            logged.append(("finished", {}))

    def init(**kwargs):
        inits.append(kwargs)
        return Run()

    monkeypatch.setitem(
        sys.modules, "wandb", types.SimpleNamespace(init=init, Image=lambda image, caption: (caption, image.shape))
    )
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = train(
        TrainConfig(
            dataset_root=str(dataset),
            preset="fast",
            out_channels=16,
            batch_size=2,
            epochs=1,
            workers=0,
            out=str(tmp_path),
            name="tracked",
            progress=False,
            val_images=1,
            wandb_project="faces",
        )
    )
    assert inits[0]["project"] == "faces" and inits[0]["name"] == "tracked" and inits[0]["resume"] == "allow"
    assert inits[0]["config"]["batch_size"] == 2
    assert torch.load(run_dir / "last.pth", weights_only=True)["wandb_id"] == inits[0]["id"]
    metrics = {k: v for step, data in logged if step == 2 for k, v in data.items()}
    assert {"lr", "train/total", "train/box", "train/cls", "train/landmark", "val/total", "val/ap"} <= set(metrics)
    ((caption, shape),) = metrics["val/images"]
    assert shape == (64, 64, 3) and caption == RGBWiderFaceDataset(dataset, "val").keys[0]
    assert logged[-1][0] == "finished"
