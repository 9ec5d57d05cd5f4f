"""Per-channel mean/std of a split's latents, for the model's input normalisation.

Latent channels have very different scales (the DC channel of the built-in codec spans
-128..127, high frequencies are near 0; JPEG AI's luma and chroma parts differ, and so
do rates), so the network sees ``(latent - mean) / std`` per channel. The statistics
are computed in one streaming pass (float64 sums) and stored as JSON:
``{"mean": [C], "std": [C], "count": n, "latent_type": ...}``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from latentface.data.dataset import NestedLatentWiderFaceDataset, load_latent
from latentface.data.layout import resolve_latent_types
from latentface.util.io import read_json, write_json

STD_FLOOR_FRACTION = 0.01


def default_stats_path(root: str | os.PathLike, latent_type="latent_75.npy") -> Path:
    """``<root>/latent_stats_<rates>.json``: ``latent_stats_75.json``, ``latent_stats_12_75.json``,
    ``latent_stats_mixed.json``."""
    if latent_type == "mixed":
        stem = "mixed"
    else:
        stem = "_".join(Path(name).stem.removeprefix("latent_") for name in resolve_latent_types(latent_type))
    return Path(root) / f"latent_stats_{stem}.json"


def compute_latent_stats(
    root: str | os.PathLike,
    split: str = "train",
    latent_type="latent_75.npy",
    progress: bool = True,
    on_bad_latent: str = "raise",
) -> dict:
    """Per-channel mean and (population) std over every requested latent file of ``<root>/<split>``.

    With several rates (a list or ``"mixed"``) every available file of every sample counts.
    Stds below ``STD_FLOOR_FRACTION`` x the median channel std are raised to that floor.
    """
    ds = NestedLatentWiderFaceDataset(root, split, latent_type, on_bad_latent=on_bad_latent)
    channels = ds.expected_shape[0]
    total = np.zeros(channels, dtype=np.float64)
    total_sq = np.zeros(channels, dtype=np.float64)
    files = [p for i in range(len(ds)) for p in ds.latent_files(i)]
    count = skipped = 0
    for path in tqdm(files, desc=f"stats {Path(root).name}/{split}", unit="latent", disable=not progress):
        try:
            latent = load_latent(path, ds.expected_shape).numpy().reshape(channels, -1).astype(np.float64)
        except ValueError:
            if on_bad_latent == "raise":
                raise
            skipped += 1
            continue
        total += latent.sum(axis=1)
        total_sq += np.square(latent).sum(axis=1)
        count += 1
    if count == 0:
        raise ValueError(f"{Path(root) / split}: no usable latent for statistics")
    cells = count * ds.expected_shape[1] * ds.expected_shape[2]
    mean = total / cells
    std = np.sqrt(np.maximum(total_sq / cells - np.square(mean), 0))
    # A channel that is (nearly) constant in training, e.g. a coefficient always quantised to
    # zero at a low rate, would be divided by ~0; its std is raised to a floor instead.
    floor = max(STD_FLOOR_FRACTION * float(np.median(std)), 1e-6)
    floored = int((std < floor).sum())
    return {
        "mean": mean.tolist(),
        "std": np.maximum(std, floor).tolist(),
        "count": count,
        "latent_type": latent_type,
        "split": split,
        "shape": list(ds.expected_shape),
        "std_floor": floor,
        "floored_channels": floored,
        "skipped": skipped,
    }


def save_stats(stats: dict, path: str | os.PathLike) -> Path:
    """Write statistics JSON atomically (a run's ``--stats`` file)."""
    return write_json(path, stats)


def load_stats(path: str | os.PathLike, channels: int | None = None) -> dict:
    """Read and check a statistics JSON (same-length finite mean/std, std > 0, optional channel count)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latent statistics not found: {path} (make them with `latentface stats`)")
    stats = read_json(path, "latent statistics file")
    try:
        mean, std = stats["mean"], stats["std"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a latent statistics file ({type(e).__name__}: {e})") from None
    if not isinstance(mean, list) or not isinstance(std, list) or len(mean) != len(std) or not mean:
        raise ValueError(f"{path}: 'mean' and 'std' must be non-empty lists of equal length")
    values = [*mean, *std]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise ValueError(f"{path}: mean/std contain non-numbers or non-finite values")
    if min(std) <= 0:
        raise ValueError(f"{path}: std must be > 0 in every channel (channel {int(np.argmin(std))} is {min(std)})")
    if channels is not None and len(mean) != channels:
        raise ValueError(f"{path}: statistics for {len(mean)} channels, the model expects {channels}")
    return stats
