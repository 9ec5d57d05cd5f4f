"""Training: steps reduce the loss, checkpoints, exact resume after SIGTERM, the non-finite guard, bad input."""

import csv
import json
import math
import os
import signal

import pytest
import torch

from latentface.anchors import get_layout
from latentface.checkpoint import FORMAT_VERSION, CheckpointError, RunDir, save_checkpoint
from latentface.cli import build_parser, run_command
from latentface.cli.train import config_from_args
from latentface.inference import Detector
from latentface.loss import MultiBoxLoss, match_anchors, match_anchors_adaptive
from latentface.model import build_model, model_from_checkpoint
from latentface.train import TrainConfig, TrainingError, train
from latentface.training.config import read_config_file
from latentface.training.loop import warmup_cosine
from latentface.util.device import DeviceError
from tests.helpers import tiny_train_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(synthetic_dataset):
    """8 training and 4 validation images of 64x64 pixels: latents [256, 4, 4]."""
    return synthetic_dataset(8, 4, size=64, rates=(75,), seed=3)


config = tiny_train_config


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


class TrainingLossHook:
    """Wraps MultiBoxLoss.forward; ``action(call_number, losses)`` runs on every training-time call."""

    def __init__(self, monkeypatch, action):
        self.calls = 0
        original = MultiBoxLoss.forward

        def forward(loss_self, outputs, targets, anchors, *args, **kwargs):
            losses = original(loss_self, outputs, targets, anchors, *args, **kwargs)
            if torch.is_grad_enabled():  # training, not validation
                self.calls += 1
                losses = action(self.calls, losses) or losses
            return losses

        monkeypatch.setattr(MultiBoxLoss, "forward", forward)


def test_steps_reduce_loss_and_write_loadable_checkpoints(dataset, tmp_path):
    # One full-batch step per epoch: each epoch's train loss is the loss of the weights before that step.
    run_dir = train(config(dataset, tmp_path, batch_size=8, epochs=4, lr=0.03, warmup=0, augment=False, val_every=100))
    rows = read_metrics(run_dir)
    assert [float(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    losses = [float(r["train_total"]) for r in rows]
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.95 * losses[0], losses
    assert all(r["val_ap"] == "" for r in rows[:-1]) and 0 <= float(rows[-1]["val_ap"]) <= 1  # validated at the end

    names = {p.name for p in run_dir.iterdir()}
    assert {
        "config.json",
        "stats.json",
        "last.pth",
        "best.pth",
        "weight_final.pth",
        "metrics.csv",
        "curves.png",
        *(f"epoch_{e:03d}.pth" for e in range(1, 5)),
    } <= names
    payload = torch.load(run_dir / "last.pth", weights_only=True)
    assert {
        "model",
        "config",
        "epoch",
        "step",
        "optimizer",
        "scheduler",
        "scaler",
        "rng",
        "train_config",
        "metrics",
    } <= set(payload)
    assert (payload["epoch"], payload["epoch_step"], payload["step"]) == (4, 0, 4)
    assert payload["config"] == dict(
        kind="latent",
        backbone="resnet18",
        bridge="codec",
        out_channels=16,
        in_channels=256,
        anchors=get_layout("default").to_dict(),
        blocks=1,
        light_p2=True,
    )  # "fast", 16 wide, the anchor layout written out
    assert payload["format_version"] == FORMAT_VERSION
    files = RunDir(run_dir)
    assert (files.last, files.best, files.final, files.metrics, files.config, files.epoch(4)) == (
        run_dir / "last.pth",
        run_dir / "best.pth",
        run_dir / "weight_final.pth",
        run_dir / "metrics.csv",
        run_dir / "config.json",
        run_dir / "epoch_004.pth",
    )
    assert files.epochs() == [run_dir / f"epoch_{e:03d}.pth" for e in range(1, 5)]
    # The weights-only checkpoints rebuild the model with no architecture flags and detect.
    model, final = model_from_checkpoint(run_dir / "weight_final.pth")
    assert "optimizer" not in final and final["step"] == 4
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), payload["model"].values()))
    stats = json.loads((run_dir / "stats.json").read_text())
    assert torch.allclose(model.input_std, torch.tensor(stats["std"]))
    dets = Detector.from_checkpoint(run_dir / "best.pth", device="cpu")(torch.zeros(256, 4, 4))
    assert dets[0]["boxes"].shape[1] == 4
    # config.json holds the resolved architecture and reads back as a --config file.
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["model"], saved["bridge"], saved["out_channels"], saved["resume"]) == ("resnet18", "codec", 16, None)
    args = build_parser(["train"]).parse_args(["train", "--config", str(run_dir / "config.json")])
    assert config_from_args(args) == TrainConfig(**saved)


def test_adaptive_matching_leaves_no_face_without_an_anchor_and_is_recorded(dataset, tmp_path, monkeypatch):
    levels = get_layout("default").levels_of(64, 64)  # the 64 x 64 images, uncropped
    unmatched = {"iou": 0, "adaptive": 0}  # faces with no positive anchor, over the training batches
    original = MultiBoxLoss.forward

    def forward(loss_self, outputs, targets, anchors, *args, matched=None, **kwargs):
        if torch.is_grad_enabled():
            for t in targets:
                for name, match in (("iou", match_anchors), ("adaptive", match_anchors_adaptive)):
                    faces = match(t["boxes"], anchors, levels) if name == "adaptive" else match(t["boxes"], anchors)
                    unmatched[name] += len(t["boxes"]) - len(faces[faces >= 0].unique())
            adaptive = MultiBoxLoss(matching="adaptive").targets(targets, anchors, levels)[0]
            assert loss_self.matching == "adaptive" and torch.equal(matched[0], adaptive)  # the loss used it
        return original(loss_self, outputs, targets, anchors, *args, matched=matched, **kwargs)

    monkeypatch.setattr(MultiBoxLoss, "forward", forward)
    run_dir = train(config(dataset, tmp_path, epochs=1, matching="adaptive", augment=False, val_every=100))
    assert unmatched["iou"] > 0 and unmatched["adaptive"] == 0, unmatched  # faces under the 0.2 floor
    assert json.loads((run_dir / "config.json").read_text())["matching"] == "adaptive"
    with pytest.raises(TrainingError, match=r"--matching must be one of \['iou', 'adaptive'\], got 'atss'"):
        TrainConfig(matching="atss").validate()


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted_run(dataset, tmp_path, monkeypatch):
    # 8 images, batch 2: 4 steps per epoch, with flip + crop augmentation.
    uninterrupted = train(config(dataset, tmp_path, name="a", max_steps=6))

    def sigterm_at_step_5(call, losses):
        if call == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    hook = TrainingLossHook(monkeypatch, sigterm_at_step_5)
    stopped = train(config(dataset, tmp_path, name="b"))
    assert hook.calls == 5  # finished the step in progress, then stopped
    saved = torch.load(stopped / "last.pth", weights_only=True)
    assert (saved["epoch"], saved["epoch_step"], saved["step"]) == (1, 1, 5)  # epoch 2, one step in
    assert not (stopped / "weight_final.pth").exists() and len(read_metrics(stopped)) == 1
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored
    monkeypatch.undo()

    resumed = train(TrainConfig(resume=str(stopped), max_steps=6, progress=False))
    assert resumed == stopped
    a = torch.load(uninterrupted / "last.pth", weights_only=True)
    b = torch.load(resumed / "last.pth", weights_only=True)
    assert (b["epoch"], b["epoch_step"], b["step"]) == (1, 2, 6)
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    momentum_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert len(momentum_a) == len(momentum_b) > 0
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b))
    assert a["scheduler"] == b["scheduler"]
    assert (
        [r["epoch"] for r in read_metrics(resumed)]
        == [r["epoch"] for r in read_metrics(uninterrupted)]
        == ["1.0", "1.5"]
    )


def test_ctrl_c_finishes_the_step_and_leaves_a_resumable_checkpoint(dataset, tmp_path, monkeypatch):
    TrainingLossHook(monkeypatch, lambda call, losses: os.kill(os.getpid(), signal.SIGINT) if call == 2 else None)
    run_dir = train(config(dataset, tmp_path, epochs=1))
    saved = torch.load(run_dir / "last.pth", weights_only=True)
    assert (saved["epoch"], saved["epoch_step"], saved["step"]) == (0, 2, 2) and saved["optimizer"]["state"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nonfinite_loss_is_skipped_and_counted(dataset, tmp_path, monkeypatch):
    def nan_at_step_2(call, losses):
        if call == 2:
            return {**losses, "total": losses["total"] * float("nan")}

    TrainingLossHook(monkeypatch, nan_at_step_2)
    run_dir = train(config(dataset, tmp_path, epochs=1, max_steps=3))
    payload = torch.load(run_dir / "last.pth", weights_only=True)
    assert payload["nonfinite_steps"] == 1 and payload["step"] == 3
    assert all(torch.isfinite(v).all() for v in payload["model"].values() if v.is_floating_point())
    assert read_metrics(run_dir)[-1]["nonfinite_steps"] == "1"


def test_persistent_nonfinite_loss_stops_with_a_clear_message(dataset, tmp_path, monkeypatch):
    TrainingLossHook(monkeypatch, lambda call, losses: {**losses, "total": losses["total"] + float("inf")})
    with pytest.raises(TrainingError, match=r"3 consecutive steps had a non-finite loss.*Lower --lr \(now 0.01\)"):
        train(config(dataset, tmp_path, max_nonfinite=2))
    saved = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert saved["nonfinite_steps"] == 3 and saved["step"] == 3


def test_time_budget_and_max_steps_stop_cleanly_with_final_weights(dataset, tmp_path):
    run_dir = train(config(dataset, tmp_path, time_budget=1e-6))
    payload = torch.load(run_dir / "weight_final.pth", weights_only=True)
    assert payload["step"] == 1 and payload["epoch_step"] == 1
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["0.25"] and rows[0]["val_ap"] != ""


def test_corrupt_or_wrong_architecture_weight_is_named(dataset, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=str(corrupt)):
        train(config(dataset, tmp_path / "a", weight=str(corrupt)))
    other = build_model(TrainConfig(preset="fast", out_channels=32).model_config())
    wrong = save_checkpoint({"model": other.state_dict(), "config": other.config}, tmp_path / "wide.pth")
    with pytest.raises(
        CheckpointError,
        match=rf"{wrong}: a different model architecture \(out_channels: 32 in the "
        r"checkpoint, 16 asked for\)",
    ):
        train(config(dataset, tmp_path / "b", weight=str(wrong)))
    # The command line turns it into one line and exit status 2.
    argv = [
        "train",
        "--dataset_root",
        str(dataset),
        "--preset",
        "fast",
        "--out-channels",
        "16",
        "--batch_size",
        "2",
        "--weight",
        str(corrupt),
        "--out",
        str(tmp_path / "c"),
        "--no_wandb",
        "--no-progress",
    ]
    assert run_command("train", build_parser(argv).parse_args(argv)) == 2
    err = capsys.readouterr().err
    assert f"latentface train: error: {corrupt}: not a readable latentface checkpoint" in err and "Traceback" not in err


def test_missing_dataset_and_architecture_change_on_resume_are_clear(dataset, tmp_path):
    with pytest.raises(TrainingError, match=r"dataset split not found: .*nowhere/train"):
        train(config(tmp_path / "nowhere", tmp_path))
    run_dir = train(config(dataset, tmp_path, max_steps=1, val_every=100))
    with pytest.raises(
        CheckpointError,
        match=r"last.pth: a different model architecture \(backbone: 'resnet18' in "
        r"the checkpoint, 'resnet34' asked for\)",
    ):
        train(TrainConfig(resume=str(run_dir), model="resnet34"))  # the run has the "fast" preset's resnet18
    with pytest.raises(CheckpointError, match="holds weights but no training state"):
        train(TrainConfig(resume=str(run_dir / "weight_final.pth")))
    with pytest.raises(TrainingError, match="already holds a run: continue it with --resume"):
        train(config(dataset, tmp_path))


def test_flags_take_both_spellings_and_override_the_config_file(tmp_path):
    file = tmp_path / "cfg.json"
    file.write_text(json.dumps({"dataset-root": "from/file", "batch_size": 7, "lr": 0.5, "epochs": 3}))
    argv = [
        "train",
        "--config",
        str(file),
        "--batch-size",
        "3",
        "--latent_type",
        "latent_50.npy",
        "--no-augment",
        "--no_wandb",
        "--freeze",
        "--weight",
        "w.pth",
        "--model",
        "resnet34",
        "--device",
        "cpu",
    ]
    cfg = config_from_args(build_parser(argv).parse_args(argv))
    assert (cfg.dataset_root, cfg.batch_size, cfg.lr, cfg.epochs) == ("from/file", 3, 0.5, 3)
    assert (cfg.latent_type, cfg.augment, cfg.no_wandb, cfg.freeze, cfg.weight, cfg.model, cfg.device) == (
        "latent_50.npy",
        False,
        True,
        True,
        "w.pth",
        "resnet34",
        "cpu",
    )
    assert cfg.momentum == 0.9 and cfg.weight_decay == 5e-4 and cfg.bridge is None  # the preset's bridge
    file.write_text(json.dumps({"learning_rate": 1}))
    with pytest.raises(TrainingError, match=rf"{file}: unknown setting 'learning_rate'"):
        read_config_file(file)
    with pytest.raises(TrainingError, match="--batch_size must be at least 1"):
        TrainConfig(batch_size=0).validate()
    with pytest.raises(
        TrainingError, match=r"--anchors must be one of \['default', 'six', 'three_level'\], got 'nine'"
    ):
        TrainConfig(anchors="nine").validate()


def test_a_device_that_does_not_exist_is_one_clear_line(dataset, tmp_path, capsys):
    with pytest.raises(DeviceError, match="--device nowhere: not a device; use auto, cpu, cuda or cuda:N"):
        train(config(dataset, tmp_path, device="nowhere"))
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="--device cuda: CUDA is not available here; use --device cpu"):
            train(config(dataset, tmp_path, device="cuda"))
    argv = ["train", "--dataset_root", str(dataset), "--device", "nowhere", "--no_wandb"]
    assert run_command("train", build_parser(argv).parse_args(argv)) == 2
    err = capsys.readouterr().err
    assert "latentface train: error: --device nowhere: not a device" in err and "Traceback" not in err


def test_warmup_then_cosine_schedule():
    f = warmup_cosine(total_steps=10, warmup_steps=2, final=0.01)
    assert [f(0), f(1), f(2)] == [0.5, 1.0, 1.0]
    assert f(6) == pytest.approx(0.01 + 0.99 * 0.5)  # half-way through the decay
    assert f(10) == pytest.approx(0.01) and f(50) == pytest.approx(0.01)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.1 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi / 8)))])


def test_float16_latents_travel_as_float16_and_train_exactly_as_float32(dataset, tmp_path, monkeypatch):
    from latentface.data import dataset as dataset_module
    from latentface.training import data as training_data

    train_set, val_set = training_data.build_datasets(config(dataset, tmp_path))
    assert train_set.dtype == val_set.dtype == torch.float16  # the synthetic files are float16
    loader, _, _ = training_data.build_loaders(train_set, val_set, config(dataset, tmp_path), 0, 1, False)
    latents, _ = next(iter(loader))
    assert latents.dtype == torch.float16 and latents.shape[:2] == (2, 256)

    half = train(config(dataset, tmp_path, name="half", max_steps=3))
    monkeypatch.setattr(dataset_module, "transport_dtype", lambda ds: torch.float32)
    full = train(config(dataset, tmp_path, name="full", max_steps=3))
    a, b = (torch.load(run / "last.pth", weights_only=True)["model"] for run in (half, full))
    assert all(torch.equal(a[name], b[name]) for name in a)  # the cast on the device is exact
