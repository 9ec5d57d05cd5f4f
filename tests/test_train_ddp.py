"""DDP under torchrun: two CPU processes (gloo) train one model and end with identical weights."""

import json
import os
import subprocess
import sys

import pytest
import torch

from latentface.model import model_from_checkpoint
from latentface.training import parameters_digest


@pytest.mark.slow
def test_torchrun_two_gloo_processes_end_with_identical_weights(tmp_path, synthetic_dataset):
    data = synthetic_dataset(8, 4, size=64, rates=(75,), seed=3)  # test_train's dataset
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "latentface.train",
        "--dataset_root",
        str(data),
        "--preset",
        "fast",
        "--out_channels",
        "16",
        "--batch_size",
        "2",
        "--epochs",
        "1",
        "--lr",
        "0.01",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "runs"),
        "--name",
        "ddp",
        "--no_progress",
        "--no_wandb",
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
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
