"""The sizes of a benchmark run (:class:`Profile`) and the three named ones (:data:`PROFILES`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from latentface.training.recipes import RECIPES

SECTIONS = ("cost", "train", "accuracy", "rates", "codecs")
RESULTS_FILE = "benchmarks.json"
REPORT_FILE = "BENCHMARKS.md"
BASELINE = "rgb_r50"
#: The budgets the targets measure against (multiply-adds at 640x640): the bridge, the fast preset.
BRIDGE_BUDGET = 1.6e9
FAST_BUDGET = 10e9
#: The codec study's longer-schedule levers (both inputs, the same seed): row-name ending -> times its epochs.
LONG_SCHEDULES = {"long": 2, "longer": 4, "longest": 8}


#: The codec study a 2-core CPU can run in a few hours: the target rows over three seeds on both codecs.
CPU_STUDY: dict[str, Any] = dict(
    codecs=("dct", "learned"),
    seeds=(0, 1, 2),
    size=192,
    n_train=600,
    n_val=100,
    epochs=3,
    batch_size=8,
    lr=0.02,
    rate=75,
    anchors="six",
    other_anchors="default",
    bridges=("bilinear", "context", "codec", "pixelshuffle", "context_dw"),
    frontier=(("resnet18", 128), ("resnet50", 64), ("resnet50", 128)),
)


@dataclass(frozen=True)
class Profile:
    """The sizes of one benchmark run: cost at ``image`` pixels, accuracy on a synthetic set."""

    name: str
    # cost: multiply-adds at ``image``; activations and latency at ``measure_image``
    image: int = 640
    measure_image: int = 640
    batches: tuple[int, ...] = (1, 8)
    repeats: int = 3
    big_batch_repeats: int = 2
    warmup: int = 1
    latency_rows: tuple[str, ...] | None = (
        "rgb_r50",
        "rgb_r50_3level",
        "latent_r50_seed",
        "latent_r50_default",
        "rgb_r18",
        "latent_r18",
        "fast",
    )
    big_batch_rows: tuple[str, ...] = ()
    # training cost (at ``train_image``, ``train_batch``)
    train_image: int = 256
    train_batch: int = 8
    train_backbone: str = "resnet18"
    train_repeats: int = 3
    loading_seconds: float = 10.0
    loading_batch: int = 8
    # accuracy
    data_size: int = 256
    n_train: int = 300
    n_val: int = 60
    backbone: str = "resnet18"
    out_channels: int = 64
    epochs: int = 4
    batch_size: int = 16
    lr: float = 1e-2
    seed: int = 0
    rates: tuple[int, ...] = (12, 25, 50, 75, 100)
    main_rate: int = 75
    bridges: tuple[str, ...] = ("bilinear", "context", "codec")
    extra_variants: tuple[str, ...] = ("fast",)
    # the codec study (section ``codecs``): its own data and schedule, see latentface.tools.bench.codecs
    study: dict[str, Any] = field(default_factory=lambda: dict(CPU_STUDY))

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values (what a results file records next to the numbers they produced)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def recipe_schedule(name: str) -> dict[str, Any]:
    """The synthetic data and optimiser schedule of a training recipe, as :class:`Profile` fields."""
    recipe = RECIPES[name]
    return dict(
        data_size=recipe.size,
        n_train=recipe.n_train,
        n_val=recipe.n_val,
        seed=recipe.seed,
        epochs=recipe.train["epochs"],
        batch_size=recipe.train["batch_size"],
        lr=recipe.train["lr"],
    )


PROFILES = {
    # What a 2-core CPU can do in about an hour: cost at full size, accuracy on the demo's data and
    # schedule (taken from the demo's recipe, so that the two cannot drift apart).
    "cpu": Profile("cpu", repeats=7, extra_variants=("fast", "six", "rgb_six"), **recipe_schedule("demo")),
    # The study as designed: needs a GPU (latentface bench --full --device cuda).
    "full": Profile(
        "full",
        measure_image=640,
        repeats=20,
        big_batch_repeats=20,
        warmup=3,
        latency_rows=None,
        train_image=640,
        train_backbone="resnet50",
        big_batch_rows=("rgb_r50", "rgb_r50_3level", "latent_r50_seed", "latent_r50_default", "fast"),
        train_batch=8,
        train_repeats=10,
        data_size=640,
        n_train=3000,
        n_val=500,
        backbone="resnet50",
        out_channels=256,
        epochs=30,
        batch_size=16,
        lr=1e-2,
        bridges=("bilinear", "context", "codec", "pixelshuffle", "context_dw"),
        extra_variants=("fast", "six", "rgb_six", "2x"),
        study=dict(CPU_STUDY, size=640, n_train=3000, n_val=500, epochs=30, batch_size=16, lr=1e-2),
    ),
    # Tiny sizes: every code path in well under a minute (the tests).
    "quick": Profile(
        "quick",
        image=64,
        measure_image=64,
        batches=(1, 2),
        repeats=2,
        big_batch_repeats=2,
        warmup=1,
        latency_rows=("rgb_r50", "latent_r50_seed", "latent_r50_default", "latent_r18", "fast"),
        big_batch_rows=("rgb_r50", "latent_r50_default"),
        train_image=64,
        train_batch=2,
        train_backbone="resnet18",
        train_repeats=2,
        loading_seconds=0.5,
        data_size=64,
        n_train=8,
        n_val=4,
        out_channels=16,
        epochs=1,
        batch_size=4,
        lr=1e-3,
        rates=(50, 75),
        bridges=("bilinear", "context"),
        extra_variants=(),
        study=dict(
            CPU_STUDY,
            seeds=(0, 1),
            size=64,
            n_train=8,
            n_val=4,
            epochs=1,
            batch_size=4,
            lr=1e-3,
            bridges=("bilinear", "codec"),
            anchors="default",  # the default preset's: the target rows are the study's main rows
            other_anchors="six",
            frontier=(("resnet18", 16),),
        ),
    ),
}
