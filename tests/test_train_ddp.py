"""DDP under torchrun: two CPU processes (gloo) train one model and end with identical weights; two
torchrun launchers of two processes each simulate a two-node run (c10d rendezvous on 127.0.0.1)."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from latentface.model import model_from_checkpoint
from latentface.training import parameters_digest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}


def train_args(data, out, epochs: int) -> list[str]:
    """`latentface train` flags of a tiny run on CPU processes (rank 0 writes ``out/ddp``)."""
    return [
        *("--dataset_root", str(data), "--preset", "fast", "--out_channels", "16", "--batch_size", "2"),
        *("--epochs", str(epochs), "--lr", "0.01", "--workers", "0", "--device", "cpu", "--out", str(out)),
        *("--name", "ddp", "--no_progress", "--no_wandb"),
    ]


@pytest.mark.slow
def test_torchrun_two_gloo_processes_end_with_identical_weights(tmp_path, synthetic_dataset):
    data = synthetic_dataset(8, 4, size=64, rates=(75,), seed=3)  # test_train's dataset
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "latentface.train", *train_args(data, tmp_path / "runs", epochs=1)]
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "process 1/2" in proc.stderr and "process 2/2" not in proc.stderr  # rank 0 alone logs

    run_dir = tmp_path / "runs" / "ddp"
    ranks = json.loads((run_dir / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and ranks["identical"] is True
    rank0, rank1 = ranks["parameters_sha256"]
    assert rank0 == rank1
    model, final = model_from_checkpoint(run_dir / "weight_final.pth")
    assert parameters_digest(model) == rank0  # what rank 0 saved is what both ranks hold
    # 8 images over 2 processes at batch 2: 2 steps, each on 4 images; the optimizer did move.
    last = torch.load(run_dir / "last.pth", weights_only=True)
    assert final["step"] == last["step"] == 2 and last["nonfinite_steps"] == 0
    assert any(s["momentum_buffer"].abs().sum() > 0 for s in last["optimizer"]["state"].values())


@pytest.mark.slow
def test_two_nodes_of_two_processes_end_with_identical_weights_and_rank_0_alone_writes(tmp_path, synthetic_dataset):
    data = synthetic_dataset(8, 4, size=64, rates=(75,), seed=3)
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = [tmp_path / "node_a", tmp_path / "node_b"]
    launchers = []
    for node in nodes:  # as on two machines: each launcher in its own folder, --out relative to it
        node.mkdir()
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "2"]
        command += ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "two-nodes"]
        command += ["-m", "latentface.train", *train_args(data, "runs", epochs=2)]
        launchers.append(subprocess.Popen(command, cwd=node, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = [p.communicate(timeout=600) for p in launchers]
    for p, (out, err) in zip(launchers, results):
        assert p.returncode == 0, out.decode()[-2000:] + err.decode()[-4000:]
    logs = [err.decode() for _, err in results]
    assert sum("process 1/4" in log for log in logs) == 1  # rank 0 alone logs ...
    assert not any(f"process {r}/4" in log for log in logs for r in (2, 3, 4))
    written = [node for node in nodes if (node / "runs").exists()]
    assert len(written) == 1  # ... and writes: the other node's folder stays empty
    assert not any((node / "runs").exists() for node in nodes if node not in written)
    run_dir = written[0] / "runs" / "ddp"
    ranks = json.loads((run_dir / "ranks.json").read_text())
    assert ranks["world_size"] == 4 and ranks["identical"] is True and len(set(ranks["parameters_sha256"])) == 1
    model, final = model_from_checkpoint(run_dir / "weight_final.pth")
    assert parameters_digest(model) == ranks["parameters_sha256"][0]
    # 8 images over 4 processes at batch 2: one step of 8 images per epoch, 2 epochs.
    assert final["step"] == 2 and final["finished"] is True
    assert json.loads((run_dir / "summary.json").read_text())["state"] == "finished"


@pytest.mark.slow
def test_torchrun_with_a_teacher_keeps_model_and_adapters_identical_on_both_ranks(tmp_path, synthetic_dataset):
    from latentface.train import TrainConfig, train

    data = synthetic_dataset(8, 4, size=64, rates=(75,), seed=3)
    teacher = train(
        TrainConfig(
            dataset_root=str(data), input="rgb", model="resnet18", out_channels=16, batch_size=2, epochs=1,
            max_steps=1, workers=0, device="cpu", out=str(tmp_path / "t"), name="rgb", no_wandb=True, progress=False,
        )
    )  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "latentface.train", *train_args(data, tmp_path / "runs", epochs=1)]
    command += ["--teacher", str(teacher / "weight_final.pth")]
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "distillation: teacher" in proc.stderr
    ranks = json.loads((tmp_path / "runs" / "ddp" / "ranks.json").read_text())
    assert ranks["identical"] is True and len(set(ranks["parameters_sha256"])) == 1
    assert len(ranks["adapters_sha256"]) == 2 and len(set(ranks["adapters_sha256"])) == 1
    last = torch.load(tmp_path / "runs" / "ddp" / "last.pth", weights_only=True)
    assert last["distiller"]["adapters.C1.weight"].abs().sum() > 0
