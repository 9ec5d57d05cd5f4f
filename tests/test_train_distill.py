"""Training a latent student with an RGB teacher: the terms reach the loss, the run resumes exactly, and
nothing of the teacher or its adapters enters the student's checkpoints."""

import json

import onnx
import pytest
import torch

from latentface.cli import main
from latentface.inference.detector import Detector
from latentface.tools.bench.measure import macs, model_input
from latentface.train import TrainConfig, TrainingError, train
from latentface.training.distillation import TeacherError
from tests.helpers import tiny_train_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(synthetic_dataset):
    return synthetic_dataset(8, 4, size=64, rates=(75,), seed=3)


_config = tiny_train_config


@pytest.fixture(scope="module")
def teacher(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    run = train(_config(dataset, out, input="rgb", preset=None, model="resnet18", name="rgb", max_steps=2))
    return run / "weight_final.pth"


def test_a_run_with_a_teacher_resumes_exactly_and_its_checkpoints_hold_only_the_student(dataset, teacher, tmp_path):
    whole = train(_config(dataset, tmp_path, name="whole", teacher=str(teacher), max_steps=6))
    half = train(_config(dataset, tmp_path, name="half", teacher=str(teacher), max_steps=3))
    resumed = train(TrainConfig(resume=str(half), max_steps=6, progress=False))
    a = torch.load(whole / "last.pth", weights_only=True)
    b = torch.load(resumed / "last.pth", weights_only=True)
    assert b["step"] == 6 and b["train_config"]["teacher"] == str(teacher)  # the path is resumable state
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    for name, value in a["distiller"].items():  # the adapters resume too
        assert torch.equal(value, b["distiller"][name]), name
    assert sorted(a["distiller"]) == [f"adapters.C{i}.{p}" for i in (1, 2) for p in ("bias", "weight")]

    plain = train(_config(dataset, tmp_path, name="plain", max_steps=6))
    final = torch.load(whole / "weight_final.pth", weights_only=True)
    without = torch.load(plain / "weight_final.pth", weights_only=True)
    assert "distiller" not in final and final["config"] == without["config"]
    assert final["bridge_init"] == without["bridge_init"] == "dct synthesis"  # the codec bridge starts alike
    assert {k: v.shape for k, v in final["model"].items()} == {k: v.shape for k, v in without["model"].items()}
    assert not torch.equal(final["model"]["bridge.decode.weight"], without["model"]["bridge.decode.weight"])

    summary = json.loads((whole / "summary.json").read_text())
    assert summary["distillation"]["teacher"] == str(teacher)
    assert summary["distillation"]["train_samples_without_image"] == 0
    assert summary["distillation"]["teacher_forward_s"] > 0
    assert json.loads((plain / "summary.json").read_text())["distillation"] is None


def test_teacher_misuse_is_one_line_naming_it(dataset, teacher, tmp_path, capsys):
    base = ["train", "--dataset_root", str(dataset), "--preset", "fast", "--out_channels", "16", "--epochs", "1"]
    base += ["--workers", "0", "--no_wandb", "--out", str(tmp_path), "--batch_size", "2", "--no_progress"]
    assert main([*base, "--teacher", str(tmp_path / "none.pth")]) == 2
    assert f"latentface train: error: --teacher {tmp_path / 'none.pth'}: no such file" in capsys.readouterr().err
    assert main([*base, "--teacher", str(teacher), "--anchors", "six", "--name", "six"]) == 2
    err = capsys.readouterr().err
    assert f"{teacher}: its anchor layout differs from the student's" in err and "Traceback" not in err
    assert main([*base, "--teacher_images", str(tmp_path)]) == 2
    assert "--teacher_images gives the teacher (or --reconstruct) its images" in capsys.readouterr().err
    with pytest.raises(TeacherError, match="a latent checkpoint; the teacher must be an RGB RetinaFace"):
        latent = train(_config(dataset, tmp_path, name="latent", max_steps=1)) / "weight_final.pth"
        train(_config(dataset, tmp_path, name="taught", teacher=str(latent), max_steps=1))


def test_a_teacher_with_zero_weights_trains_exactly_as_no_teacher(dataset, teacher, tmp_path):
    """The teacher's images and terms change nothing else: not the data order, the augmentation or the step."""
    plain = train(_config(dataset, tmp_path, name="plain", max_steps=4))
    silent = train(
        _config(
            dataset, tmp_path, name="silent", max_steps=4, teacher=str(teacher), distill_feature=0.0, distill_soft=0.0
        )
    )
    a = torch.load(plain / "weight_final.pth", weights_only=True)["model"]
    b = torch.load(silent / "weight_final.pth", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_that_rebuilds_the_image_resumes_exactly_and_keeps_its_head_out_of_the_student(dataset, tmp_path):
    whole = train(_config(dataset, tmp_path, name="whole", reconstruct=0.5, max_steps=6))
    half = train(_config(dataset, tmp_path, name="half", reconstruct=0.5, max_steps=3))
    resumed = train(TrainConfig(resume=str(half), max_steps=6, progress=False))
    a = torch.load(whole / "last.pth", weights_only=True)
    b = torch.load(resumed / "last.pth", weights_only=True)
    # fast preset: resnet18's C1 has 64 channels -> 3 x 4 x 4 before the PixelShuffle(4); no adapters
    assert {k: tuple(v.shape) for k, v in a["distiller"].items()} == {
        "reconstruction.0.weight": (48, 64, 1, 1),
        "reconstruction.0.bias": (48,),
    }
    for name, value in [*a["model"].items(), *a["distiller"].items()]:
        assert torch.equal(value, {**b["model"], **b["distiller"]}[name]), name
    plain = train(_config(dataset, tmp_path, name="plain", max_steps=6))
    final = torch.load(whole / "weight_final.pth", weights_only=True)
    without = torch.load(plain / "weight_final.pth", weights_only=True)
    assert "distiller" not in final and final["model"].keys() == without["model"].keys()
    assert final["bridge_init"] == without["bridge_init"] == "dct synthesis"
    assert not torch.equal(final["model"]["bridge.decode.weight"], without["model"]["bridge.decode.weight"])
    summary = json.loads((whole / "summary.json").read_text())["distillation"]
    assert (summary["teacher"], summary["reconstruct"], summary["train_samples_without_image"]) == (None, 0.5, 0)
    with pytest.raises(TrainingError, match="--reconstruct must be >= 0"):
        TrainConfig(reconstruct=-1.0).validate()
    with pytest.raises(TrainingError, match="--reconstruct rebuilds the image from a latent model's bridge"):
        TrainConfig(input="rgb", reconstruct=1.0).validate()


def test_the_exported_graph_and_the_macs_are_those_of_a_run_without_teacher_or_reconstruction(
    dataset, teacher, tmp_path
):
    """The training-only modules leave no trace: the same ONNX nodes and weights' shapes, the same MACs."""
    taught = train(_config(dataset, tmp_path, name="taught", teacher=str(teacher), reconstruct=0.5, max_steps=2))
    plain = train(_config(dataset, tmp_path, name="plain", max_steps=2))
    graphs, costs = [], []
    for run in (taught, plain):
        path = tmp_path / f"{run.name}.onnx"
        args = ["export", "--weight", str(run / "weight_final.pth"), "--output", str(path), "--no_check"]
        assert main([*args, "--latent_size", "4", "4"]) == 0
        graph = onnx.load(str(path)).graph
        graphs.append(
            (
                [(n.op_type, list(n.input), list(n.output)) for n in graph.node],
                sorted((t.name, tuple(t.dims)) for t in graph.initializer),
            )
        )
        model = Detector.from_checkpoint(run / "weight_final.pth", device="cpu").model.eval()
        costs.append(macs(model, model_input(model, 640, 1, torch.device("cpu"))))
    assert graphs[0] == graphs[1] and len(graphs[0][0]) > 50
    assert costs[0] == costs[1] > 0
