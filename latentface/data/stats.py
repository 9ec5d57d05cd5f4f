"""``latentface stats``: per-channel mean/std of a split's latents, for the model's input normalisation.

Latent channels have very different scales (the DC channel of the built-in codec spans
-128..127, high frequencies are near 0; JPEG AI's luma and chroma parts differ, and so
do rates), so the network sees ``(latent - mean) / std`` per channel. The statistics
are computed in one streaming pass (float64 sums) and stored as JSON:
``{"mean": [C], "std": [C], "count": n, "latent_type": ...}``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from latentface.data.dataset import NestedLatentWiderFaceDataset, load_latent, measure_loading_throughput
from latentface.data.layout import resolve_latent_types

STD_FLOOR_FRACTION = 0.01


def default_stats_path(root: str | os.PathLike, latent_type="latent_75.npy") -> Path:
    """``<root>/latent_stats_<rates>.json``: ``latent_stats_75.json``, ``latent_stats_12_75.json``, ``latent_stats_mixed.json``."""
    if latent_type == "mixed":
        stem = "mixed"
    else:
        stem = "_".join(Path(name).stem.removeprefix("latent_") for name in resolve_latent_types(latent_type))
    return Path(root) / f"latent_stats_{stem}.json"


def compute_latent_stats(root: str | os.PathLike, split: str = "train", latent_type="latent_75.npy",
                         progress: bool = True, on_bad_latent: str = "raise") -> dict:
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
    return {"mean": mean.tolist(), "std": np.maximum(std, floor).tolist(), "count": count,
            "latent_type": latent_type, "split": split, "shape": list(ds.expected_shape),
            "std_floor": floor, "floored_channels": floored, "skipped": skipped}


def save_stats(stats: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(stats, indent=1))
    tmp.replace(path)
    return path


def load_stats(path: str | os.PathLike, channels: int | None = None) -> dict:
    """Read and check a statistics JSON (same-length finite mean/std, std > 0, optional channel count)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latent statistics not found: {path} (make them with `latentface stats`)")
    try:
        stats = json.loads(path.read_text())
        mean, std = stats["mean"], stats["std"]
    except (ValueError, KeyError, TypeError) as e:
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


def stats_tensors(stats: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) as float32 tensors [C], ready for a model's normalisation buffers."""
    return torch.tensor(stats["mean"], dtype=torch.float32), torch.tensor(stats["std"], dtype=torch.float32)


def configure_parser(parser) -> None:
    from latentface.cli import flag

    parser.add_argument(*flag("--dataset_root"), dest="dataset_root", required=True)
    parser.add_argument(*flag("--latent_type"), dest="latent_type", default="latent_75.npy",
                        help="rate file, comma-separated list, or 'mixed' (default latent_75.npy)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--output", default=None, help="JSON path (default <root>/latent_stats_<rate>.json)")
    parser.add_argument("--throughput", action="store_true",
                        help="instead: measure DataLoader latents/s (from the page cache after the first pass)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(*flag("--batch_size"), dest="batch_size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--dtype", choices=("auto", "float16", "float32"), default="auto",
                        help="--throughput: latents loaded as (default auto: as training loads them, float16 for "
                             "float16 files)")


def run(args) -> int:
    try:
        return _run(args)
    except (OSError, ValueError) as e:  # bad input: one clear line, not a traceback
        raise SystemExit(f"latentface stats: {e}") from None


def _run(args) -> int:
    latent_type = args.latent_type.split(",") if "," in args.latent_type else args.latent_type
    if args.throughput:
        dtype = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
        ds = NestedLatentWiderFaceDataset(args.dataset_root, args.split, latent_type, dtype=dtype)
        m = measure_loading_throughput(ds, workers=args.workers, batch_size=args.batch_size, seconds=args.seconds)
        print(f"{m['latents_per_s']:.0f} latents/s ({m['latents']} {str(ds.dtype).removeprefix('torch.')} latents "
              f"[{', '.join(map(str, ds.expected_shape))}] "
              f"in {m['seconds']:.1f} s, {m['workers']} workers, batch {m['batch_size']}); "
              f"CPU time {m['cpu_ms_per_latent']:.2f} ms per latent (workers + main process)")
        return 0
    stats = compute_latent_stats(args.dataset_root, args.split, latent_type)
    out = save_stats(stats, args.output or default_stats_path(args.dataset_root, latent_type))
    mean, std = np.array(stats["mean"]), np.array(stats["std"])
    print(f"{stats['count']} latents, {len(mean)} channels: mean in [{mean.min():.3g}, {mean.max():.3g}], "
          f"std in [{std.min():.3g}, {std.max():.3g}] -> {out}")
    return 0
