"""A corpus of damaged inputs through every subcommand that reads them: detect, evaluate, export,
train, stats and encode.

Each case builds its damaged input from a small clean dataset, runs ``latentface.cli.main`` in
this process, and asserts the exit status (0 done, 2 bad input), the one line
``latentface <command>: error: ...`` naming the file (and the line where there is one), no
traceback, and that every result written before the bad input is still on disk.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from latentface.checkpoint import save_checkpoint
from latentface.cli import main
from latentface.data.layout import latent_path
from latentface.formats.detections import read_detections
from latentface.formats.widerface import write_widerface_predictions
from latentface.model import LatentRetinaFace

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["--preset", "fast", "--out_channels", "16", "--batch_size", "2", "--epochs", "1", "--workers", "0"]
TRAIN += ["--device", "cpu", "--name", "run", "--no_wandb", "--no_progress"]


@pytest.fixture(scope="module")
def clean(synthetic_dataset):
    """8 training and 4 validation images of 64x64 pixels (latents [256, 4, 4]): test_train's dataset."""
    return synthetic_dataset(8, 4, size=64, rates=(75,), seed=3)


@pytest.fixture(scope="module")
def weight(tmp_path_factory):
    torch.manual_seed(0)
    model = LatentRetinaFace(backbone="resnet18", bridge="pixelshuffle", out_channels=16, blocks=1)
    path = tmp_path_factory.mktemp("corpus-weights") / "tiny.pth"
    save_checkpoint({"model": model.state_dict(), "config": model.config}, path)
    return path


# --------------------------------------------------------------------- damaged files


def good_latent(clean, index=0):
    return np.load(latent_path(clean, "train", f"0_Synthetic_Synthetic_0_{index}"))


def truncated_npy(path: Path, clean) -> None:
    np.save(path, good_latent(clean))
    path.write_bytes(path.read_bytes()[:150])  # the header and a few values


def nan_npy(path: Path, clean) -> None:
    array = good_latent(clean).astype(np.float32)
    array.flat[7] = np.nan
    np.save(path, array)


def wrong_shape_npy(path: Path, clean) -> None:
    np.save(path, np.zeros((3, 4, 4), np.float16))


def empty_shape_npy(path: Path, clean) -> None:
    np.save(path, np.zeros((256, 0, 4), np.float16))


def zero_size_npy(path: Path, clean) -> None:
    path.write_bytes(b"")


class Touch:
    """Unpickling this runs ``Path.touch(sentinel)``: a loader that ran pickles would leave the file."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return pathlib.Path.touch, (self.sentinel,)


def pickled_npy(path: Path, clean) -> None:
    np.save(path, np.array([Touch(path.with_suffix(".ran"))], dtype=object), allow_pickle=True)


BAD_LATENTS = {
    "truncated": (truncated_npy, r"c_bad\.npy: "),
    "nan": (nan_npy, r"c_bad\.npy: latent has 1 non-finite value"),
    "wrong_shape": (wrong_shape_npy, r"c_bad\.npy: latent shape \[3, 4, 4\], the model expects \[256, H, W\]"),
    "empty_shape": (empty_shape_npy, r"c_bad\.npy: latent shape \[256, 0, 4\] is empty"),
    "zero_size": (zero_size_npy, r"c_bad\.npy: "),
    "pickled_object": (pickled_npy, r"c_bad\.npy: "),
}


def latent_folder(tmp_path: Path, clean, damage) -> Path:
    """a_good, b_good, c_bad (damaged), d_good."""
    folder = tmp_path / "latents"
    folder.mkdir()
    np.save(folder / "a_good.npy", good_latent(clean, 0))
    np.save(folder / "b_good.npy", good_latent(clean, 1))
    damage(folder / "c_bad.npy", clean)
    np.save(folder / "d_good.npy", good_latent(clean, 2))
    return folder


def copy_dataset(clean, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(clean, root)
    return root


NON_UTF8 = b"0--Synthetic/0_Synthetic_Synthetic_0_0.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n\xff\xfe\n"


# --------------------------------------------------------------------- running a case


@dataclass
class Outcome:
    status: int
    out: str
    err: str

    def error_line(self, command: str) -> str:
        lines = [line for line in self.err.splitlines() if line.startswith(f"latentface {command}: error: ")]
        assert len(lines) == 1, self.err
        return lines[0]


def run(capsys, argv: list[str]) -> Outcome:
    capsys.readouterr()
    status = main([str(a) for a in argv])  # a bug escapes as an exception and fails the test
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out, captured.err
    return Outcome(status, captured.out, captured.err)


def refused(capsys, argv: list[str], message: str) -> Outcome:
    """Exit status 2 and one error line matching ``message``: the last line of stderr, and all of it
    for the commands that print no log or progress bar there (train logs, stats draws a bar)."""
    outcome = run(capsys, argv)
    assert outcome.status == 2, outcome.err
    line = outcome.error_line(argv[0])
    assert re.search(message, line), outcome.err
    assert outcome.err.endswith(line + "\n"), outcome.err
    if argv[0] not in ("train", "stats"):
        assert outcome.err == line + "\n", outcome.err
    return outcome


# --------------------------------------------------------------------- detect


@pytest.mark.parametrize("kind", sorted(BAD_LATENTS))
def test_detect_stops_at_a_bad_latent_keeping_the_results_before_it(kind, clean, weight, tmp_path, capsys):
    damage, message = BAD_LATENTS[kind]
    folder = latent_folder(tmp_path, clean, damage)
    out = tmp_path / "out"
    argv = ["detect", "--latent", folder, "--weight", weight, "--output", out, "--keep", "2", "--no_progress"]
    refused(
        capsys,
        [*argv, "--batch_size", "4"],
        message + r".*the 2 result\(s\) before it are in .*detections\.json; "
        r"--on_bad_latent skip skips bad latents",
    )
    assert [r["image"] for r in read_detections(out / "detections.json")] == ["a_good", "b_good"]
    assert sorted(p.name for p in (out / "pictures").iterdir()) == ["a_good.png", "b_good.png"]
    assert not (folder / "c_bad.ran").exists()  # a pickle is never run

    skipped = run(capsys, [*argv, "--on_bad_latent", "skip", "--output", tmp_path / "skip"])
    assert skipped.status == 0 and "1 bad latent(s) skipped" in skipped.out and "c_bad.npy" in skipped.out
    assert [r["image"] for r in read_detections(tmp_path / "skip" / "detections.json")] == [
        "a_good",
        "b_good",
        "d_good",
    ]
    assert not (folder / "c_bad.ran").exists()


def test_detect_missing_and_empty_inputs(clean, weight, tmp_path, capsys):
    refused(capsys, ["detect", "--latent", tmp_path / "nowhere.npy", "--weight", weight], r"nowhere\.npy")
    (tmp_path / "empty").mkdir()
    refused(capsys, ["detect", "--latent", tmp_path / "empty", "--weight", weight], r"empty")
    refused(
        capsys,
        ["detect", "--latent", latent_path(clean, "val", "0_Synthetic_Synthetic_0_8"), "--weight", tmp_path / "w.pth"],
        r"w\.pth",
    )
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02not a checkpoint")
    latent = latent_path(clean, "val", "0_Synthetic_Synthetic_0_8")
    refused(capsys, ["detect", "--latent", latent, "--weight", corrupt], r"corrupt\.pth: not a readable")


# --------------------------------------------------------------------- evaluate


def prediction_dir(clean, tmp_path: Path) -> tuple[Path, dict]:
    """Good WIDER text files for every validation image (distinct scores)."""
    from latentface.data.labels import read_labels

    labels = read_labels(clean / "val" / "labels.txt")
    scores = iter(np.linspace(0.9, 0.1, sum(len(r) for r in labels.values())))
    preds = {k: np.array([[*b, next(scores)] for b in r.boxes]).reshape(-1, 5) for k, r in labels.items()}
    write_widerface_predictions(preds, tmp_path / "preds", {k: r.name for k, r in labels.items()})
    return tmp_path / "preds", labels


BAD_PREDICTIONS = {
    "bad_line": (b"{stem}\n2\n1 2 3 4 0.9\n1 2 three 4 0.8\n", r"{stem}\.txt:4: expected 'x y w h score'"),
    "count_mismatch": (b"{stem}\n3\n1 2 3 4 0.9\n", r"{stem}\.txt:2: the count line says 3 boxes, the file has 1"),
    "non_utf8": (b"{stem}\n1\n1 2 3 4 0.9\xff\n", r"{stem}\.txt:3: not UTF-8 text \(byte 0xff\)"),
    "no_count": (b"{stem}\n", r"{stem}\.txt:2: expected an image name line and a box count line"),
    "wrong_name": (b"someone_else\n0\n", r"{stem}\.txt:1: image name 'someone_else' does not match"),
    "negative_size": (b"{stem}\n1\n1 2 -3 4 0.9\n", r"{stem}\.txt:3: non-finite value or negative size"),
}


@pytest.mark.parametrize("kind", sorted(BAD_PREDICTIONS))
def test_evaluate_names_the_bad_prediction_file_and_line(kind, clean, tmp_path, capsys):
    preds, labels = prediction_dir(clean, tmp_path)
    name = next(iter(labels.values())).name
    stem = Path(name).stem
    text, message = BAD_PREDICTIONS[kind]
    (preds / Path(name).with_suffix(".txt")).write_bytes(text.replace(b"{stem}", stem.encode()))
    out = tmp_path / "eval"
    refused(
        capsys,
        ["evaluate", "--predictions", preds, "--dataset_root", clean, "--output", out],
        message.replace("{stem}", stem),
    )
    assert not (out / "report.json").exists()


def test_evaluate_missing_unknown_and_partial_predictions(clean, tmp_path, capsys):
    preds, labels = prediction_dir(clean, tmp_path)
    argv = ["evaluate", "--predictions", preds, "--dataset_root", clean, "--no_coco", "--output", tmp_path / "e"]
    refused(
        capsys,
        ["evaluate", "--predictions", tmp_path / "none", "--dataset_root", clean],
        r"none: no such prediction directory",
    )
    (tmp_path / "empty").mkdir()
    refused(
        capsys,
        ["evaluate", "--predictions", tmp_path / "empty", "--dataset_root", clean],
        r"empty: no \.txt prediction files",
    )
    stray = preds / "0--Synthetic" / "0_Synthetic_Synthetic_0_99.txt"
    stray.write_text("0_Synthetic_Synthetic_0_99\n0\n")
    refused(capsys, argv, r"0_Synthetic_Synthetic_0_99\.txt: image '0_Synthetic_Synthetic_0_99' is not in ")
    stray.unlink()
    # a missing file: counted as missed, a warning naming it, rc 0; --require_all: an error naming the folder
    missing = sorted(preds.rglob("*.txt"))[-1]
    missing.unlink()
    partial = run(capsys, argv)
    assert partial.status == 0 and f"e.g. {missing.stem}" in partial.err
    assert "latentface evaluate: warning: 1 of 4 images" in partial.err
    assert json.loads((tmp_path / "e" / "report.json").read_text())["images_without_predictions"] == 1
    refused(capsys, [*argv, "--require_all"], rf"preds: 1 of 4 images .*e\.g\. {missing.stem}; --require_all")


@pytest.mark.parametrize(
    "labels,message",
    [
        (NON_UTF8, r"labels\.txt:4: not UTF-8 text \(byte 0xff\)"),
        (b"0--Synthetic/0_Synthetic_Synthetic_0_8.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", r"labels\.txt:2: face count 2"),
        (b"0--Synthetic/0_Synthetic_Synthetic_0_8.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n", r"labels\.txt:3: "),
    ],
    ids=["non_utf8", "short_count", "bad_number"],
)
def test_evaluate_and_train_name_the_bad_labels_line(labels, message, clean, weight, tmp_path, capsys):
    root = copy_dataset(clean, tmp_path)
    preds, _ = prediction_dir(clean, tmp_path)
    (root / "val" / "labels.txt").write_bytes(labels)
    refused(capsys, ["evaluate", "--predictions", preds, "--dataset_root", root, "--output", tmp_path / "e"], message)
    refused(capsys, ["evaluate", "--weight", weight, "--dataset_root", root, "--output", tmp_path / "e"], message)
    refused(capsys, ["train", "--dataset_root", root, "--out", tmp_path / "runs", *TRAIN], message)


def test_evaluate_a_bad_wider_gt_folder(clean, tmp_path, capsys):
    preds, _ = prediction_dir(clean, tmp_path)
    gt = tmp_path / "gt"
    gt.mkdir()
    argv = ["evaluate", "--predictions", preds, "--dataset_root", clean, "--wider_gt", gt, "--output", tmp_path / "e"]
    refused(capsys, argv, r"gt/wider_face_val\.mat: missing")
    for name in ("face", "easy", "medium", "hard"):
        (gt / f"wider_{name}_val.mat").write_bytes(b"MATLAB 5.0 MAT-file, cut short")
    refused(capsys, argv, r"gt/wider_face_val\.mat: not a readable \.mat file")


def test_evaluate_a_checkpoint_over_a_bad_latent_names_it(clean, weight, tmp_path, capsys):
    root = copy_dataset(clean, tmp_path)
    bad = latent_path(root, "val", "0_Synthetic_Synthetic_0_9")
    nan_npy(bad, clean)
    refused(
        capsys,
        ["evaluate", "--weight", weight, "--dataset_root", root, "--output", tmp_path / "e", "--no_progress"],
        rf"{re.escape(str(bad))}: latent has 1 non-finite value.* found before the model ran; "
        r"--on_bad_latent skip leaves them out",
    )


# --------------------------------------------------------------------- export


def test_export_bad_checkpoint_and_unwritable_output(weight, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"")
    refused(capsys, ["export", "--weight", corrupt, "--output", tmp_path / "m.onnx"], r"corrupt\.pth: not a readable")
    refused(capsys, ["export", "--weight", tmp_path / "none.pth", "--output", tmp_path / "m.onnx"], r"none\.pth")
    refused(
        capsys,
        ["export", "--weight", weight, "--format", "torchscript", "--output", tmp_path, "--no_check"],
        rf"{re.escape(str(tmp_path))}: is a folder",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.pth"]


# --------------------------------------------------------------------- train and stats


@pytest.mark.parametrize("kind", ["truncated", "nan", "empty_shape", "zero_size", "pickled_object"])
def test_train_and_stats_name_a_bad_training_latent(kind, clean, tmp_path, capsys):
    root = copy_dataset(clean, tmp_path)
    bad = latent_path(root, "train", "0_Synthetic_Synthetic_0_3")
    BAD_LATENTS[kind][0](bad, clean)
    where = re.escape(str(bad)) + ": "
    refused(capsys, ["stats", "--dataset_root", root], where)
    refused(capsys, ["train", "--dataset_root", root, "--out", tmp_path / "runs", *TRAIN], where)
    assert not bad.with_suffix(".ran").exists()


def test_train_skips_bad_latents_when_asked_and_keeps_its_run(clean, tmp_path, capsys):
    root = copy_dataset(clean, tmp_path)
    nan_npy(latent_path(root, "train", "0_Synthetic_Synthetic_0_3"), clean)
    done = run(capsys, ["train", "--dataset_root", root, "--out", tmp_path / "runs", *TRAIN, "--on_bad_latent", "skip"])
    assert done.status == 0, done.err
    run_dir = tmp_path / "runs" / "run"
    assert (run_dir / "last.pth").is_file() and (run_dir / "weight_final.pth").is_file()
    assert "0_Synthetic_Synthetic_0_3" in done.out + done.err


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"epochs": "ten"}', r"cfg\.json: setting 'epochs' must be an integer, got 'ten'"),
        ('{"epochs": 3,', r"cfg\.json: not a valid training config file"),
    ],
    ids=["wrong_type", "cut_short"],
)
def test_train_names_a_damaged_config_file(text, message, clean, tmp_path, capsys):
    (tmp_path / "cfg.json").write_text(text)
    argv = ["train", "--config", tmp_path / "cfg.json", "--dataset_root", clean, "--out", tmp_path / "runs", *TRAIN]
    refused(capsys, argv, message)
    assert not (tmp_path / "runs").exists()


def test_stats_over_an_empty_split(tmp_path, capsys):
    (tmp_path / "data" / "train" / "latent").mkdir(parents=True)
    refused(capsys, ["stats", "--dataset_root", tmp_path / "data"], r"data")


# --------------------------------------------------------------------- encode


@pytest.fixture
def images(clean, tmp_path):
    """A WIDER-style image folder and labels for two training images of the clean dataset."""
    folder = tmp_path / "images" / "0--Synthetic"
    folder.mkdir(parents=True)
    for i in (0, 1):
        shutil.copy(clean / "train" / "images" / f"0_Synthetic_Synthetic_0_{i}.png", folder / f"img_{i}.png")
    labels = tmp_path / "labels.txt"
    labels.write_text(
        "0--Synthetic/img_0.png\n1\n4 4 20 20 0 0 0 0 0 0\n0--Synthetic/img_1.png\n1\n8 8 30 30 0 0 0 0 0 0\n"
    )
    return tmp_path / "images", labels


def encode(images, labels, root, *extra):
    return [
        "encode",
        "--images",
        images,
        "--labels",
        labels,
        "--root",
        root,
        "--size",
        "64",
        "--rates",
        "75",
        "--no_progress",
        *extra,
    ]


def test_encode_missing_corrupt_images_and_bad_labels(images, tmp_path, capsys):
    folder, labels = images
    (folder / "0--Synthetic" / "img_1.png").unlink()
    refused(capsys, encode(folder, labels, tmp_path / "o1"), r"labels\.txt: image '0--Synthetic/img_1\.png' is missing")
    skipped = run(capsys, encode(folder, labels, tmp_path / "o2", "--on_missing", "skip"))
    assert skipped.status == 0 and latent_path(tmp_path / "o2", "train", "img_0").is_file()
    (folder / "0--Synthetic" / "img_1.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    refused(capsys, encode(folder, labels, tmp_path / "o3"), r"img_1\.png")
    labels.write_bytes(NON_UTF8.replace(b"0_Synthetic_Synthetic_0_0.jpg", b"img_0.png"))
    refused(capsys, encode(folder, labels, tmp_path / "o4"), r"labels\.txt:4: not UTF-8 text")
    labels.write_text("0--Synthetic/img_0.png\n1\n4 4 20\n")
    refused(capsys, encode(folder, labels, tmp_path / "o5"), r"labels\.txt:3: expected 4 or 10 columns")


def test_evaluate_a_checkpoint_can_skip_bad_latents_counting_their_faces_as_missed(clean, weight, tmp_path, capsys):
    root = copy_dataset(clean, tmp_path)
    bad = latent_path(root, "val", "0_Synthetic_Synthetic_0_9")
    truncated_npy(bad, clean)
    argv = ["evaluate", "--weight", weight, "--dataset_root", root, "--no_coco", "--no_progress"]
    done = run(capsys, [*argv, "--on_bad_latent", "skip", "--output", tmp_path / "e"])
    assert done.status == 0, done.err
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert list(report["bad_latents_skipped"]) == [str(bad)] and report["images"] == 4
    assert report["images_without_predictions"] == 1
    assert "latentface evaluate: warning: 1 bad latent(s) skipped (--on_bad_latent skip)" in done.err
    assert "e.g. 0_Synthetic_Synthetic_0_9" in done.err
    assert len(list((tmp_path / "e" / "widerface").rglob("*.txt"))) == 3
    refused(
        capsys,
        [*argv, "--on_bad_latent", "skip", "--require_all", "--output", tmp_path / "f"],
        r"tiny\.pth: 1 of 4 images of split 'val' have no predictions .*; --require_all",
    )
