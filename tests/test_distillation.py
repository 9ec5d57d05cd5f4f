import math
import shutil

import numpy as np
import pytest
import torch

from latentface.checkpoint import save_checkpoint
from latentface.data.augment import crop, hflip, replay_ops
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.data.teacher_images import TeacherImages, WithTeacherImages, wider_image_path
from latentface.loss import MultiBoxLoss
from latentface.model import LatentRetinaFace, RGBRetinaFace
from latentface.training.distillation import (
    DistillationWeights,
    Distiller,
    TeacherError,
    distilled_anchors,
    load_teacher,
    normalised_l2,
    reconstruction_loss,
    soft_label_loss,
)
from latentface.util.io import write_image

pytestmark = pytest.mark.usefixtures("one_thread")


def test_normalised_l2_compares_directions_not_scales():
    s = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1).repeat(1, 1, 1, 2)  # two locations, both along x
    t = torch.tensor([[0.0, 5.0], [3.0, 0.0]]).T.reshape(1, 2, 1, 2)  # along y (x 5), along x (x 3)
    # location 1: orthogonal unit vectors -> |e1 - e2|^2 = 2; location 2: same direction -> 0
    assert normalised_l2(s, t).item() == pytest.approx(1.0)
    assert normalised_l2(7 * s, s).item() == 0.0
    with pytest.raises(ValueError, match=r"student \[1, 2, 1, 2\], teacher \[1, 2, 2, 1\]"):
        normalised_l2(s, t.reshape(1, 2, 2, 1))


def test_distilled_anchors_are_the_positives_and_the_students_most_face_like_negatives():
    positives = torch.tensor([[False, True, False, False, False, False], [False] * 6])
    face = torch.tensor([[0.9, 0.8, 0.1, 0.7, 0.3, 0.2], [0.1, 0.2, 0.6, 0.5, 0.4, 0.3]])
    mask = distilled_anchors(positives, face, neg_ratio=2, min_negatives=1)
    # image 0: the positive + 2 negatives (0.9, 0.7); image 1: no positive -> min_negatives (the 0.6)
    assert mask.tolist() == [[True, True, False, True, False, False], [False, False, True, False, False, False]]


def test_soft_label_loss_is_the_tempered_kl_over_the_chosen_anchors():
    student = torch.tensor([[[0.0, 0.0], [1.0, -1.0], [5.0, 5.0]]])
    teacher = torch.tensor([[[0.0, 2.0], [1.0, -1.0], [0.0, 9.0]]])
    mask = torch.tensor([[True, True, False]])
    t, temp = 2.0, 2.0
    p = torch.softmax(teacher[0, 0] / t, -1)  # anchor 0: teacher (0, 2)/2, student uniform; anchor 1 equal: KL 0
    kl0 = float((p * (p.log() - math.log(0.5))).sum())
    expected = (kl0 + 0.0) / 2 * temp**2
    assert soft_label_loss(student, teacher, mask, temp).item() == pytest.approx(expected, rel=1e-6)
    none = soft_label_loss(student.requires_grad_(), teacher, torch.zeros_like(mask), temp)
    assert none.item() == 0.0 and none.requires_grad


def _checkpoint(model, path):
    save_checkpoint({"model": model.state_dict(), "config": model.config}, path)
    return path


def test_a_teacher_must_be_an_rgb_checkpoint_and_the_message_names_it(tmp_path):
    student = LatentRetinaFace("resnet18", bridge="codec", out_channels=16)
    latent = _checkpoint(student, tmp_path / "latent.pth")
    with pytest.raises(TeacherError, match=rf"--teacher {latent}: a latent checkpoint; the teacher must be an RGB"):
        load_teacher(latent, torch.device("cpu"))
    with pytest.raises(TeacherError, match=rf"--teacher {tmp_path / 'nope.pth'}: no such file"):
        load_teacher(tmp_path / "nope.pth", torch.device("cpu"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherError, match=rf"--teacher {tmp_path / 'junk.pth'}: "):
        load_teacher(tmp_path / "junk.pth", torch.device("cpu"))
    rgb = _checkpoint(RGBRetinaFace("resnet18", out_channels=16, anchors="six"), tmp_path / "rgb.pth")
    teacher = load_teacher(rgb, torch.device("cpu"))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(TeacherError, match=r"rgb.pth: its anchor layout differs from the student's"):
        Distiller(student, teacher, DistillationWeights(), source=str(rgb))


def test_distiller_holds_only_its_adapters_and_teaches_through_them():
    torch.manual_seed(0)
    student = LatentRetinaFace("resnet18", bridge="codec", out_channels=16)
    teacher = RGBRetinaFace("resnet50", out_channels=16).eval().requires_grad_(False)
    distiller = Distiller(student, teacher, DistillationWeights(feature=2.0, soft=0.5))
    # student C1/C2: resnet18's 64/128 channels -> the teacher's resnet50 256/512, nothing else
    assert {k: tuple(v.shape) for k, v in distiller.state_dict().items()} == {
        "adapters.C1.weight": (256, 64, 1, 1),
        "adapters.C1.bias": (256,),
        "adapters.C2.weight": (512, 128, 1, 1),
        "adapters.C2.bias": (512,),
    }
    assert all(not k.startswith(("adapters", "teacher")) for k in student.state_dict())
    latents = torch.randn(2, 256, 4, 4)
    outputs, maps = student(latents, return_maps=True)
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    image = torch.rand(3, 64, 64) * 255
    targets = [{"boxes": boxes, "teacher_image": image}, {"boxes": boxes, "teacher_image": None}]
    faces = [
        {**t, "landmarks": torch.zeros(1, 5, 2), "has_landmarks": torch.zeros(1, dtype=torch.bool)} for t in targets
    ]
    positives = MultiBoxLoss().targets(faces, student.anchors(latents))[0] > 0
    assert positives[0].equal(positives[1]) and positives[0].any()
    terms = distiller(maps, outputs.logits, positives, targets)
    assert set(terms) == {"distill_feature", "distill_soft"}
    assert 0 < terms["distill_feature"].item() <= 2.0 * 4 and terms["distill_soft"].item() > 0
    (terms["distill_feature"] + terms["distill_soft"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.bridge.parameters())
    assert distiller.adapters["C1"].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    unpaired = distiller(maps, outputs.logits, positives, [{"boxes": boxes, "teacher_image": None}] * 2)
    assert unpaired["distill_feature"].item() == 0.0 and unpaired["distill_soft"].item() == 0.0


def test_wider_face_image_of_a_retina_modify_key(tmp_path):
    for folder, key in (("0--Parade", "0_Parade_Parade_0_1014"), ("61--Street_Battle", "61_Street_Battle_x_61_5")):
        (tmp_path / folder).mkdir()
        write_image(tmp_path / folder / f"{key}.jpg", np.zeros((8, 8, 3), np.uint8))
    assert wider_image_path(tmp_path, "0_Parade_Parade_0_1014") == tmp_path / "0--Parade/0_Parade_Parade_0_1014.jpg"
    assert wider_image_path(tmp_path, "61_Street_Battle_x_61_5").parent.name == "61--Street_Battle"
    assert wider_image_path(tmp_path, "0_Parade_Parade_0_9") is None
    with pytest.raises(FileNotFoundError, match=r"--teacher_images: not a folder: .*nowhere"):
        TeacherImages(tmp_path, "train", (64, 64), images_dir=tmp_path / "nowhere")


def test_recorded_augmentations_give_the_image_the_latents_geometry():
    latent = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # 3 x 4 cells = 48 x 64 px
    target = {
        "boxes": torch.tensor([[20.0, 4.0, 40.0, 30.0]]),
        "landmarks": torch.zeros(1, 5, 2),
        "has_landmarks": torch.tensor([False]),
    }
    flipped, t = hflip(latent, target)
    cropped, t = crop(flipped, t, top=1, left=1, height=2, width=2)
    assert t["ops"] == (("hflip",), ("crop", 16, 16, 32, 32))
    image = torch.rand(3, 48, 64)
    assert torch.equal(replay_ops(image, t["ops"]), image.flip(-1)[:, 16:48, 16:48])
    with pytest.raises(ValueError, match=r"crop 64x32 at \(0,0\) does not fit"):
        replay_ops(image, [("crop", 0, 0, 32, 64)])


def test_paired_dataset_carries_the_image_and_counts_keys_without_one(tmp_path, synthetic_dataset, caplog):
    root = tmp_path / "data"
    shutil.copytree(synthetic_dataset(3, 1, size=64), root)
    dataset = NestedLatentWiderFaceDataset(root, "train")
    images = TeacherImages(root, "train", dataset.image_size)
    missing_key = dataset.keys[1]
    images.path(missing_key).unlink()
    with caplog.at_level("WARNING"):
        paired = WithTeacherImages(dataset, images)
    assert paired.missing == [missing_key]
    assert "teacher images: 1 of 3 train keys have no image" in caplog.text and missing_key in caplog.text
    latent, target = paired[0]
    assert tuple(target["teacher_image"].shape) == (3, 64, 64) and tuple(latent.shape) == (256, 4, 4)
    assert paired[1][1]["teacher_image"] is None
    assert paired.records is dataset.records and len(paired) == 3


def test_reconstruction_loss_is_the_l1_to_the_scaled_image():
    grey, white = torch.full((1, 3, 4, 4), 127.5), torch.full((1, 3, 4, 4), 255.0)
    zeros = torch.zeros(1, 3, 4, 4)
    assert reconstruction_loss(zeros, grey).item() == 0.0
    assert reconstruction_loss(zeros, white).item() == pytest.approx(127.5 / 128, abs=1e-7)
    half = torch.cat([grey[:, :, :2], white[:, :, 2:]], 2)  # half the pixels off by 127.5 / 128
    assert reconstruction_loss(zeros, half).item() == pytest.approx(0.5 * 127.5 / 128, abs=1e-7)
    with pytest.raises(ValueError, match=r"reconstruction \[1, 3, 4, 4\] and image \[1, 3, 8, 8\] differ"):
        reconstruction_loss(zeros, torch.zeros(1, 3, 8, 8))


def test_without_a_teacher_the_distiller_holds_only_the_reconstruction_head_and_rebuilds_at_full_size():
    torch.manual_seed(0)
    student = LatentRetinaFace("resnet18", bridge="codec", out_channels=16)
    distiller = Distiller(student, None, DistillationWeights(reconstruct=0.5))
    assert sorted(distiller.state_dict()) == ["reconstruction.0.bias", "reconstruction.0.weight"]
    latents = torch.randn(2, 256, 4, 4)  # a 64 x 64 image
    outputs, maps = student(latents, return_maps=True)
    image = torch.rand(3, 64, 64) * 255
    targets = [
        {"boxes": torch.zeros(0, 4), "teacher_image": image},
        {"boxes": torch.zeros(0, 4), "teacher_image": None},
    ]
    positives = torch.zeros(outputs.logits.shape[:2], dtype=torch.bool)
    terms = distiller(maps, outputs.logits, positives, targets)
    rebuilt = distiller.reconstruction(maps["C1"][:1])
    assert set(terms) == {"reconstruct"} and rebuilt.shape == (1, 3, 64, 64)
    assert terms["reconstruct"].item() == pytest.approx(0.5 * reconstruction_loss(rebuilt, image[None]).item())
    terms["reconstruct"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.bridge.parameters())
    unpaired = distiller(maps, outputs.logits, positives, [{"boxes": torch.zeros(0, 4), "teacher_image": None}] * 2)
    assert unpaired == {"reconstruct": unpaired["reconstruct"]} and unpaired["reconstruct"].item() == 0.0
