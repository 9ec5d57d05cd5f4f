"""Named training recipes: the synthetic data and the training settings of every canned run.

The demo, the Kaggle kernel's off-Kaggle stand-ins, the notebooks and the benchmarks read
their settings from this one table, so a recipe is defined once and a document that names
one ("the demo's recipe") means exactly this entry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """Synthetic data (``n_train`` + ``n_val`` images of ``size`` px at ``rates``) and TrainConfig fields."""

    name: str
    n_train: int
    n_val: int
    size: int  # image side in pixels; the latent has size / 16 cells a side
    train: dict[str, Any] = field(default_factory=dict)
    rates: tuple[int, ...] = (12, 25, 50, 75, 100)
    seed: int = 0
    description: str = ""

    def data(self) -> dict[str, Any]:
        """The keyword arguments of :func:`latentface.data.synth.generate_dataset` (besides the root)."""
        return dict(n_train=self.n_train, n_val=self.n_val, size=self.size, rates=self.rates, seed=self.seed)


#: make demo's recipe; the learned codec's demo and notebook 04 derive theirs from it.
DEMO = Recipe(
    "demo",
    1500,
    150,
    192,
    dict(
        preset="fast",
        bridge="codec",
        out_channels=64,
        anchors="six",
        epochs=4,
        batch_size=8,
        lr=0.02,
        crop=1.0,
        time_budget=660.0,
    ),
    rates=(75,),
    description="make demo: AP@0.5 >= 0.80 in <= 15 min on 2 CPU cores",
)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        DEMO,
        dataclasses.replace(
            DEMO,
            name="demo-learned",
            train={**DEMO.train, "epochs": 7, "time_budget": 780.0},
            description="make demo CODEC=learned: the demo's data and model, 7 epochs (the learned latent needs "
            "more steps than dct's 4 to reach AP@0.5 0.80), still <= 15 min on 2 CPU cores",
        ),
        Recipe(
            "demo-quick",
            8,
            4,
            64,
            dict(preset="fast", bridge="codec", out_channels=16, epochs=2, batch_size=4, lr=0.01),
            rates=(75,),
            description="every demo step in seconds (tests); no meaningful AP",
        ),
        dataclasses.replace(
            DEMO,
            name="notebook",
            train={k: v for k, v in DEMO.train.items() if k != "time_budget"},
            rates=(12, 75),
            description="notebook 04's detector: the demo's data and training for a fixed 750 steps (no time "
            "budget, so a busy machine takes longer rather than training less); a finished demo run's weights "
            "are reused",
        ),
        Recipe(
            "notebook-smoke",
            8,
            4,
            64,
            dict(preset="fast", bridge="codec", out_channels=16, lr=0.01, batch_size=4, epochs=1, max_steps=2),
            description="notebook 04 under LATENTFACE_SMOKE=1 (tests)",
        ),
        Recipe(
            "kaggle-local",
            48,
            16,
            320,
            dict(
                model="resnet18",
                bridge="pixelshuffle",
                out_channels=32,
                epochs=3,
                batch_size=4,
                workers=0,
                val_images=0,
            ),
            rates=(75,),
            description="the Kaggle notebook off Kaggle: minutes on a CPU",
        ),
        Recipe(
            "kaggle-smoke",
            8,
            4,
            128,
            dict(
                model="resnet18",
                bridge="pixelshuffle",
                out_channels=16,
                epochs=1,
                batch_size=2,
                workers=0,
                val_images=0,
            ),
            rates=(75,),
            description="the Kaggle notebook under LATENTFACE_SMOKE=1 (tests)",
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name lists the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None
