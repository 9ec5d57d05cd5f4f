"""`latentface demo --quick`: the whole pipeline end to end at a tiny size."""
import json

import numpy as np

from latentface import viz
from latentface.cli import main
from latentface.data.synth import image_key
from latentface.demo import QUICK, synthetic_dataset


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
    assert 0 <= summary["evaluation"]["ap"] <= 1 and summary["targets"]["ap_met"] == (summary["evaluation"]["ap"] >= 0.8)
    assert json.loads((out / "eval" / "report.json").read_text())["ap"] == summary["evaluation"]["ap"]

    report = (out / "report.md").read_text()
    for picture in ("curves.png", "pr_curve.png", "detections_decoded.png", "detections_latent.png"):
        assert f"]({picture})" in report
        assert (out / picture).stat().st_size > 1000
    # two pictures side by side with a 4-pixel gutter, small images drawn at an integer multiple of their size
    side = QUICK.size * (400 // QUICK.size)
    assert viz.read_image(out / "detections_latent.png").shape == (side, 2 * side + 4, 3)
    assert f"**{summary['evaluation']['ap']:.4f}**" in report
    records = json.loads((out / "detections.json").read_text())
    assert len(records) == QUICK.pictures and all(r["image_size"] == [QUICK.size, QUICK.size] for r in records)
    assert all(d["score"] >= 0.6 for r in records for d in r["detections"])


def test_synthetic_dataset_is_reused_only_when_it_matches(tmp_path):
    root = tmp_path / "synthetic"
    _, reused = synthetic_dataset(root, QUICK, progress=False)
    assert not reused
    latent = root / "val" / "latent" / image_key(QUICK.n_train) / "latent_75.npy"  # the first validation image
    before = np.load(latent)
    stamp = latent.stat().st_mtime_ns
    _, reused = synthetic_dataset(root, QUICK, progress=False)
    assert reused and latent.stat().st_mtime_ns == stamp
    smaller = type(QUICK)(**{**QUICK.__dict__, "n_val": QUICK.n_val - 1})
    _, reused = synthetic_dataset(root, smaller, progress=False)
    assert not reused and len(list((root / "val" / "latent").iterdir())) == QUICK.n_val - 1
    assert np.array_equal(np.load(latent), before)  # same seed, same bytes
