import numpy as np
import pytest
import torch
from torch import nn

from latentface.anchors import AnchorLayout
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.data.labels import FaceRecord
from latentface.model.bridge import build_bridge
from latentface.model.heads import HeadOutputs
from latentface.tools import bench, inspection


def record(key, boxes, has_landmarks=None, ignore=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return FaceRecord(
        key,
        f"e/{key}.jpg",
        boxes,
        np.zeros((n, 5, 2)),
        np.ones(n, bool) if has_landmarks is None else has_landmarks,
        np.zeros(n, bool) if ignore is None else ignore,
    )


def test_label_summary_counts_buckets_aspects_and_landmarks():
    records = {
        "a": record("a", [[0, 0, 5, 10], [0, 0, 20, 20], [0, 0, 16, 32]], has_landmarks=[False, True, True]),
        "b": record("b", []),
        "c": record("c", [[10, 10, 110, 210]], ignore=[True]),
    }
    s = inspection.label_summary(records)
    assert s["images"] == 3
    assert s["faces_per_image"].tolist() == [3, 0, 1]
    assert s["height"].tolist() == [10, 20, 32, 200]
    assert s["aspect"].tolist() == [0.5, 1.0, 0.5, 0.5]
    assert s["bucket"].tolist() == [0, 1, 2, 3]  # 10 tiny, 20 small, 32 medium (32 <= h <= 96), 200 large
    assert s["bucket_counts"] == {"tiny": 1, "small": 1, "medium": 1, "large": 1}
    assert s["landmark_fraction"] == {"tiny": 0.0, "small": 1.0, "medium": 1.0, "large": 1.0}
    assert s["ignore"].tolist() == [False, False, False, True]
    fig = inspection.plot_label_summary(s, "t")
    assert len(fig.axes) == 4
    assert [p.get_height() for p in fig.axes[3].patches] == [0.0, 1.0, 1.0, 1.0]
    assert fig.axes[3].get_ylabel() == "share of faces with 5 landmarks"  # fractions, shown as percentages
    assert fig.axes[3].yaxis.get_major_formatter()(0.5, 0) == "50%"


def test_latent_channel_stats_are_exact():
    a = torch.tensor([[[0.0, 2.0]], [[1.0, 1.0]]])  # [C=2, H=1, W=2]
    b = torch.tensor([[[4.0, 0.0]], [[1.0, 3.0]]])
    stats = inspection.latent_channel_stats({"q": [a, b], "r": [a]})
    q = stats["q"]
    # channel 0 values 0, 2, 4, 0: mean 1.5, variance (2.25+0.25+6.25+2.25)/4 = 2.75, two zeros of four
    np.testing.assert_allclose(q["mean"], [1.5, 1.5])
    np.testing.assert_allclose(q["std"], [np.sqrt(2.75), np.sqrt(0.75)])
    np.testing.assert_allclose(q["zero_fraction"], [0.5, 0.0])
    assert q["count"] == 2 and stats["r"]["count"] == 1
    with pytest.raises(ValueError, match="no latent for rate 's'"):
        inspection.latent_channel_stats(lambda rate: [], ["s"])


def test_luma_chroma_table_splits_channels_and_compares_to_the_reference():
    stats = {
        "lo": {"std": np.array([1.0, 0.0, 2.0, 0.0]), "zero_fraction": np.array([0.5, 1.0, 0.0, 1.0])},
        "hi": {"std": np.array([2.0, 4.0, 2.0, 0.0]), "zero_fraction": np.array([0.0, 0.0, 0.0, 0.5])},
    }
    lo, hi = inspection.luma_chroma_table(stats, luma=2, reference="hi")
    assert lo == {
        "rate": "lo",
        "luma_live_channels": 1,
        "luma_zero_fraction": 0.75,
        "luma_std_ratio": pytest.approx(0.25),  # median of 1/2 and 0/4
        "chroma_live_channels": 1,
        "chroma_zero_fraction": 0.5,
        "chroma_std_ratio": pytest.approx(1.0),
    }  # channel 3 does not vary at the reference
    assert hi["luma_std_ratio"] == 1.0 and hi["chroma_zero_fraction"] == 0.25


def test_dataset_latents_read_each_rate_of_a_split(synthetic_dataset):
    root = synthetic_dataset(0, 3, size=32, rates=(12, 100))
    stats = inspection.latent_channel_stats(
        inspection.dataset_latents(root, "val", max_images=2), ["latent_12.npy", "latent_100.npy"]
    )
    assert stats["latent_12.npy"]["count"] == 2 and len(stats["latent_12.npy"]["std"]) == 256
    # coarser quantisation zeroes more values
    assert stats["latent_12.npy"]["zero_fraction"].mean() > stats["latent_100.npy"]["zero_fraction"].mean()
    assert len(inspection.plot_channel_stats(stats).axes) == 2


def test_dataset_problems_and_available_rates(synthetic_dataset):
    ds = NestedLatentWiderFaceDataset(synthetic_dataset(2, 2, size=32, rates=(25, 75)), "val", "latent_75.npy")
    assert inspection.available_rates(ds) == ["latent_25.npy", "latent_75.npy"]
    assert inspection.dataset_problems(ds.summary()) == {}
    summary = {**ds.summary(), "boxes_dropped": 3, "missing_rate_files": {}, "samples": 2}
    assert inspection.dataset_problems(summary) == {"boxes_dropped": 3}


def test_erf_extent_of_known_maps_and_of_the_bridges():
    point = np.zeros((9, 9))
    point[4, 4] = 1.0
    assert inspection.erf_extent(point, 0.9) == 1
    square = np.zeros((9, 9))
    square[3:6, 3:6] = 1 / 9
    assert inspection.erf_extent(square, 0.5) == 3 and inspection.erf_extent(square, 0.99) == 3
    ramp = np.zeros((9, 9))
    ramp[4, 4], ramp[4, 5], ramp[4, 3] = 0.6, 0.2, 0.2
    assert inspection.erf_extent(ramp, 0.5) == 1 and inspection.erf_extent(ramp, 0.9) == 3
    torch.manual_seed(0)
    erfs = {
        name: bench.effective_receptive_field(build_bridge(name, 256, 16), cells=7)
        for name in ("pixelshuffle", "context")
    }
    assert inspection.erf_extent(erfs["pixelshuffle"], 0.999) == 1  # one cell per output pixel
    assert inspection.erf_extent(erfs["context"], 0.999) == 3  # a 3x3 conv over cells
    assert len(inspection.plot_erfs(erfs).axes) == 2


def test_bridge_costs_rows_match_the_bench_counters():
    rows = inspection.bridge_costs(["pixelshuffle"], backbone="resnet18", image=64, repeats=1)
    stem, shuffle = rows
    assert stem["input"] == [3, 64, 64] and stem["output"] == [64, 16, 16]
    assert shuffle["input"] == [256, 4, 4] and shuffle["output"] == [64, 16, 16]
    # 1x1 conv 256 -> 64*16 at 4x4 cells (no bias), BN + ReLU counted as free
    assert shuffle["macs"] == 256 * 64 * 16 * 4 * 4
    assert shuffle["params"] == 256 * 64 * 16 + 2 * 64
    assert all(r["cpu_ms"] > 0 for r in rows)


class ToyDetector(nn.Module):
    """Two levels on a 32x32 image: P3 (4x4 cells of 8 px) scoring 0.8, P4 (2x2 of 16 px) scoring 0.3,
    except P4's top-left cell, which scores 0.9."""

    anchor_layout = AnchorLayout(levels=(3, 4), sizes=((8.0,), (16.0,)))

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def image_size(self, x):
        return x.shape[-2] * 16, x.shape[-1] * 16

    def anchors(self, x):
        return self.anchor_layout.generate(*self.image_size(x))

    def forward(self, x):
        p = torch.cat([torch.full((16,), 0.8), torch.tensor([0.9, 0.3, 0.3, 0.3])])
        logits = torch.stack([torch.zeros(20), torch.log(p / (1 - p))], -1)  # softmax face score = p
        b = len(x)
        return HeadOutputs(logits.expand(b, -1, -1), torch.zeros(b, 20, 4), torch.zeros(b, 20, 10))


def test_level_response_finds_the_strongest_level_inside_each_face():
    target = {
        "boxes": torch.tensor(
            [
                [0.0, 0.0, 20.0, 20.0],  # P3 centres 4, 12, 20 inside; P4 centre (8, 8): 0.9
                [18.0, 18.0, 30.0, 30.0],  # P3 centres (20|28, 20|28); P4 (24, 24): 0.3
                [1.0, 1.0, 6.0, 6.0],  # only P3 centre (4, 4): P4 has none inside
                [0.0, 0.0, 31.0, 31.0],
            ]
        ),  # ignored
        "landmarks": torch.zeros(4, 5, 2),
        "has_landmarks": torch.ones(4, dtype=torch.bool),
        "key": "k",
    }
    ds = [(torch.zeros(1, 2, 2), target)]

    class Data(list):
        records = {"k": record("k", target["boxes"].numpy(), ignore=[False, False, False, True])}

    r = inspection.level_response(ToyDetector(), Data(ds))
    assert r["levels"] == [3, 4]
    np.testing.assert_allclose(r["scores"], [[0.8, 0.9], [0.8, 0.3], [0.8, np.nan]], rtol=1e-6)
    assert r["bucket"].tolist() == [1, 0, 0]  # heights 20, 12, 5
    assert r["fires"].tolist() == [[2, 0], [0, 1], [0, 0], [0, 0]]
    np.testing.assert_allclose(r["mean_score"][:2], [[0.8, 0.3], [0.8, 0.9]], rtol=1e-6)
    assert np.isnan(r["mean_score"][2:]).all()
    assert len(inspection.plot_level_response(r).axes) == 2


def test_busiest_image_counts_faces_above_a_height():
    records = [record("a", [[0, 0, 10, 10]] * 5), record("b", [[0, 0, 30, 30]] * 2), record("c", [])]
    assert inspection.busiest_image(records, min_height=24) == 1
    assert inspection.busiest_image(records, min_height=5) == 0


def test_feature_energy_is_the_channel_norm():
    maps = {"P3": torch.tensor([[[[3.0, 0.0]], [[4.0, 1.0]]]]), "P4": torch.ones(1, 4, 1, 1)}
    energy = inspection.feature_energy(maps)
    np.testing.assert_allclose(energy["P3"], [[5.0, 1.0]])
    np.testing.assert_allclose(energy["P4"], [[2.0]])


def test_plot_latent_views_draws_pictures_and_channels():
    latent = np.random.default_rng(0).normal(size=(256, 2, 3)).astype(np.float32)
    picture = np.zeros((32, 48, 3), np.uint8)
    fig = inspection.plot_latent_views(latent, {"decoded": picture}, np.array([[4, 4, 20, 20]]))
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.images]
    assert len(shown) == 1 + 1 + 4  # the picture, the PCA view, four channels
    assert shown[0].images[0].get_extent() == [0, 48, 32, 0]  # in input pixels (3 x 2 cells of 16)
    assert [p.get_bbox().bounds for p in shown[0].patches] == [(4, 4, 16, 16)]  # the true face
    widths = {round(ax.get_position().width, 3) for ax in shown}
    assert len(fig.axes) == 2 * 5 and len(widths) == 1  # no colour bars: one panel size in both rows
    assert shown[2].get_title() == f"channel 0 (luma), ±{np.abs(latent[0]).max():.3g}"


def test_channel_image_colours_one_channel_symmetrically():
    latent = np.zeros((3, 1, 2), np.float32)
    latent[1] = [[-2.0, 2.0]]
    rgb = inspection.channel_image(latent, 1)
    assert rgb.shape == (16, 32, 3) and rgb.dtype == np.uint8
    left, right = rgb[8, 4].astype(int), rgb[8, 20].astype(int)
    assert left[2] > left[0] and right[0] > right[2]  # RdBu_r: negative blue, positive red
    assert (rgb[:, :16] == rgb[0, 0]).all()  # one flat block per cell
    assert inspection.channel_image(latent, 0, size=(4, 8)).shape == (4, 8, 3)


def test_detection_grid_and_feature_map_panels():
    image = np.zeros((32, 32, 3), np.uint8)
    det = {
        "boxes": np.array([[2, 2, 20, 20]], np.float32),
        "scores": np.array([0.9], np.float32),
        "landmarks": np.full((1, 5, 2), 10, np.float32),
    }
    fig = inspection.plot_detections(
        [{"image": image, "detections": det, "truth": np.zeros((0, 4)), "title": t} for t in "abcde"], columns=3
    )
    titled = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in titled] == list("abcde") and len(fig.axes) == 6
    assert titled[0].images[0].get_array()[2, 2:20].any()  # the detection is drawn
    maps = {"P3": np.ones((4, 4)), "P4": np.ones((2, 2))}
    fig = inspection.plot_feature_maps(maps, np.array([[0, 0, 8, 8], [8, 8, 30, 30]]), (32, 32))
    assert [len(ax.patches) for ax in fig.axes] == [2, 2]
    assert fig.axes[1].get_title() == "P4: 2x2 (stride 16)"
