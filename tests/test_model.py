import pytest
import torch

from latentface import anchors
from latentface.anchors import AnchorLayout, get_layout
from latentface.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from latentface.model import BRIDGES, LatentRetinaFace, RGBRetinaFace, build_model, model_config, model_from_checkpoint
from latentface.train import TrainConfig
from latentface.training.config import resolved


def shapes(maps):
    return {k: tuple(v.shape[1:]) for k, v in maps.items()}


@torch.no_grad()
def test_resnet50_latent_maps_have_the_documented_shapes():
    model = LatentRetinaFace(backbone="resnet50", bridge="pixelshuffle").eval()
    x = torch.randn(1, 256, 40, 40)
    assert shapes(model.extract(x)) == {
        "C1": (256, 160, 160),
        "C2": (512, 80, 80),
        "C3": (1024, 40, 40),
        "C4": (2048, 20, 20),
        "P2": (256, 160, 160),
        "P3": (256, 80, 80),
        "P4": (256, 40, 40),
        "P5": (256, 20, 20),
        "P6": (256, 10, 10),
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
    # the seed design with its training code's six anchors per location (base 8, ratios 0.5 and 1)
    assert LatentRetinaFace.PRESETS["seed"] == dict(
        backbone="resnet50", bridge="bilinear", out_channels=256, anchors="six"
    )
    assert seed.anchor_layout == get_layout("six") and seed.anchor_layout.per_location == 6
    assert model_config(preset="seed")["anchors"] == get_layout("six").to_dict()
    assert model_config(preset="seed", anchors="default")["anchors"] == get_layout("default").to_dict()  # a choice wins
    default_layout = get_layout(LatentRetinaFace.PRESETS["default"]["anchors"]).to_dict()
    assert model_config("rgb")["anchors"] == default_layout  # the baseline is compared with the default preset
    assert (
        resolved(TrainConfig(preset="seed")).anchors == "six"
        and resolved(TrainConfig(input="rgb")).anchors == (LatentRetinaFace.PRESETS["default"]["anchors"])
    )
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


def test_a_checkpoint_decodes_with_its_own_anchor_layout_whatever_the_presets_become(tmp_path, monkeypatch):
    model = LatentRetinaFace(
        backbone="resnet18", bridge="pixelshuffle", out_channels=16, in_channels=8, anchors="six"
    ).eval()
    path = save_checkpoint({"model": model.state_dict(), "config": model.config}, tmp_path / "w.pth")
    payload = load_checkpoint(path)
    assert payload["format_version"] == FORMAT_VERSION == 2
    assert payload["config"]["anchors"] == {
        "levels": [2, 3, 4, 5, 6],
        "strides": [4, 8, 16, 32, 64],
        "sizes": [list(s) for s in anchors.PRESETS["six"].sizes],
        "ratios": [0.5, 1.0],
        "variances": [0.1, 0.2],
    }
    x = torch.randn(1, 8, 6, 6)
    before = model.anchors(x)
    # The preset changes (same anchor count per location, other sizes): the checkpoint must not notice.
    changed = AnchorLayout(
        levels=(2, 3, 4, 5, 6), sizes=tuple((s * 3, s * 4, s * 5) for s in (8, 16, 32, 64, 128)), ratios=(0.5, 1.0)
    )
    monkeypatch.setitem(anchors.PRESETS, "six", changed)
    assert LatentRetinaFace(backbone="resnet18", out_channels=16, in_channels=8, anchors="six").anchor_layout == changed
    loaded, _ = model_from_checkpoint(path)
    assert loaded.anchor_layout == model.anchor_layout != changed
    assert torch.equal(loaded.anchors(x), before)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x).boxes, model(x).boxes)


def test_format_1_checkpoints_still_load_with_anchors_by_preset_name(tmp_path):
    model = LatentRetinaFace(backbone="resnet18", out_channels=16, in_channels=8, anchors="three_level").eval()
    old_config = {**model.config, "anchors": "three_level"}  # format 1: the name, no format_version
    path = tmp_path / "old.pth"
    torch.save({"model": model.state_dict(), "config": old_config, "epoch": 3}, path)
    payload = load_checkpoint(path)
    assert payload["format_version"] == FORMAT_VERSION and payload["epoch"] == 3
    assert payload["config"] == model.config and payload["config"]["anchors"] == get_layout("three_level").to_dict()
    loaded, _ = model_from_checkpoint(path)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x).logits, model(x).logits)
    no_anchors = {k: v for k, v in old_config.items() if k != "anchors"}  # the oldest configs: the default layout
    torch.save({"model": {}, "config": no_anchors}, tmp_path / "oldest.pth")
    assert load_checkpoint(tmp_path / "oldest.pth")["config"]["anchors"] == get_layout("default").to_dict()
    torch.save({"model": {}, "config": {**old_config, "anchors": "nine"}}, tmp_path / "unknown.pth")
    with pytest.raises(CheckpointError, match=r"unknown.pth: its anchor layout 'nine' is unknown"):
        load_checkpoint(tmp_path / "unknown.pth")
    other_variances = {**model.config, "anchors": {**model.config["anchors"], "variances": [0.2, 0.4]}}
    torch.save({"model": model.state_dict(), "config": other_variances, "format_version": 2}, tmp_path / "var.pth")
    with pytest.raises(CheckpointError, match=r"var.pth: its model config .*\(anchor variances \[0.2, 0.4\]"):
        model_from_checkpoint(tmp_path / "var.pth")
    torch.save({"model": {}, "config": model.config, "format_version": 3}, tmp_path / "newer.pth")
    with pytest.raises(CheckpointError, match=r"newer.pth: checkpoint format 3; .* reads formats 1 to 2"):
        load_checkpoint(tmp_path / "newer.pth")


def test_model_config_is_the_preset_with_explicit_choices_over_it():
    fast = model_config(preset="fast", out_channels=16, in_channels=8)
    assert fast == dict(
        kind="latent",
        backbone="resnet18",
        bridge="codec",
        out_channels=16,
        in_channels=8,
        anchors=get_layout("default").to_dict(),
        blocks=1,
        light_p2=True,
    )
    assert build_model(fast).config == fast
    rgb = model_config("rgb", backbone="resnet18", anchors="six")
    assert rgb == dict(kind="rgb", backbone="resnet18", out_channels=256, anchors=get_layout("six").to_dict())
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        model_config(preset="nope")
    with pytest.raises(ValueError, match="unknown kind 'video'"):
        build_model({"kind": "video"})


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
