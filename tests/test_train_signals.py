"""Stop signals: SIGTERM to the whole process group (what schedulers send) stops `latentface train` as cleanly
as one to the main process -- loader workers ignore it, last.pth is saved and resumes, exit status 128 + 15 --
and a signal during validation abandons it without losing the epoch's training."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from latentface.loss import MultiBoxLoss
from latentface.train import TrainConfig
from latentface.training.distributed import StopSignals
from latentface.training.loop import run
from tests.helpers import tiny_train_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(synthetic_dataset):
    return synthetic_dataset(8, 4, size=64, rates=(75,), seed=3)  # test_train's dataset


@pytest.mark.slow  # a subprocess of its own (about 20 s on 2 cores); CI's make test runs it
def test_sigterm_to_the_process_group_saves_last_pth_and_exits_143(dataset, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "latentface.cli", "train", "--dataset_root", str(dataset), "--preset", "fast"]
    command += ["--out_channels", "16", "--batch_size", "2", "--epochs", "1000", "--workers", "2", "--device", "cpu"]
    command += ["--out", str(tmp_path), "--name", "run", "--no_wandb", "--no_progress", "--progress_every", "0.01"]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        # A session of its own: the signal goes to its process group, loader workers included.
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while "epoch 1/1000, step 1/4" not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    stderr = log.read_text()
    assert proc.returncode == 128 + signal.SIGTERM == 143, stderr
    assert "Traceback" not in stderr and "killed by signal" not in stderr, stderr
    assert "SIGTERM received: finishing this step" in stderr and "stopped by SIGTERM at epoch" in stderr
    assert out.decode().strip() == str(tmp_path / "run")
    saved = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["state"], summary["stopped"], summary["exit_status"]) == ("stopped", "signal", 143)
    assert summary["steps"] == saved["step"] >= 1 and summary["continue_with"] == f"--resume {tmp_path / 'run'}"
    assert not (tmp_path / "run" / "weight_final.pth").exists()
    # It resumes where it stopped.
    outcome = run(TrainConfig(resume=str(tmp_path / "run"), max_steps=saved["step"] + 1, workers=0, progress=False))
    assert outcome.exit_status == 0 and outcome.stopped == "max_steps"
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=True)["step"] == saved["step"] + 1


def test_a_signal_during_validation_abandons_it_and_loses_no_training(dataset, tmp_path, monkeypatch):
    original = MultiBoxLoss.forward

    def forward(self, outputs, targets, anchors, *args, **kwargs):
        if not torch.is_grad_enabled():  # validation
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, outputs, targets, anchors, *args, **kwargs)

    monkeypatch.setattr(MultiBoxLoss, "forward", forward)
    config = tiny_train_config(dataset, tmp_path, lr=TrainConfig.lr)  # batch 2: 4 validation images in 2 batches
    outcome = run(config)
    assert (outcome.stopped, outcome.exit_status) == ("signal", 130)
    saved = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert (saved["epoch"], saved["epoch_step"], saved["step"]) == (0, 4, 4) and saved["metrics"] == []
    assert not (tmp_path / "run" / "metrics.csv").exists()
    monkeypatch.undo()
    resumed = run(TrainConfig(resume=str(tmp_path / "run"), progress=False))
    assert resumed.exit_status == 0 and resumed.stopped is None
    final = torch.load(tmp_path / "run" / "weight_final.pth", weights_only=True)
    assert [row["epoch"] for row in final["metrics"]] == [1.0, 2.0] and final["step"] == 8
    assert (final["finished"], final["stopped"]) == (True, None)


@pytest.mark.slow
def test_sigterm_to_a_torchrun_group_reaches_each_rank_twice_and_still_saves(dataset, tmp_path):
    """Under torchrun a SIGTERM to the group reaches each rank directly and again forwarded by the launcher;
    rank 0 still saves last.pth and summary.json. (torchrun itself ends with its own SignalException traceback.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "latentface.train", "--dataset_root", str(dataset), "--preset", "fast", "--out_channels", "16"]
    command += ["--batch_size", "2", "--epochs", "1000", "--workers", "1", "--device", "cpu", "--out", str(tmp_path)]
    command += ["--name", "run", "--no_wandb", "--no_progress", "--progress_every", "0.01"]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while "epoch 1/1000, step 1/2" not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    stderr = log.read_text()
    assert "stopped by SIGTERM at epoch" in stderr, stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["state"], summary["stopped"], summary["exit_status"]) == ("stopped", "signal", 143)
    saved = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert saved["step"] == summary["steps"] >= 1


def test_a_repeated_sigterm_is_absorbed_and_a_second_ctrl_c_interrupts():
    logged = []
    with StopSignals(logged.append) as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. torchrun forwarding the group's signal: still stopping cleanly
        assert signals.received == "SIGTERM" and signals.signum == 15 and len(logged) == 1
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after a SIGTERM still asks first ...
        assert signals.received == "SIGINT" and "press Ctrl-C again to stop at once" in logged[-1]
        with pytest.raises(KeyboardInterrupt):  # ... and a second Ctrl-C interrupts at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
