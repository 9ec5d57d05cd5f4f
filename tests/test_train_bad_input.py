"""Training on bad input: the pre-flight check of both splits (--on_bad_latent raise|skip), last.pth before
validation, and one clear line with exit status 2 for every cheap mistake, found before the data is read."""

import json
import shutil

import numpy as np
import pytest
import torch

from latentface.cli import build_parser, run_command
from latentface.data.layout import latent_path
from latentface.train import TrainConfig, TrainingError, train
from latentface.training import loop
from latentface.training.config import read_config_file
from tests.helpers import tiny_train_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clean(synthetic_dataset):
    return synthetic_dataset(8, 4, size=64, rates=(75,), seed=3)  # test_train's dataset


@pytest.fixture
def damaged(clean, tmp_path):
    """A copy of the dataset: a NaN in one training latent, an empty [256,0,4] latent in validation."""
    root = tmp_path / "data"
    shutil.copytree(clean, root)
    keys = {split: sorted(p.name for p in (root / split / "latent").iterdir()) for split in ("train", "val")}
    nan = latent_path(root, "train", keys["train"][2])
    array = np.load(nan)
    array.flat[5] = np.nan
    np.save(nan, array)
    empty = latent_path(root, "val", keys["val"][1])
    np.save(empty, np.zeros((1, 256, 0, 4), np.float16))
    return root, nan, empty


def argv(root, out, *extra):
    return [
        "train",
        "--dataset_root",
        str(root),
        "--preset",
        "fast",
        "--out_channels",
        "16",
        "--batch_size",
        "2",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--name",
        "run",
        "--no_wandb",
        "--no_progress",
        *extra,
    ]


def train_cli(capsys, args) -> tuple[int, str]:
    status = run_command("train", build_parser(args).parse_args(args))
    return status, capsys.readouterr().err


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("latentface train: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_a_bad_latent_in_either_split_stops_before_training_naming_the_file(damaged, tmp_path, capsys):
    root, nan, empty = damaged
    status, err = train_cli(capsys, argv(root, tmp_path / "runs"))
    line = one_error_line(err)
    assert status == 2
    assert line.startswith(f"latentface train: error: {nan}: latent has 1 non-finite values (NaN/inf)")
    assert "found 2 bad latent files before training: 1 in train, 1 in val" in line
    assert "--on_bad_latent skip leaves them out" in line
    assert "computing latent statistics" not in err  # the check comes first, and nothing was trained or written
    assert not (tmp_path / "runs" / "run").exists()


def test_skip_leaves_bad_latents_out_logged_once_and_counted_in_the_summary(damaged, tmp_path, capsys):
    root, nan, empty = damaged
    status, err = train_cli(capsys, argv(root, tmp_path / "runs", "--on_bad_latent", "skip", "--max_steps", "2"))
    assert status == 0, err
    assert err.count(f"skipping bad latent (--on_bad_latent skip): {nan}: latent has 1 non-finite") == 1
    assert err.count(f"skipping bad latent (--on_bad_latent skip): {empty}: latent shape [1, 256, 0, 4] is empty") == 1
    assert "data: train 7 samples" in err and "val 3 samples" in err
    assert "bad latents left out (--on_bad_latent skip): train 1 (1 non-finite), val 1 (1 empty)" in err
    summary = json.loads((tmp_path / "runs" / "run" / "summary.json").read_text())
    assert summary["on_bad_latent"] == "skip"
    assert summary["bad_latents"]["train"] | {"paths": None} == {
        "files": 1,
        "samples_left_out": 1,
        "kinds": {"non-finite": 1},
        "paths": None,
    }
    assert list(summary["bad_latents"]["train"]["paths"]) == [str(nan)]
    assert summary["bad_latents"]["val"]["kinds"] == {"empty": 1} and summary["bad_latents"]["val"]["files"] == 1
    assert (summary["data"]["train"]["samples"], summary["data"]["val"]["samples"]) == (7, 3)
    assert (summary["state"], summary["stopped"], summary["steps"]) == ("stopped", "max_steps", 2)


def test_last_pth_is_saved_before_validation_so_a_failure_in_it_loses_no_training(clean, tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("validation broke")

    monkeypatch.setattr(loop._Run, "_validate", broken)
    with pytest.raises(RuntimeError, match="validation broke"):
        train(tiny_train_config(clean, tmp_path, lr=TrainConfig.lr))
    saved = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert (saved["epoch"], saved["epoch_step"], saved["step"]) == (0, 4, 4)  # the whole first epoch
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["state"], summary["stopped"]) == ("failed", "error")
    assert summary["stop_reason"] == "RuntimeError: validation broke"
    monkeypatch.undo()
    # The resumed run validates that epoch first, then trains the second.
    run_dir = train(TrainConfig(resume=str(tmp_path / "run"), progress=False))
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1.0", "2.0"] and all(r.split(",")[11] != "" for r in rows)
    assert json.loads((run_dir / "summary.json").read_text())["state"] == "finished"


def test_every_cheap_mistake_is_one_line_before_the_data_is_read(clean, tmp_path, capsys):
    runs = tmp_path / "runs"
    status, err = train_cli(capsys, argv(clean, runs, "--latent_type", "latent_99.npy"))
    assert status == 2 and one_error_line(err).endswith(
        "no labelled image has a latent folder with latent_99.npy (8 labelled images, 8 latent folders, 0 labelled "
        "images without a folder, 8 folders without the rate); rates found: latent_75.npy (pass --latent_type)"
    )
    for device, message in (
        ("tpu", "--device tpu: not a device; use auto, cpu, cuda or cuda:N"),
        ("meta", "--device meta: training runs on auto, cpu, cuda or cuda:N, not meta"),
    ):
        status, err = train_cli(capsys, argv(clean, runs, "--device", device))
        assert status == 2 and one_error_line(err) == f"latentface train: error: {message}"
    # Checked before the dataset is looked at: the missing dataset is not what is reported.
    status, err = train_cli(capsys, argv(tmp_path / "nowhere", runs, "--anchors", "nine"))
    assert status == 2 and one_error_line(err) == (
        "latentface train: error: --anchors must be one of ['default', 'six', 'three_level'], got 'nine'"
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, err = train_cli(capsys, argv(clean, blocker / "runs"))
    assert status == 2 and one_error_line(err) == (
        f"latentface train: error: --out {blocker / 'runs'}: cannot write there (Not a directory)"
    )
    assert "data:" not in err and "statistics" not in err  # before the scan and the statistics pass
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"epochs": "ten"}))
    status, err = train_cli(capsys, ["train", "--config", str(config), "--no_wandb"])
    assert status == 2 and one_error_line(err) == (
        f"latentface train: error: {config}: setting 'epochs' must be an integer, got 'ten' (str)"
    )
    config.write_text(json.dumps({"amp": "yes"}))
    with pytest.raises(TrainingError, match=rf"{config}: setting 'amp' must be true or false, got 'yes' \(str\)"):
        read_config_file(config)
    config.write_text(json.dumps({"latent_type": [12, "latent_75.npy"], "time_budget": 30, "final_margin": None}))
    assert read_config_file(config)["latent_type"] == [12, "latent_75.npy"]  # lists of rates, ints for floats
    with pytest.raises(TrainingError, match=r"--lr must be a number, got '0.1' \(str\)"):
        TrainConfig(lr="0.1").validate()  # the Python API is checked alike
    status, err = train_cli(capsys, argv(clean, runs, "--wall_budget", "-5"))
    assert status == 2 and one_error_line(err) == "latentface train: error: --wall_budget must be positive, got -5.0"
    latin = tmp_path / "latin"
    shutil.copytree(clean, latin)
    labels = latin / "val" / "labels.txt"
    lines = labels.read_bytes().count(b"\n")
    labels.write_bytes(labels.read_bytes() + "caf\u00e9.jpg\n0\n".encode("latin-1"))
    status, err = train_cli(capsys, argv(latin, runs))
    assert status == 2 and one_error_line(err).startswith(
        f"latentface train: error: {labels}:{lines + 1}: not UTF-8 text (byte 0xe9)"
    )
    assert not runs.exists() or not any(runs.iterdir())  # no run was started by any of these
