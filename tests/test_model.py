import pytest
import torch

from latentface.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from latentface.model import BRIDGES, LatentRetinaFace, RGBRetinaFace, build_model


def shapes(maps):
    return {k: tuple(v.shape[1:]) for k, v in maps.items()}


@torch.no_grad()
def test_resnet50_latent_maps_have_the_documented_shapes():
    model = LatentRetinaFace(backbone="resnet50", bridge="pixelshuffle").eval()
    x = torch.randn(1, 256, 40, 40)
    assert shapes(model.extract(x)) == {
        "C1": (256, 160, 160), "C2": (512, 80, 80), "C3": (1024, 40, 40), "C4": (2048, 20, 20),
        "P2": (256, 160, 160), "P3": (256, 80, 80), "P4": (256, 40, 40), "P5": (256, 20, 20), "P6": (256, 10, 10),
    }
    logits, boxes, landmarks = model(x)
    assert logits.shape == (1, 102300, 2) and boxes.shape == (1, 102300, 4) and landmarks.shape == (1, 102300, 10)


@torch.no_grad()
@pytest.mark.parametrize("bridge", sorted(BRIDGES))
def test_resnet18_every_bridge_any_latent_size_and_channels(bridge):
    model = LatentRetinaFace(backbone="resnet18", bridge=bridge, out_channels=32, in_channels=12).eval()
    x = torch.randn(2, 12, 25, 30)  # a 400x480 image
    maps = shapes(model.extract(x))
    assert maps["C1"] == (64, 100, 120) and maps["C2"] == (128, 50, 60)
    assert maps["C3"] == (256, 25, 30) and maps["C4"] == (512, 13, 15)
    assert maps["P2"] == (32, 100, 120) and maps["P6"] == (32, 7, 8)
    logits, _, _ = model(x)
    assert logits.shape[1] == model.anchors(x).shape[0] == model.anchor_layout.count(400, 480)


def test_wrong_input_channels_is_a_clear_error():
    model = LatentRetinaFace(backbone="resnet18", out_channels=16)
    with pytest.raises(ValueError, match=r"expects input \[B, 256, H, W\], got \[1, 3, 40, 40\]"):
        model(torch.randn(1, 3, 40, 40))


@torch.no_grad()
def test_rgb_baseline_shares_neck_and_heads_and_matches_latent_outputs():
    rgb = RGBRetinaFace(backbone="resnet18", out_channels=16).eval()
    lat = LatentRetinaFace(backbone="resnet18", out_channels=16).eval()
    assert type(rgb.fpn) is type(lat.fpn) and type(rgb.heads) is type(lat.heads)
    o_rgb = rgb(torch.rand(1, 3, 128, 128) * 255)
    o_lat = lat(torch.randn(1, 256, 8, 8))
    assert o_rgb.logits.shape == o_lat.logits.shape == (1, lat.anchor_layout.count(128, 128), 2)
    assert rgb.extract(torch.zeros(1, 3, 128, 128))["C1"].shape == (1, 64, 32, 32)


def test_presets_and_anchor_layouts():
    seed = LatentRetinaFace.preset("seed", backbone="resnet18", out_channels=16)
    assert seed.config["bridge"] == "bilinear" and seed.config["backbone"] == "resnet18"
    assert LatentRetinaFace.PRESETS["seed"] == dict(backbone="resnet50", bridge="bilinear", out_channels=256)
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        LatentRetinaFace.preset("nope")
    three = LatentRetinaFace(backbone="resnet18", out_channels=16, anchors="three_level").eval()
    with torch.no_grad():
        maps = three.extract(torch.randn(1, 256, 40, 40))
    assert [k for k in maps if k.startswith("P")] == ["P3", "P4", "P5"]
    assert three(torch.randn(1, 256, 40, 40)).logits.shape[1] == (80 * 80 + 40 * 40 + 20 * 20) * 2


def test_normalisation_is_part_of_the_model_and_saved():
    model = LatentRetinaFace(backbone="resnet18", out_channels=16, in_channels=4)
    model.set_normalization([1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 2.0, 2.0])
    state = model.state_dict()
    assert state["input_mean"].tolist() == [1.0, 2.0, 3.0, 4.0]
    x = torch.ones(1, 4, 1, 1) * 3
    assert model.normalize(x).flatten().tolist() == [4.0, 2.0, 0.0, -0.5]
    with pytest.raises(ValueError, match="positive"):
        model.set_normalization([0] * 4, [1, 0, 1, 1])


def test_freeze_backbone_stops_gradients_and_batchnorm_statistics():
    model = LatentRetinaFace(backbone="resnet18", out_channels=16)
    model.freeze_backbone()
    model.train()
    assert not any(p.requires_grad for p in model.layer2.parameters())
    assert all(p.requires_grad for p in model.bridge.parameters())
    bn = model.layer3[0].bn1
    before = bn.running_mean.clone()
    model(torch.randn(2, 256, 8, 8)).logits.sum().backward()
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert model.layer2[0].conv1.weight.grad is None
    assert all(p.grad is not None for p in model.bridge.parameters())


def test_imagenet_weights_from_a_user_file(tmp_path):
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = LatentRetinaFace(backbone="resnet18", out_channels=16, pretrained=str(path))
    assert torch.equal(model.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="bad.pth: does not match torchvision resnet18"):
        LatentRetinaFace(backbone="resnet18", pretrained=str(tmp_path / "bad.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        LatentRetinaFace(backbone="resnet18", pretrained=str(tmp_path / "missing.pth"))


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    model = LatentRetinaFace(backbone="resnet18", bridge="pixelshuffle", out_channels=16, in_channels=8).eval()
    path = save_checkpoint({"model": model.state_dict(), "config": model.config}, tmp_path / "w.pth")
    assert [p.name for p in tmp_path.iterdir()] == ["w.pth"]  # no temporary left behind
    loaded, payload = model_from_checkpoint(path)
    loaded.eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
    assert build_model(payload["config"]).config == model.config


def test_bad_checkpoints_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pth: not a readable latentface checkpoint"):
        load_checkpoint(corrupt)
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nothing.pth"):
        load_checkpoint(tmp_path / "nothing.pth")
    other = LatentRetinaFace(backbone="resnet18", out_channels=16)
    wrong = tmp_path / "wrong.pth"
    config = dict(other.config, out_channels=32)
    save_checkpoint({"model": other.state_dict(), "config": config}, wrong)
    with pytest.raises(CheckpointError, match="wrong.pth: weights do not fit the model"):
        model_from_checkpoint(wrong)


def test_checkpoints_get_ordinary_file_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = save_checkpoint({"model": {}, "config": {}}, tmp_path / "p.pth")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
