"""`latentface demo --quick`: the whole pipeline end to end at a tiny size."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from latentface.cli import main
from latentface.data.synth import image_key
from latentface.tools.demo import CODEC_RECIPES, PICTURES, summary_line, synthetic_dataset, training_processes
from latentface.training.recipes import RECIPES
from latentface.util.io import read_image

QUICK = RECIPES["demo-quick"]


@pytest.mark.slow
def test_quick_demo_writes_the_report_pictures_and_numbers(tmp_path, capsys):
    out, data = tmp_path / "demo", tmp_path / "synthetic"
    assert main(["demo", "--quick", "--out", str(out), "--synthetic_root", str(data), "--no_progress"]) == 0
    assert "demo: AP@0.5" in capsys.readouterr().out

    summary = json.loads((out / "demo.json").read_text())
    assert set(summary) >= {"dataset", "train_config", "training", "evaluation", "detections", "timings_s", "targets"}
    assert set(summary["evaluation"]) >= {"ap", "ap_by_size", "coco", "faces", "images", "predictions"}
    assert set(summary["timings_s"]) == {"dataset", "train", "evaluate", "detect and draw", "total"}
    assert summary["dataset"]["train_images"] == QUICK.n_train and summary["dataset"]["val_images"] == QUICK.n_val
    assert summary["dataset"]["latent_shape"] == [256, QUICK.size // 16, QUICK.size // 16]
    assert summary["training"]["steps"] == QUICK.train["epochs"] * (QUICK.n_train // QUICK.train["batch_size"])
    assert 0 <= summary["evaluation"]["ap"] <= 1
    assert summary["targets"]["ap_met"] == (summary["evaluation"]["ap"] >= 0.8)
    assert json.loads((out / "eval" / "report.json").read_text())["ap"] == summary["evaluation"]["ap"]

    report = (out / "report.md").read_text()
    for picture in ("curves.png", "pr_curve.png", "detections_decoded.png", "detections_latent.png"):
        assert f"]({picture})" in report
        assert (out / picture).stat().st_size > 1000
    # two pictures side by side with a 4-pixel gutter, small images drawn at an integer multiple of their size
    side = QUICK.size * (400 // QUICK.size)
    assert read_image(out / "detections_latent.png").shape == (side, 2 * side + 4, 3)
    assert f"**{summary['evaluation']['ap']:.4f}**" in report
    records = json.loads((out / "detections.json").read_text())
    assert len(records) == PICTURES["quick"] and all(r["image_size"] == [QUICK.size, QUICK.size] for r in records)
    assert all(d["score"] >= 0.6 for r in records for d in r["detections"])
    # the README's summary line, printed again from demo.json alone
    assert main(["demo", "--summary", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == summary_line(summary)


def test_synthetic_dataset_is_reused_only_when_it_matches(tmp_path):
    root = tmp_path / "synthetic"
    _, reused = synthetic_dataset(root, QUICK, progress=False)
    assert not reused
    latent = root / "val" / "latent" / image_key(QUICK.n_train) / "latent_75.npy"  # the first validation image
    before = np.load(latent)
    stamp = latent.stat().st_mtime_ns
    _, reused = synthetic_dataset(root, QUICK, progress=False)
    assert reused and latent.stat().st_mtime_ns == stamp
    smaller = dataclasses.replace(QUICK, n_val=QUICK.n_val - 1)
    _, reused = synthetic_dataset(root, smaller, progress=False)
    assert not reused and len(list((root / "val" / "latent").iterdir())) == QUICK.n_val - 1
    assert np.array_equal(np.load(latent), before)  # same seed, same bytes


@pytest.mark.slow
def test_demo_on_a_given_dataset_trains_in_two_processes(tmp_path, capsys, synthetic_dataset):
    """`make demo DATASET_ROOT=...`: the given layout is used as is, training runs in two DDP processes."""
    data, unused = (
        synthetic_dataset(QUICK.n_train, QUICK.n_val, size=QUICK.size, rates=(75,), seed=3),
        tmp_path / "synthetic",
    )
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--quick",
                "--dataset_root",
                str(data),
                "--processes",
                "2",
                "--out",
                str(out),
                "--synthetic_root",
                str(unused),
                "--no_progress",
            ]
        )
        == 0
    )
    assert not unused.exists()  # nothing synthetic was made

    summary = json.loads((out / "demo.json").read_text())
    assert summary["training_processes"] == 2
    assert summary["dataset"] == {**summary["dataset"], "root": str(data), "synthetic": False, "reused": True}
    # the demo's batch of 4 is split into 2 per process: the same number of steps as one process
    assert summary["train_config"]["batch_size"] == QUICK.train["batch_size"] // 2
    assert summary["training"]["steps"] == QUICK.train["epochs"] * (QUICK.n_train // QUICK.train["batch_size"])
    assert json.loads((out / "train" / "ranks.json").read_text())["identical"] is True
    assert f"batch {QUICK.train['batch_size']}, " in (out / "report.md").read_text()
    assert "in 2 processes." in (out / "report.md").read_text()


def test_training_processes_one_per_core_up_to_two_on_a_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for cores, expected in ((1, 1), (2, 2), (16, 2), (None, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert training_processes() == training_processes("cpu") == training_processes("auto") == expected
    assert training_processes("cuda") == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU: one process unless the CPU is asked for
    assert training_processes() == 1 and training_processes("cpu") == 2


def test_demo_rejects_zero_processes(tmp_path, capsys):
    assert (
        main(
            [
                "demo",
                "--quick",
                "--processes",
                "0",
                "--out",
                str(tmp_path / "demo"),
                "--synthetic_root",
                str(tmp_path / "synthetic"),
                "--no_progress",
            ]
        )
        == 2
    )
    assert "latentface demo: error: processes must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "synthetic").exists()  # rejected before any step ran


def test_summary_line_is_the_readme_sentence_from_demo_json(tmp_path, capsys):
    sizes = {"tiny": 0.411, "small": 0.847, "medium": 0.872, "large": 0.855}
    summary = {
        "dataset": {"val_images": 150},
        "targets": {"ap": 0.8, "ap_met": True},
        "timings_s": {
            "dataset (reused)": 13.2,
            "train": 453.4,
            "evaluate": 7.1,
            "detect and draw": 2.0,
            "total": 626.0,
        },
        "evaluation": {
            "ap": 0.8481,
            "coco": {"mAP": 0.4921},
            "ap_by_size": {k: {"ap": v, "faces": 1} for k, v in sizes.items()},
        },
    }
    line = summary_line(summary)
    assert line == (
        "10 min 26 s in all (dataset 13 s, training 453 s, evaluation 7 s, pictures 2 s); WIDER AP@0.5 "
        "0.848 on the 150 validation images (target 0.80: met), COCO mAP@[.5:.95] 0.492; by face height "
        "tiny (<16 px) 0.411, small 0.847, medium 0.872, large 0.855."
    )
    (tmp_path / "demo.json").write_text(json.dumps(summary))
    assert main(["demo", "--summary", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == line
    assert main(["demo", "--summary", "--out", str(tmp_path / "none")]) == 2  # no run there: one clear line
    assert "demo summary not found" in capsys.readouterr().err


def test_the_learned_codec_demo_trains_the_same_data_and_model_for_more_steps_inside_the_target():
    dct, learned = RECIPES[CODEC_RECIPES["dct"]], RECIPES[CODEC_RECIPES["learned"]]
    assert (dct.name, learned.name) == ("demo", "demo-learned")
    assert learned.data() == dct.data()  # one synthetic dataset per codec, made by the same generator call
    differ = {k for k in {*dct.train, *learned.train} if dct.train.get(k) != learned.train.get(k)}
    assert differ == {"epochs", "time_budget"} and learned.train["epochs"] > dct.train["epochs"]
    assert learned.train["time_budget"] <= 15 * 60 - 90  # the cap leaves the data, evaluation and pictures
