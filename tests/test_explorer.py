"""The feature-map explorer: every map's shape at a known input size, the views' shapes and ranges,
cell read-outs equal to the tensors' values, one model pass per (image, rate) over many view changes."""

import shutil

import numpy as np
import pytest
import torch

from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.inference.detector import Detector
from latentface.model import LatentRetinaFace
from latentface.tools.explorer import FeatureExplorer, run_with_maps
from latentface.tools.explorer import logic as explorer_logic
from latentface.tools.explorer import widgets as explorer_widgets

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 128  # input image side: an 8x8 latent


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LatentRetinaFace(backbone="resnet18", bridge="pixelshuffle", out_channels=16).eval()


@pytest.fixture(scope="module")
def val_sets(synthetic_dataset):
    root = synthetic_dataset(1, 3, size=SIZE, rates=(12, 75))
    return {rate: NestedLatentWiderFaceDataset(root, "val", rate) for rate in ("latent_75.npy", "latent_12.npy")}


@pytest.fixture()
def counted(model):
    seen = {"images": 0}
    handle = model.register_forward_pre_hook(lambda m, args: seen.__setitem__("images", seen["images"] + len(args[0])))
    yield model, seen
    handle.remove()


@pytest.fixture()
def explorer(model, val_sets):
    return FeatureExplorer(Detector(model, device="cpu", conf=0.5), val_sets)


def test_every_map_has_its_shape_at_a_known_input_size(explorer):
    # 128x128 pixels: latent 8x8 (stride 16), bridge 32x32 (4), C2 16 (8), C3 8 (16), C4 4 (32), P2..P6
    expected = {
        "latent": (256, 8, 8, 16),
        "latent luma 0-159": (160, 8, 8, 16),
        "latent chroma 160-255": (96, 8, 8, 16),
        "bridge": (64, 32, 32, 4),
        "C2": (128, 16, 16, 8),
        "C3": (256, 8, 8, 16),
        "C4": (512, 4, 4, 32),
        **{f"P{k}": (16, SIZE >> k, SIZE >> k, 1 << k) for k in range(2, 7)},
        **{f"face score P{k}": (3, SIZE >> k, SIZE >> k, 1 << k) for k in range(2, 7)},  # 3 anchors a cell
    }
    assert explorer.map_names() == list(expected)
    for name, (c, h, w, stride) in expected.items():
        fmap = explorer.feature_map(name)
        assert (fmap.channels, *fmap.grid, fmap.stride) == (c, h, w, stride), name
        assert fmap.values.dtype == np.float32
    assert explorer.feature_map("latent chroma 160-255").first_channel == 160
    scores = explorer.feature_map("face score P3").values
    assert scores.min() >= 0 and scores.max() <= 1


def test_maps_are_the_models_own_tensors(model, explorer, val_sets):
    latent = val_sets["latent_75.npy"][0][0]
    x = latent[None]
    with torch.no_grad():
        maps = model.extract(x)
        logits = model(x).logits.float().softmax(-1)[..., 1]
    np.testing.assert_array_equal(explorer.feature_map("latent").values, latent.numpy())
    np.testing.assert_array_equal(explorer.feature_map("latent chroma 160-255").values, latent.numpy()[160:])
    for name, ref in (("bridge", maps["C1"]), ("C4", maps["C4"]), ("P2", maps["P2"]), ("P6", maps["P6"])):
        np.testing.assert_allclose(explorer.feature_map(name).values, ref[0].numpy(), rtol=0, atol=1e-6)
    # the face-score map of P3, anchor 1 at cell (row 2, column 5), is the heads' flattened score there
    a = model.anchor_layout.per_location  # P2's cells come first in the flattened order, a anchors each
    index = a * (SIZE // 4) ** 2 + (2 * (SIZE // 8) + 5) * a + 1
    assert explorer.feature_map("face score P3").values[1, 2, 5] == pytest.approx(float(logits[0, index]), abs=1e-6)
    # the detections are the Detector's at its operating point, from the same pass
    det = Detector(model, device="cpu", conf=0.5)(x)[0]
    np.testing.assert_allclose(explorer.detections()["boxes"], det["boxes"], atol=1e-4)


def test_hooks_are_removed_after_a_pass(model, val_sets):
    before = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
    run_with_maps(model, val_sets["latent_75.npy"][0][0][None])
    assert [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()] == before


def test_cell_read_out_is_the_tensors_values(explorer):
    explorer.set(map="C2", channel=7, cell=(3, 11))
    cell = explorer.read_cell()
    values = explorer.feature_map("C2").values
    np.testing.assert_array_equal(cell["values"], values[:, 3, 11])
    assert cell["value"] == float(values[7, 3, 11])
    assert (cell["row"], cell["column"], cell["stride"], cell["box"]) == (3, 11, 8, (88, 24, 96, 32))
    assert cell["channels"].tolist() == list(range(128))
    explorer.set(map="latent chroma 160-255", channel=5, cell=(1, 2))
    cell = explorer.read_cell()
    latent = explorer.feature_map("latent").values
    assert cell["channel"] == 165 and cell["value"] == float(latent[165, 1, 2])
    np.testing.assert_array_equal(cell["values"], latent[160:, 1, 2])
    assert cell["channels"][0] == 160 and len(cell["channels"]) == 96
    # a pixel falls in the cell of its map's stride: pixel (100, 40) is P4 (stride 16) cell (2, 6)
    assert explorer.set(map="P4").cell_at(100, 40) == (2, 6)
    assert explorer.set(map="P2").cell_at(1000, -5) == (0, 31)  # clipped to the grid


def test_a_new_map_keeps_channel_and_cell_where_they_exist(explorer):
    explorer.set(map="C4", channel=300, cell=(3, 3))
    explorer.set(map="face score P2")  # 3 channels (anchors), a 32x32 grid
    assert (explorer.channel, explorer.cell) == (2, (3, 3))
    explorer.set(map="P6")  # a 2x2 grid
    assert explorer.cell == (1, 1)
    with pytest.raises(ValueError, match=r"channel must be in \[0, 15\] for P6"):
        explorer.set(channel=16)
    with pytest.raises(ValueError, match="unknown map 'P7'"):
        explorer.set(map="P7")
    with pytest.raises(ValueError, match="cell must be within the 2x2 grid of P6"):
        explorer.set(cell=(2, 0))
    assert explorer.map == "P6"  # nothing half-applied


def test_views_have_the_image_size_and_uint8_range(explorer):
    for view in ("channel", "pca"):
        for name in ("latent", "bridge", "C4", "P6", "face score P5"):
            picture = explorer.set(map=name, view=view).view_image()
            assert picture.shape == (SIZE, SIZE, 3) and picture.dtype == np.uint8, (view, name)
    pca = explorer.set(map="C3", view="pca", cell=None).view_image()
    assert pca.min() == 0 and pca.max() == 255  # percentile stretch: the full range
    explorer.set(map="latent", view="channel", channel=0)
    values = explorer.feature_map().values[0]
    picture = explorer_logic.colour_channel(values, (SIZE, SIZE))
    # nearest-neighbour: each latent cell is one 16x16 block; the extreme cells take the colour map's ends
    row, col = np.unravel_index(values.argmax(), values.shape)
    block = picture[16 * row : 16 * row + 16, 16 * col : 16 * col + 16]
    assert (block == block[0, 0]).all()
    assert block[0, 0].tolist() == [round(255 * v) for v in explorer_logic.colormaps["viridis"](1.0)[:3]]


def test_strongest_channels_grid(explorer):
    explorer.set(map="C2", view="strongest", grid_size=9)
    layout = explorer.grid_layout()
    values = explorer.feature_map().values
    rms = np.sqrt((values.astype(np.float64) ** 2).mean(axis=(1, 2)))
    assert layout["channels"].tolist() == np.argsort(-rms, kind="stable")[:9].tolist()
    assert (layout["columns"], layout["rows"]) == (3, 3)
    assert layout["tile"] == (32, 32)  # 16x16 cells, 2 pixels each: 3 tiles fit in 128 px
    picture = explorer.view_image()
    assert picture.shape == (3 * 34 - 2, 3 * 34 - 2, 3)
    # a click on tile 5 (row 1, column 2) at its pixel (10, 20) is that channel's cell (10, 5)
    assert explorer.grid_hit(2 * 34 + 10, 34 + 20) == (int(layout["channels"][5]), (10, 5))
    assert explorer.grid_hit(33, 5) is None  # the gap between tiles


def test_decoded_view_with_a_codec_and_none_without(explorer, synthetic_dataset, model, tmp_path):
    decoded = explorer.decoded_image()
    assert decoded.shape == (SIZE, SIZE, 3) and explorer.decoded_what == "decoded (dct codec)"
    root = tmp_path / "retina-like"  # no codec.json and no images, as a retina-modify folder
    shutil.copytree(synthetic_dataset(1, 3, size=SIZE, rates=(12, 75)), root)
    (root / "codec.json").unlink()
    shutil.rmtree(root / "val" / "images")
    bare = FeatureExplorer(Detector(model, device="cpu"), NestedLatentWiderFaceDataset(root, "val", "latent_75.npy"))
    assert bare.decoded_image() is None and bare.decoded_what is None
    assert bare.set(view="pca").view_image().shape == (SIZE, SIZE, 3)


def test_the_model_runs_once_per_image_and_rate(counted, val_sets):
    model, seen = counted
    explorer = FeatureExplorer(Detector(model, device="cpu"), val_sets)
    for image in (0, 1, 0, 1):
        for rate in ("latent_75.npy", "latent_12.npy"):
            for name in ("latent", "bridge", "C3", "P4", "face score P2"):
                for view in ("channel", "strongest", "pca"):
                    explorer.set(image=image, rate=rate, map=name, view=view, channel=1, cell=(0, 1))
                    explorer.view_image()
                    explorer.decoded_image()
                    explorer.read_cell()
    assert seen["images"] == 4 and explorer.model_runs == 4  # 2 images x 2 rates, over 240 view changes
    assert set(explorer.compute_seconds) == {(r, i) for r in val_sets for i in (0, 1)}


def test_widgets_follow_the_controls_and_clicks(counted, val_sets):
    model, seen = counted
    explorer = FeatureExplorer(Detector(model, device="cpu"), val_sets)
    box = explorer.widgets()
    assert seen["images"] == 1 and "(1 model run so far)" in box.title.value
    c = box.controls
    first = box.view_image.value
    assert "click the map" in box.readout.value and box.decoded_image.layout.display is None
    c["map"].value = "P3"
    assert explorer.map == "P3" and c["channel"].max == 15 and c["row"].max == 15
    assert box.view_image.value != first and "P3, 16 channels, 16x16, stride 8" in box.title.value
    c["channel"].value = 4
    assert explorer.channel == 4
    box.click(100, 40)  # P3 stride 8: row 5, column 12
    assert explorer.cell == (5, 12) and (c["row"].value, c["column"].value) == (5, 12)
    value = explorer.feature_map("P3").values[4, 5, 12]
    assert f"channel 4 = <b>{value:.4g}</b>" in box.readout.value and box.profile_image.value
    c["row"].value = 6
    assert explorer.cell == (6, 12)
    c["view"].value = "strongest"
    layout = explorer.grid_layout()
    box.click(1, 1)  # the first tile (2 pixels a cell): the strongest channel, its cell (0, 0)
    assert (explorer.view, explorer.channel, explorer.cell) == ("channel", int(layout["channels"][0]), (0, 0))
    assert c["view"].value == "channel" and c["channel"].value == explorer.channel
    c["map"].value = "latent chroma 160-255"
    assert c["channel"].description == "ch. +160"
    c["image"].value = 2
    c["rate"].value = "latent_12.npy"
    assert seen["images"] == 3 and explorer.model_runs == 3
    assert "3 model runs so far" in box.title.value


def test_saved_notebooks_show_the_explorers_view(explorer):
    box = explorer.set(map="P3", view="pca").widgets()
    bundle = box._repr_mimebundle_()
    assert bundle["image/jpeg"][:2] == b"\xff\xd8"
    assert bundle["text/plain"] == f"feature-map explorer: {explorer.title()} (live controls need a running kernel)"
    picture = explorer_widgets.static_picture(explorer)
    assert picture.shape == (SIZE, 2 * SIZE + 8, 3)  # the view, a gap, the decoded image


def test_without_a_detector_the_latent_alone(val_sets):
    explorer = FeatureExplorer(None, val_sets["latent_75.npy"])
    assert explorer.map_names() == ["latent", "latent luma 0-159", "latent chroma 160-255"]
    assert explorer.detections()["boxes"].shape == (0, 4) and explorer.model_runs == 0
    explorer.set(map="latent luma 0-159", channel=3, cell=(7, 7))
    assert explorer.read_cell()["value"] == float(val_sets["latent_75.npy"][0][0][3, 7, 7])
    assert explorer.view_image().shape == (SIZE, SIZE, 3)
    assert explorer.widgets().controls["map"].options == tuple(explorer.map_names())
