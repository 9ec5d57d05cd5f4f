"""The run's wall clock: --wall_budget stops before an epoch that would not fit and keeps the final margin,
--val_every/--val_subset, progress lines at their interval, the summary, and the process-group timeout.

Slow validations and slow steps are injected on the run's own clock (latentface.training.clock's ``time``):
a validation that takes 200 s of that clock costs the test nothing."""

import csv
import datetime
import json
import re
import time

import pytest
import torch

from latentface.loss import MultiBoxLoss
from latentface.train import TrainConfig
from latentface.training import clock, distributed, loop
from latentface.training.distributed import Processes
from tests.helpers import tiny_train_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(synthetic_dataset):
    return synthetic_dataset(8, 4, size=64, rates=(75,), seed=3)  # test_train's dataset: 4 steps per epoch


class RunClock:
    """The clock module's ``time``: real time plus ``offset`` seconds that tests add (a slow validation)."""

    def __init__(self):
        self.offset = 0.0

    def time(self):
        return time.time() + self.offset

    def perf_counter(self):
        return time.perf_counter() + self.offset

    def monotonic(self):
        return time.monotonic() + self.offset


@pytest.fixture
def run_clock(monkeypatch):
    fake = RunClock()
    monkeypatch.setattr(clock, "time", fake)
    started = fake.time()
    monkeypatch.setattr(clock, "process_start", lambda: started)  # the process starts with the test
    return fake


def config(dataset, out, **overrides) -> TrainConfig:
    return tiny_train_config(dataset, out, **{"lr": TrainConfig().lr, **overrides})  # the default lr


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_wall_budget_stops_before_an_epoch_that_would_not_fit_and_keeps_the_margin(
    dataset, tmp_path, monkeypatch, run_clock, capsys
):
    validate = loop._Run._validate

    def slow_validation(self, *args, **kwargs):
        run_clock.offset += 200.0  # each validation takes 200 s of the run's clock
        return validate(self, *args, **kwargs)

    monkeypatch.setattr(loop._Run, "_validate", slow_validation)
    # Deadline 700 - 50 = 650 s. After epoch 2 (about 200 s + real seconds): epoch 2's validation, epoch 3 and
    # its validation need about 400 s: they fit. After epoch 3 (about 400 s): going on would need 400 s more.
    outcome = loop.run(config(dataset, tmp_path, epochs=10, wall_budget=700, final_margin=50, val_every=1))
    err = capsys.readouterr().err
    assert (outcome.stopped, outcome.exit_status) == ("budget", 0)
    assert [r["epoch"] for r in read_metrics(outcome.run_dir)] == ["1.0", "2.0", "3.0"]  # whole epochs only
    assert all(r["val_ap"] != "" for r in read_metrics(outcome.run_dir))
    assert re.search(
        r"wall budget: stopping after epoch 3: going on needs about 0:0[67]:\d\d \(an epoch's training [\d.]+ s, "
        r"validation and checkpoints 0:03:2\d\), 0:0[0-4]:\d\d are left before the final margin of 50.0 s",
        err,
    ), err
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    timing = summary["timing"]
    assert (summary["state"], summary["stopped"], summary["finished"]) == ("stopped", "budget", False)
    assert (summary["epochs_reached"], summary["epochs_planned"]) == (3.0, 10)
    assert 600 <= timing["wall_s"] <= 700 - 50  # three validations, and the margin is left
    assert timing["overhead_s"]["validation"] >= 600 and timing["last_validation_s"] >= 200
    # The epoch it did not start would have run past the margin.
    assert timing["wall_s"] + timing["epoch_training_s"] + timing["last_validation_s"] > 700 - 50
    final = torch.load(outcome.run_dir / "weight_final.pth", weights_only=True)
    assert (final["finished"], final["stopped"], final["epoch"]) == (False, "budget", 3)
    assert f"done, but NOT a finished run: {outcome.run_dir / 'weight_final.pth'}" in err
    assert "summary: 3 of 10 epochs, stopped early: budget" in err and "validation 6" in err


def test_with_val_subset_the_budget_keeps_room_for_the_last_validation_of_the_whole_split(
    dataset, tmp_path, monkeypatch, run_clock, capsys
):
    validate = loop._Run._validate

    def slow_validation(self, *args, **kwargs):
        val, images = validate(self, *args, **kwargs)
        run_clock.offset += 50.0 * val["val_images"]  # 50 s of the run's clock per validated image
        return val, images

    monkeypatch.setattr(loop._Run, "_validate", slow_validation)
    # Subset validations (2 of the 4 images) take 100 s, the whole split 200 s; deadline 600 - 50 = 550 s.
    # After epoch 4 (about 300 s) going on needs 100 + 200 s: the run stops, and its whole validation ends at
    # about 500 s. Predicted from the subset's 100 s it would go on and end its last validation at 600 s.
    cfg = config(dataset, tmp_path, epochs=10, wall_budget=600, final_margin=50, val_subset=2)
    outcome = loop.run(cfg)
    err = capsys.readouterr().err
    assert outcome.stopped == "budget"
    rows = read_metrics(outcome.run_dir)
    assert [(r["epoch"], r["val_images"]) for r in rows] == [("1.0", "2"), ("2.0", "2"), ("3.0", "2"), ("4.0", "4")]
    assert re.search(r"wall budget: stopping after epoch 4: .* validation and checkpoints 0:03:2\d\)", err), err
    timing = json.loads((outcome.run_dir / "summary.json").read_text())["timing"]
    assert 500 <= timing["wall_s"] <= 550 and timing["last_validation_s"] >= 200


def test_inside_an_epoch_the_steps_stop_while_a_step_and_the_validation_still_fit(
    synthetic_dataset, tmp_path, monkeypatch, run_clock, capsys
):
    dataset = synthetic_dataset(16, 4, size=64, rates=(75,), seed=3)  # 8 steps per epoch
    forward = MultiBoxLoss.forward

    def slow_step(self, outputs, targets, anchors, *args, **kwargs):
        if torch.is_grad_enabled():  # a training step takes 100 s of the run's clock
            run_clock.offset += 100.0
        return forward(self, outputs, targets, anchors, *args, **kwargs)

    monkeypatch.setattr(MultiBoxLoss, "forward", slow_step)
    # Deadline 500 - 50 = 450 s: after step 3 (about 300 s) one more step and the
    # validation fit; after step 4 (about 400 s) a fifth step would end past the deadline.
    outcome = loop.run(config(dataset, tmp_path, wall_budget=500, final_margin=50))
    assert outcome.stopped == "budget" and outcome.exit_status == 0
    rows = read_metrics(outcome.run_dir)
    assert [r["epoch"] for r in rows] == ["0.5"] and rows[0]["val_ap"] != "" and rows[0]["val_images"] == "4"
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "--wall_budget 500 s (less its final margin of 50 s) reached after 4 steps"
    assert 400 <= summary["timing"]["wall_s"] <= 450
    assert "done, but NOT a finished run" in capsys.readouterr().err


def test_val_every_and_val_subset_are_recorded_and_the_last_epoch_validates_everything(dataset, tmp_path, capsys):
    outcome = loop.run(config(dataset, tmp_path, epochs=3, val_every=2, val_subset=2))
    rows = read_metrics(outcome.run_dir)
    assert [(r["epoch"], r["val_images"]) for r in rows] == [("1.0", ""), ("2.0", "2"), ("3.0", "4")]
    assert rows[0]["val_ap"] == "" and rows[1]["val_ap"] != "" and rows[2]["val_ap"] != ""
    saved = json.loads((outcome.run_dir / "config.json").read_text())
    assert (saved["val_every"], saved["val_subset"]) == (2, 2)
    assert "val AP" in capsys.readouterr().err.split("epoch 2:")[1].split("\n")[0]


def test_progress_lines_come_at_their_interval_with_a_start_and_an_end_summary(
    dataset, tmp_path, monkeypatch, run_clock, capsys
):
    forward = MultiBoxLoss.forward

    def slow_step(self, outputs, targets, anchors, *args, **kwargs):
        if torch.is_grad_enabled():  # a training step takes 100 s of the run's clock
            run_clock.offset += 100.0
        return forward(self, outputs, targets, anchors, *args, **kwargs)

    monkeypatch.setattr(MultiBoxLoss, "forward", slow_step)
    loop.run(config(dataset, tmp_path, epochs=2, progress_every=250, wall_budget=10_000))
    err = capsys.readouterr().err
    lines = re.findall(r"^epoch \d/2, step \d/4: .*$", err, re.M)
    # Steps end at 100, 200, ... s: lines after steps 1 (100 s), 4 (400 s >= 100 + 250) and 7 (700 s).
    assert [line.split(":")[0] for line in lines] == [
        "epoch 1/2, step 1/4",
        "epoch 1/2, step 4/4",
        "epoch 2/2, step 3/4",
    ]
    assert re.fullmatch(
        r"epoch 1/2, step 1/4: [\d.]+ img/s, elapsed 0:01:4\d, epoch ETA \d+:\d\d:\d\d, wall budget 1% used of 2:46:40",
        lines[0],
    ), lines[0]
    start = err.index("training: epoch 1 of 2 from step 0, 4 steps of 2 x 1 images per epoch; wall budget 2:46:40")
    assert err.index("data: train 8 samples, 12 faces; val 4 samples, 14 faces") < start
    assert err.index("computing latent statistics of") < start < err.index(lines[0])
    assert re.search(
        r"summary: 2 of 2 epochs, all epochs done; best val AP [\d.]+ at epoch [12]; [\d.]+ h of training steps, "
        r"wall 0:1[34]:\d\d \(overhead: set-up",
        err,
    ), err


def test_the_process_group_waits_as_long_as_dist_timeout(monkeypatch):
    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda backend, timeout: seen.update(b=backend, t=timeout)
    )
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    procs = Processes.start("cpu", TrainConfig().dist_timeout)
    assert (procs.world_size, seen) == (2, {"b": "gloo", "t": datetime.timedelta(minutes=60)})
    Processes.start("cpu", 90)
    assert seen["t"] == datetime.timedelta(minutes=90)


def test_the_first_run_of_a_process_counts_from_its_start_and_a_later_one_from_its_own(monkeypatch):
    monkeypatch.setattr(clock, "_first_run", True)
    monkeypatch.setattr(clock, "process_start", lambda: 1000.0)
    assert clock.run_start() == 1000.0  # the CLI's (and the Kaggle kernel's) imports count
    before = time.time()
    assert before <= clock.run_start() <= time.time()  # the bench's second model: not the first one's hours
