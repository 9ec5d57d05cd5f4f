"""The latent dataset over tiny hand-made layouts: mismatches, bad latents, targets, augmentations, stats."""

import json
import logging
import re

import numpy as np
import pytest
import torch

from latentface.cli import main
from latentface.codec import dct
from latentface.data.augment import Compose, RandomHorizontalFlip, RandomLatentCrop, crop, hflip
from latentface.data.dataset import (
    BadLatentError,
    NestedLatentWiderFaceDataset,
    collate_faces,
    load_latent,
    measure_loading_throughput,
    read_latent_header,
    transport_dtype,
)
from latentface.data.labels import FaceRecord, write_retinaface, write_wider
from latentface.data.layout import image_path, latent_path, rate_file, resolve_latent_types
from latentface.data.stats import compute_latent_stats, default_stats_path, load_stats, save_stats
from latentface.model import LatentRetinaFace

C, H, W = 8, 3, 4  # latent shape; the image is 64 x 48 pixels


def face_record(key, boxes, landmarks=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    lms = np.full((n, 5, 2), -1, np.float32) if landmarks is None else np.asarray(landmarks, np.float32)
    has = ~np.all(lms == -1, axis=(1, 2))
    return FaceRecord(key, f"0--Event/{key}.jpg", boxes, lms, has, np.zeros(n, bool))


def save(root, key, name, array):
    path = root / "train" / "latent" / key / name
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path


LMS = np.array([[[12, 12], [18, 12], [15, 15], [13, 18], [17, 18]]], np.float32)


@pytest.fixture
def layout(tmp_path):
    """Good files in every accepted form plus every kind of mismatch and bad latent."""
    rng = np.random.default_rng(0)
    data = {}
    records = [
        face_record("k_f16", [[10, 10, 20, 20], [30, 5, 40, 30]], np.concatenate([LMS, np.full((1, 5, 2), -1)])),
        face_record("k_f32", [[-5, 10, 10, 20], [20, 20, 20, 30], [70, 0, 80, 10]]),  # clipped, zero-width, outside
        face_record("k_f64", []),  # an image with no faces
        face_record("k_nan", [[1, 1, 5, 5]]),
        face_record("k_shape", [[1, 1, 5, 5]]),
        face_record("k_norate", [[1, 1, 5, 5]]),
        face_record("k_nofolder", [[1, 1, 5, 5]]),
        face_record("k_garbage", [[1, 1, 5, 5]]),
    ]
    data["k_f16"] = rng.normal(size=(1, C, H, W)).astype(np.float16)
    save(tmp_path, "k_f16", "latent_75.npy", data["k_f16"])
    save(tmp_path, "k_f16", "latent_12.npy", np.zeros((1, C, H, W), np.float16) + 7)
    data["k_f32"] = rng.normal(size=(C, H, W)).astype(np.float32)
    save(tmp_path, "k_f32", "latent_75.npy", data["k_f32"])
    data["k_f64"] = rng.normal(size=(1, C, H, W))
    save(tmp_path, "k_f64", "latent_75.npy", data["k_f64"])
    nan = rng.normal(size=(1, C, H, W)).astype(np.float16)
    nan[0, 3, 1, 2] = np.nan
    data["nan_path"] = save(tmp_path, "k_nan", "latent_75.npy", nan)
    data["shape_path"] = save(tmp_path, "k_shape", "latent_75.npy", np.zeros((1, C, H + 1, W), np.float16))
    save(tmp_path, "k_norate", "latent_12.npy", np.zeros((1, C, H, W), np.float16))
    save(tmp_path, "k_unlabelled", "latent_75.npy", np.zeros((1, C, H, W), np.float16))
    garbage = tmp_path / "train" / "latent" / "k_garbage" / "latent_75.npy"
    garbage.parent.mkdir(parents=True)
    garbage.write_text("not a numpy file")
    data["garbage_path"] = garbage
    write_wider(records, tmp_path / "train" / "labels.txt")
    write_retinaface(records, tmp_path / "train" / "labels_landmarks.txt")
    data["root"] = tmp_path
    return data


def index(ds, key):
    return ds.keys.index(key)


def test_summary_counts_and_single_report(layout, caplog):
    with caplog.at_level(logging.WARNING, logger="latentface.data"):
        ds = NestedLatentWiderFaceDataset(layout["root"], "train")
    s = ds.summary()
    assert ds.keys == ["k_f16", "k_f32", "k_f64", "k_nan", "k_shape", "k_garbage"]
    assert ds.expected_shape == (C, H, W) and ds.image_size == (64, 48)
    assert s["labelled_images"] == 8 and s["latent_folders"] == 8 and s["samples"] == 6
    assert s["labels_without_latent_folder"] == 1
    assert s["latent_folders_without_labels"] == 1
    assert s["missing_rate_files"] == {"latent_75.npy": 1}
    assert s["labels_without_any_requested_rate"] == 1
    assert s["boxes_outside_image"] == 2 and s["boxes_dropped"] == 2
    assert s["images_without_faces"] == 1 and s["faces"] == 2 + 1 + 0 + 1 + 1 + 1
    assert s["landmark_label_mismatches"] == 0 and s["bad_latents_skipped"] == 0
    warnings = [r for r in caplog.records if r.name == "latentface.data"]
    assert len(warnings) == 1  # one report with every count
    msg = warnings[0].getMessage()
    for part in [
        "1 labelled images have no latent folder (k_nofolder)",
        "1 latent folders have no labels (k_unlabelled)",
        "1 latent folders lack latent_75.npy",
        "2 boxes extend outside the 64x48 image",
        "2 empty boxes dropped",
    ]:
        assert part in msg, msg


def test_latent_forms_and_targets(layout):
    ds = NestedLatentWiderFaceDataset(layout["root"], "train")
    for key in ("k_f16", "k_f32", "k_f64"):
        latent, target = ds[index(ds, key)]
        assert latent.dtype == torch.float32 and latent.shape == (C, H, W) and target["key"] == key
        np.testing.assert_array_equal(latent.numpy(), layout[key].astype(np.float32).reshape(C, H, W))
    _, t = ds[index(ds, "k_f16")]
    assert t["boxes"].dtype == torch.float32 and t["boxes"].tolist() == [[10, 10, 20, 20], [30, 5, 40, 30]]
    assert t["has_landmarks"].tolist() == [True, False]  # merged from labels_landmarks.txt
    np.testing.assert_array_equal(t["landmarks"][0].numpy(), LMS[0])
    _, t = ds[index(ds, "k_f32")]
    assert t["boxes"].tolist() == [[0, 10, 10, 20]]  # clipped; zero-width and outside boxes dropped
    _, t = ds[index(ds, "k_f64")]
    assert t["boxes"].shape == (0, 4) and t["landmarks"].shape == (0, 5, 2) and t["has_landmarks"].shape == (0,)
    assert set(ds.records) == set(ds.keys) and len(ds.records["k_f32"]) == 1


@pytest.mark.parametrize(
    "key,path_key,words",
    [
        ("k_nan", "nan_path", "latent has 1 non-finite values"),
        ("k_shape", "shape_path", "latent shape [1, 8, 4, 4], expected [C,H,W] = [8, 3, 4]"),
        ("k_garbage", "garbage_path", "cannot read latent"),
    ],
)
def test_bad_latents_raise_naming_the_file(layout, key, path_key, words):
    ds = NestedLatentWiderFaceDataset(layout["root"], "train")
    with pytest.raises(BadLatentError) as err:
        ds[index(ds, key)]
    assert str(err.value).startswith(str(layout[path_key])) and words in str(err.value)


def test_float16_transport_is_exact_and_checked(layout, tmp_path):
    """dtype=float16: float16 files come back bit for bit; wider files are narrowed, overflow named."""
    ds = NestedLatentWiderFaceDataset(layout["root"], "train", dtype=torch.float16)
    latent, _ = ds[index(ds, "k_f16")]
    assert latent.dtype == torch.float16
    np.testing.assert_array_equal(latent.numpy().view(np.uint16), layout["k_f16"].reshape(C, H, W).view(np.uint16))
    assert latent.float().equal(NestedLatentWiderFaceDataset(layout["root"], "train")[index(ds, "k_f16")][0])
    assert transport_dtype(ds) == torch.float32  # the first file is float16, but k_f32 and k_f64 are not
    assert NestedLatentWiderFaceDataset(layout["root"], "train", dtype="auto").dtype == torch.float32
    with pytest.raises(BadLatentError, match="latent has 1 non-finite values"):
        ds[index(ds, "k_nan")]

    x = np.ones((1, C, H, W), np.float32)
    x[0, 0, 0, :2] = [70000.0, -1e6]  # beyond float16's 65504
    np.save(tmp_path / "big.npy", x)
    assert load_latent(tmp_path / "big.npy").dtype == torch.float32  # fine as float32
    with pytest.raises(
        BadLatentError,
        match=r"big.npy: latent has 2 non-finite values \(NaN/inf\) once converted "
        "to float16",
    ):
        load_latent(tmp_path / "big.npy", dtype=torch.float16)
    h = np.zeros((C, H, W), np.float16)
    h.flat[[0, 5, 9]] = [np.inf, -np.inf, np.nan]
    np.save(tmp_path / "h.npy", h)
    for dtype in (torch.float16, torch.float32):
        with pytest.raises(BadLatentError, match="latent has 3 non-finite values \\(NaN/inf\\)$"):
            load_latent(tmp_path / "h.npy", dtype=dtype)
    h.flat[[0, 5, 9]] = [65504, -65504, 6e-8]  # the largest and a subnormal value are finite
    np.save(tmp_path / "h.npy", h)
    assert (
        load_latent(tmp_path / "h.npy", dtype=torch.float16).numpy().view(np.uint16).tolist()
        == h.view(np.uint16).tolist()
    )
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float16, got torch.float64"):
        load_latent(tmp_path / "h.npy", dtype=torch.float64)
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float16"):
        NestedLatentWiderFaceDataset(layout["root"], "train", dtype=torch.bfloat16)


def test_skip_policy_counts_and_never_returns_zeros(layout, caplog):
    ds = NestedLatentWiderFaceDataset(layout["root"], "train", on_bad_latent="skip")
    with caplog.at_level(logging.WARNING, logger="latentface.data"):
        latent, target = ds[index(ds, "k_nan")]  # k_nan and k_shape are bad: k_garbage too -> wraps to k_f16
        ds[index(ds, "k_nan")]  # a second time: not logged again
    assert target["key"] == "k_f16"
    np.testing.assert_array_equal(latent.numpy(), layout["k_f16"][0].astype(np.float32))
    assert ds.summary()["bad_latents_skipped"] == 3
    assert sorted(ds.bad_latents) == sorted(str(layout[k]) for k in ("nan_path", "shape_path", "garbage_path"))
    assert sum("skipping bad latent" in r.getMessage() for r in caplog.records) == 3


def test_explicit_expected_shape(layout):
    ds = NestedLatentWiderFaceDataset(layout["root"], "train", expected_shape=(C, H + 1, W))
    assert ds.image_size == (64, 64)
    with pytest.raises(BadLatentError, match="expected .* = \\[8, 4, 4\\]"):
        ds[index(ds, "k_f16")]
    ds[index(ds, "k_shape")]  # now the [1, 8, 4, 4] file is the right one


def test_several_rates_and_mixed(layout):
    ds = NestedLatentWiderFaceDataset(layout["root"], "train", latent_type=[12, "latent_75.npy"])
    assert ds.latent_types == ["latent_12.npy", "latent_75.npy"]
    assert "k_norate" in ds.keys  # it has latent_12
    assert ds.summary()["missing_rate_files"] == {"latent_12.npy": 5, "latent_75.npy": 1}
    torch.manual_seed(0)
    firsts = {float(ds[index(ds, "k_f16")][0][0, 0, 0]) for _ in range(40)}
    assert firsts == {7.0, float(np.float32(layout["k_f16"][0, 0, 0, 0]))}  # both rates are drawn
    mixed = NestedLatentWiderFaceDataset(layout["root"], "train", latent_type="mixed")
    assert mixed.latent_types == [f"latent_{q}.npy" for q in (12, 25, 50, 75, 100)]


def test_missing_labels_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no label file in .*train"):
        NestedLatentWiderFaceDataset(tmp_path, "train")
    (tmp_path / "train").mkdir()
    write_wider([face_record("a", [])], tmp_path / "train" / "labels.txt")
    with pytest.raises(FileNotFoundError, match="latent folder not found"):
        NestedLatentWiderFaceDataset(tmp_path, "train")
    save(tmp_path, "a", "latent_12.npy", np.zeros((C, H, W), np.float32))
    with pytest.raises(
        ValueError, match="no labelled image has a latent folder with latent_75.npy .*1 folders without"
    ):
        NestedLatentWiderFaceDataset(tmp_path, "train")


def test_paths_and_rate_names(tmp_path):
    assert rate_file(75) == rate_file("75") == rate_file("latent_75") == rate_file("latent_75.npy") == "latent_75.npy"
    assert resolve_latent_types("mixed")[0] == "latent_12.npy" and resolve_latent_types(100) == ["latent_100.npy"]
    assert (
        resolve_latent_types("12, latent_75.npy")
        == resolve_latent_types([12, 75])
        == ["latent_12.npy", "latent_75.npy"]
    )
    with pytest.raises(ValueError, match="empty"):
        resolve_latent_types([])
    assert image_path(tmp_path, "val", "k") == tmp_path / "val" / "images" / "k.png"
    assert latent_path(tmp_path, "val", "k", 25) == tmp_path / "val" / "latent" / "k" / "latent_25.npy"
    with pytest.raises(BadLatentError, match="latent dtype int64"):
        np.save(tmp_path / "i.npy", np.zeros((2, 2, 2), np.int64))
        load_latent(tmp_path / "i.npy")
    with pytest.raises(BadLatentError, match=r"latent shape \[2, 2\], expected \[1,C,H,W\] or \[C,H,W\]"):
        np.save(tmp_path / "s.npy", np.zeros((2, 2), np.float32))
        load_latent(tmp_path / "s.npy")


def target(boxes, landmarks=None, has=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(boxes)
    lms = torch.full((n, 5, 2), -1.0) if landmarks is None else torch.tensor(landmarks, dtype=torch.float32)
    has = torch.zeros(n, dtype=torch.bool) if has is None else torch.tensor(has)
    return {"boxes": boxes, "landmarks": lms, "has_landmarks": has, "key": "k"}


def test_collate_variable_face_counts():
    batch = [
        (torch.ones(C, H, W), target([[0, 0, 5, 5]])),
        (torch.zeros(C, H, W), target([])),
        (torch.full((C, H, W), 2.0), target([[1, 1, 2, 2], [3, 3, 4, 4]])),
    ]
    latents, targets = collate_faces(batch)
    assert latents.shape == (3, C, H, W) and latents[2, 0, 0, 0] == 2
    assert [len(t["boxes"]) for t in targets] == [1, 0, 2]
    with pytest.raises(ValueError, match="latents of different shapes"):
        collate_faces([(torch.ones(C, H, W), target([])), (torch.ones(C, H, W + 1), target([]))])


def test_hflip_hand_values():
    latent = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(2, 2, 3)  # W = 3 cells = 48 px
    lms = [[[10, 1], [20, 2], [15, 3], [12, 4], [18, 5]], [[-1, -1]] * 5]
    out, t = hflip(latent, target([[5, 6, 15, 16], [40, 0, 48, 8]], lms, [True, False]))
    assert torch.equal(out, latent.flip(-1))
    assert t["boxes"].tolist() == [[33, 6, 43, 16], [0, 0, 8, 8]]
    # mirrored x and left/right swapped: new left eye = old right eye (48-20), new left mouth = old right mouth
    assert t["landmarks"][0].tolist() == [[28, 2], [38, 1], [33, 3], [30, 5], [36, 4]]
    assert t["landmarks"][1].tolist() == [[-1, -1]] * 5  # missing landmarks stay missing
    out, _ = hflip(latent, target([]), channel_signs=[1, -1])
    assert torch.equal(out[1], -latent[1].flip(-1)) and torch.equal(out[0], latent[0].flip(-1))
    with pytest.raises(ValueError, match="channel_signs has 256 entries for a latent of 2 channels"):
        hflip(latent, target([]), channel_signs="dct")


def test_hflip_exact_for_the_dct_codec():
    rng = np.random.default_rng(3)
    image = np.clip(rng.normal(128, 40, (48, 64, 3)), 0, 255).astype(np.uint8)
    latent = torch.from_numpy(dct.encode(image, 50)[0].astype(np.float32))
    flipped, _ = hflip(latent, target([]), channel_signs="dct")
    expected = dct.encode(np.ascontiguousarray(image[:, ::-1]), 50)[0].astype(np.float32)
    np.testing.assert_array_equal(flipped.numpy(), expected)
    decoded = dct.decode(flipped.numpy())
    assert np.abs(decoded.astype(int) - dct.decode(latent.numpy())[:, ::-1]).max() <= 1


def test_random_flip_probability():
    latent, t = torch.arange(12.0).reshape(1, 3, 4), target([[0, 0, 16, 16]])
    assert torch.equal(RandomHorizontalFlip(p=0.0)(latent, t)[0], latent)
    out, t2 = RandomHorizontalFlip(p=1.0)(latent, t)
    assert torch.equal(out, latent.flip(-1)) and t2["boxes"].tolist() == [[48, 0, 64, 16]]


def test_crop_hand_values():
    latent = torch.arange(4 * 4, dtype=torch.float32).reshape(1, 4, 4)  # 64 x 64 px
    lms = [[[30, 30]] * 5, [[-1, -1]] * 5, [[0, 0]] * 5]
    t = target(
        [
            [20, 20, 40, 40],  # centre (30, 30): inside, clipped to the crop
            [0, 0, 20, 20],  # centre (10, 10): outside the crop, dropped
            [14, 30, 22, 34],
        ],  # centre (18, 32): inside, left edge clipped
        lms,
        [True, False, True],
    )
    out, c = crop(latent, t, top=1, left=1, height=2, width=2)  # pixels [16, 48) x [16, 48)
    assert torch.equal(out, latent[:, 1:3, 1:3])
    assert c["boxes"].tolist() == [[4, 4, 24, 24], [0, 14, 6, 18]]
    assert c["has_landmarks"].tolist() == [True, True]
    assert c["landmarks"][:, 0].tolist() == [[14, 14], [-16, -16]]
    with pytest.raises(ValueError, match="does not fit"):
        crop(latent, t, 3, 0, 2, 2)


def test_random_crop_keeps_faces_and_compose():
    torch.manual_seed(0)
    latent = torch.randn(2, 10, 10)
    t = target([[100, 100, 110, 110]])  # one face; 4 of the 7 offsets per axis keep it
    aug = Compose([RandomLatentCrop(4, tries=50), RandomHorizontalFlip(0.5)])
    for _ in range(10):
        out, c = aug(latent, t)
        assert out.shape == (2, 4, 4) and len(c["boxes"]) == 1
    with pytest.raises(ValueError, match="larger than the 10x10 cells"):
        RandomLatentCrop((12, 4))(latent, t)


def test_stats_streaming_matches_numpy_and_round_trips(layout, tmp_path):
    stats = compute_latent_stats(layout["root"], "train", on_bad_latent="skip", progress=False)
    good = np.concatenate(
        [layout[k].astype(np.float32).astype(np.float64).reshape(C, -1) for k in ("k_f16", "k_f32", "k_f64")], 1
    )
    np.testing.assert_allclose(stats["mean"], good.mean(1), rtol=1e-12)
    np.testing.assert_allclose(stats["std"], good.std(1), rtol=1e-10)
    assert stats["count"] == 3 and stats["skipped"] == 3 and stats["latent_type"] == "latent_75.npy"
    path = save_stats(stats, tmp_path / "s" / "stats.json")
    assert load_stats(path, channels=C)["mean"] == stats["mean"]
    model = LatentRetinaFace(backbone="resnet18", out_channels=16, in_channels=C)  # what the stats are for
    model.set_normalization(load_stats(path)["mean"], load_stats(path)["std"])
    mean, std = model.input_mean, model.input_std
    assert mean.dtype == torch.float32 and mean.shape == (C,) and std.shape == (C,)
    assert torch.equal(std, torch.tensor(stats["std"], dtype=torch.float32))
    with pytest.raises(BadLatentError, match="non-finite"):
        compute_latent_stats(layout["root"], "train", progress=False)


def test_stats_std_floor(tmp_path):
    for i in range(3):
        x = np.random.default_rng(i).normal(size=(1, 4, 2, 2)).astype(np.float32)
        x[0, 3] = 5.0  # a constant channel
        save(tmp_path, f"k{i}", "latent_75.npy", x)
    write_wider([face_record(f"k{i}", []) for i in range(3)], tmp_path / "train" / "labels.txt")
    stats = compute_latent_stats(tmp_path, progress=False)
    assert stats["floored_channels"] == 1 and stats["std"][3] == stats["std_floor"] > 0
    assert stats["mean"][3] == 5.0


@pytest.mark.parametrize(
    "content,words",
    [
        (None, "latent statistics not found"),
        ("{", "not a valid latent statistics file"),
        ('{"mean": [1, 2], "std": [1]}', "equal length"),
        ('{"mean": [1, 2], "std": [1, 0]}', "std must be > 0 in every channel \\(channel 1"),
        ('{"mean": [1, NaN], "std": [1, 1]}', "non-finite"),
        ('{"mean": [1, 2], "std": [1, 1]}', "statistics for 2 channels, the model expects 3"),
    ],
)
def test_load_stats_errors(tmp_path, content, words):
    path = tmp_path / "stats.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=words):
        load_stats(path, channels=3)


def clean_layout(root, n=12):
    rng = np.random.default_rng(1)
    for i in range(n):
        save(root, f"c{i}", "latent_75.npy", rng.normal(size=(1, C, H, W)).astype(np.float16))
    write_wider([face_record(f"c{i}", [[1, 1, 9, 9]] * (i % 3)) for i in range(n)], root / "train" / "labels.txt")
    (root / "codec.json").write_text(json.dumps({"codec": "dct"}))


def test_stats_cli_and_throughput(tmp_path, capsys):
    clean_layout(tmp_path)
    assert main(["stats", "--dataset-root", str(tmp_path)]) == 0
    stats = load_stats(default_stats_path(tmp_path, "latent_75.npy"))
    assert default_stats_path(tmp_path, 75).name == "latent_stats_75.json" and stats["count"] == 12
    assert default_stats_path(tmp_path, [12, 75]).name == "latent_stats_12_75.json"
    capsys.readouterr()
    for dtype, shown in (("auto", "float16"), ("float32", "float32")):  # the files are float16
        assert (
            main(
                [
                    "stats",
                    "--dataset_root",
                    str(tmp_path),
                    "--throughput",
                    "--workers",
                    "0",
                    "--seconds",
                    "0.2",
                    "--batch_size",
                    "4",
                    "--dtype",
                    dtype,
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        assert re.match(
            rf"\d+ latents/s \(\d+ {shown} latents \[{C}, {H}, {W}\] in [\d.]+ s, 0 workers, batch 4\); "
            r"CPU time [\d.]+ ms per latent",
            out,
        ), out
    assert main(["stats", "--dataset_root", str(tmp_path / "missing")]) == 2
    assert "latentface stats: error: no label file" in capsys.readouterr().err


def test_dataloader_with_workers(tmp_path):
    clean_layout(tmp_path)
    ds = NestedLatentWiderFaceDataset(tmp_path, transform=RandomHorizontalFlip(0.5, channel_signs=None))
    assert ds.codec == "dct"
    m = measure_loading_throughput(ds, workers=2, batch_size=4, seconds=0.3)
    assert m["latents"] > 0 and m["latents_per_s"] > 0 and m["workers"] == 2


@pytest.mark.parametrize("shape", [(256, 0, 8), (1, 256, 8, 0), (0, 3, 4), (1, 8, 0, 0)])
def test_empty_latents_are_bad_latents_naming_the_file(tmp_path, shape):
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros(shape, np.float16))
    for read in (load_latent, lambda p: read_latent_header(p, check=True)):
        with pytest.raises(BadLatentError, match=r"empty.npy: latent shape .* is empty") as err:
            read(path)
        assert str(err.value).startswith(f"{path}: ")
    assert read_latent_header(path) == (shape, np.dtype(np.float16))  # unchecked: the header only


def test_empty_latents_are_skipped_and_never_chosen_as_the_shape(tmp_path):
    """An empty first latent neither sets the dataset's shape nor crashes; with skip it is counted."""
    records = [face_record(k, [[1, 1, 5, 5]]) for k in ("a_empty", "b_good", "c_good")]
    empty = save(tmp_path, "a_empty", "latent_75.npy", np.zeros((1, C, 0, W), np.float16))
    good = np.ones((1, C, H, W), np.float16)
    for key in ("b_good", "c_good"):
        save(tmp_path, key, "latent_75.npy", good)
    write_wider(records, tmp_path / "train" / "labels.txt")
    ds = NestedLatentWiderFaceDataset(tmp_path, "train")
    assert ds.expected_shape == (C, H, W)
    with pytest.raises(BadLatentError, match=re.escape(f"{empty}: latent shape [1, 8, 0, 4] is empty")):
        ds[index(ds, "a_empty")]
    skip = NestedLatentWiderFaceDataset(tmp_path, "train", on_bad_latent="skip")
    latent, target = skip[index(skip, "a_empty")]
    assert target["key"] == "b_good" and latent.shape == (C, H, W)
    assert list(skip.bad_latents) == [str(empty)]


def test_auto_transport_dtype_does_not_depend_on_the_first_file(tmp_path):
    """A float16 first file and a float32 file beyond float16's range: "auto" keeps float32, exact."""
    records = [face_record(k, [[1, 1, 5, 5]]) for k in ("a_half", "b_single")]
    save(tmp_path, "a_half", "latent_75.npy", np.full((1, C, H, W), 0.5, np.float16))
    single = np.full((1, C, H, W), 1.0, np.float32)
    single[0, 0, 0, 0] = 1e5  # beyond float16's 65504
    single[0, 1, 0, 0] = 1.0 + 2**-20  # not a float16 value either
    save(tmp_path, "b_single", "latent_75.npy", single)
    write_wider(records, tmp_path / "train" / "labels.txt")
    ds = NestedLatentWiderFaceDataset(tmp_path, "train", dtype="auto")
    assert ds.keys[0] == "a_half" and ds.dtype == torch.float32 and transport_dtype(ds) == torch.float32
    latent, _ = ds[index(ds, "b_single")]
    assert latent.dtype == torch.float32
    np.testing.assert_array_equal(latent.numpy(), single[0])
    assert ds[index(ds, "a_half")][0].eq(0.5).all()

    save(tmp_path, "b_single", "latent_75.npy", np.full((1, C, H, W), 3.0, np.float16))  # now all float16
    assert NestedLatentWiderFaceDataset(tmp_path, "train", dtype="auto").dtype == torch.float16


def test_check_latents_finds_every_bad_file_with_its_kind_and_leave_out_drops_them(layout):
    ds = NestedLatentWiderFaceDataset(layout["root"], "train", latent_type="latent_75.npy,latent_12.npy")
    bad = ds.check_latents()
    assert {path: e.kind for path, e in bad.items()} == {
        str(layout["nan_path"]): "non-finite",
        str(layout["shape_path"]): "shape",
        str(layout["garbage_path"]): "unreadable",
    }
    assert all(str(e).startswith(path) for path, e in bad.items())
    keys, faces = list(ds.keys), ds.summary()["faces"]
    assert ds.leave_out(bad) == 3  # each of those samples had no other rate file
    assert ds.keys == [k for k in keys if k not in ("k_nan", "k_shape", "k_garbage")]
    assert set(ds.records) == set(ds.keys) and ds.summary()["faces"] == faces - 3
    s = ds.summary()
    assert (s["samples"], s["bad_latents_left_out"], s["samples_left_out"]) == (len(ds.keys), 3, 3)
    assert ds.check_latents() == {}
    # A sample keeps its other rate when one of its files is bad; when nothing is left the split is an error.
    two = [p for p in ds.latent_files(ds.keys.index("k_f16"))]
    assert ds.leave_out([two[0]]) == 0 and ds.latent_files(ds.keys.index("k_f16")) == two[1:]
    with pytest.raises(BadLatentError, match="every latent is unusable"):
        ds.leave_out([p for i in range(len(ds)) for p in ds.latent_files(i)])


def test_a_rate_no_folder_has_names_the_rates_found(layout):
    with pytest.raises(ValueError, match=r"rates found: latent_12.npy, latent_75.npy \(pass --latent_type\)$"):
        NestedLatentWiderFaceDataset(layout["root"], "train", latent_type="latent_99.npy")
