"""Time per epoch on Kaggle's T4 x2, estimated from a model's measured MACs (``latentface kaggle estimate``).

An estimate, not a measurement: compute only (data loading, the loss's matching, NMS and the AP
computation are not counted), at an assumed sustained share of the T4's fp16 tensor-core peak.

- MACs: a forward pass at 640x640 as ``latentface bench`` counts it (docs/benchmarks.json,
  ``cost.rows``). Training images are cropped on the latent grid (``--crop`` 0.8: 32 of 40 cells a
  side), so a training step costs ``crop**2`` of that; validation runs at the full size.
- FLOPs: 2 per MAC; a training step is forward + backward = 3 forward passes.
- Throughput: :data:`T4_FP16_TFLOPS` x :data:`UTILISATION` per GPU (AMP, the default), x the number of
  GPUs x :data:`DDP_SCALING`. NVIDIA's own ResNet-50 mixed-precision *inference* on a T4 reaches about
  1200 images/s at 224x224 (about 15 % of the peak); training is less efficient, hence 12 %.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from latentface.util.io import read_json

#: NVIDIA T4 peak throughput (tensor cores, fp16; fp32 is 8.1 TFLOPS).
T4_FP16_TFLOPS = 65.0
T4_FP32_TFLOPS = 8.1
#: The assumed sustained share of that peak in AMP training.
UTILISATION = 0.12
#: Two GPUs under DDP do this much more than twice one GPU's work (gradient all-reduce, waits).
DDP_SCALING = 0.9
#: WIDER FACE's split sizes (retina-modify is WIDER FACE at 640x640).
TRAIN_IMAGES = 12_880
VAL_IMAGES = 3_226
#: The benchmark row of each preset (docs/benchmarks.json, cost.rows).
PRESET_ROWS = {"default": "latent_r50_default", "fast": "fast", "seed": "latent_r50_seed"}


@dataclass(frozen=True)
class EpochEstimate:
    preset: str
    gmacs: float  # forward, one 640x640 image
    train_s: float
    val_s: float

    @property
    def epoch_s(self) -> float:
        return self.train_s + self.val_s

    def line(self) -> str:
        return (
            f"{self.preset:8s} {self.gmacs:6.1f} GMACs  train {self.train_s / 60:5.1f} min + validation "
            f"{self.val_s / 60:4.1f} min = {self.epoch_s / 60:5.1f} min/epoch; "
            f"{3600 * 11 / self.epoch_s:5.1f} epochs in 11 h"
        )


def epoch_estimate(
    gmacs: float,
    preset: str = "",
    gpus: int = 2,
    crop: float = 0.8,
    train_images: int = TRAIN_IMAGES,
    val_images: int = VAL_IMAGES,
    tflops: float = T4_FP16_TFLOPS,
    utilisation: float = UTILISATION,
    scaling: float = DDP_SCALING,
) -> EpochEstimate:
    """Seconds of one epoch (training + validation) for a model of ``gmacs`` forward GMACs at 640x640."""
    per_second = tflops * 1e12 * utilisation * gpus * (scaling if gpus > 1 else 1.0)
    forward = 2 * gmacs * 1e9  # FLOPs of one forward pass
    train = train_images * 3 * forward * crop**2 / per_second
    val = val_images * forward / per_second
    return EpochEstimate(preset, gmacs, train, val)


def preset_estimates(benchmarks: str | os.PathLike, presets=("default", "fast"), **assumptions) -> list[EpochEstimate]:
    """:func:`epoch_estimate` for each preset, from the MACs measured in ``benchmarks`` (docs/benchmarks.json)."""
    rows = read_json(benchmarks, "benchmarks file")["cost"]["rows"]
    return [epoch_estimate(rows[PRESET_ROWS[p]]["macs"] / 1e9, p, **assumptions) for p in presets]


def estimate_lines(benchmarks: str | os.PathLike, **assumptions) -> list[str]:
    a = {"utilisation": UTILISATION, "gpus": 2, "crop": 0.8, **assumptions}
    head = (
        f"ESTIMATE (not measured): T4 x{a['gpus']}, {T4_FP16_TFLOPS:g} TFLOPS fp16 peak x {a['utilisation']:.0%} "
        f"sustained per GPU{f' x {DDP_SCALING:g} DDP scaling' if a['gpus'] > 1 else ''}; {TRAIN_IMAGES:,} training "
        f"images cropped to {a['crop']:g} a side, {VAL_IMAGES:,} validation images at 640x640; compute only "
        f"(MACs from {Path(benchmarks).name}): a small model like fast is likely bound by data loading instead"
    )
    return [head] + [e.line() for e in preset_estimates(benchmarks, **assumptions)]
