"""Datasets and loaders for training, with data order and augmentation that a resume reproduces.

The order of an epoch is a function of (seed, epoch) (``DistributedSampler``), and every
sample's augmentation draws from a ``torch`` generator seeded by (seed, epoch, index). A run
resumed at any step therefore sees exactly the batches the uninterrupted run would have
seen, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from latentface import LATENT_STRIDE
from latentface.data.augment import Compose, RandomHorizontalFlip, RandomLatentCrop
from latentface.data.dataset import BadLatentError, NestedLatentWiderFaceDataset, collate_faces
from latentface.data.images import RandomImageCrop, RandomImageFlip, RGBWiderFaceDataset
from latentface.data.teacher_images import TeacherImages, WithTeacherImages
from latentface.training.config import TrainConfig, TrainingError
from latentface.training.distributed import ignore_stop_signals


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset]:
    """(train, val) of the configured input kind, the training split augmented when asked."""
    root = Path(config.dataset_root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise TrainingError(
                f"dataset split not found: {root / split} (--dataset_root {config.dataset_root} must hold train/ and "
                "val/ in the retina-modify layout; `latentface synth` writes a synthetic one)"
            )
    if config.input == "rgb":
        train, val = RGBWiderFaceDataset(root, "train"), RGBWiderFaceDataset(root, "val")
        cells = (train.image_size[1] // LATENT_STRIDE, train.image_size[0] // LATENT_STRIDE)
        flip, crop = RandomImageFlip(0.5), RandomImageCrop
    else:
        rates = config.latent_type  # one rate, 'mixed' or a comma-separated list
        policy = config.on_bad_latent
        # dtype "auto": the step casts on the device
        train = NestedLatentWiderFaceDataset(root, "train", rates, on_bad_latent=policy, dtype="auto")
        val = NestedLatentWiderFaceDataset(
            root, "val", rates, on_bad_latent=policy, expected_shape=train.expected_shape, dtype=train.dtype
        )
        cells = train.expected_shape[1:]
        # The dct codec has an exact flip (sign changes inside the cells); other latents are mirrored as they are.
        flip, crop = RandomHorizontalFlip(0.5, channel_signs=train.codec), RandomLatentCrop
    if config.augment:
        transforms = [flip]
        if config.crop < 1:
            transforms.append(crop(tuple(max(1, round(config.crop * c)) for c in cells)))
        train.transform = Compose(transforms)
    return train, val


def with_teacher_images(train: Dataset, config: TrainConfig) -> Dataset:
    """With ``--teacher`` or ``--reconstruct``: the training split whose targets also carry each sample's image
    (flipped and cropped as its latent), from ``--teacher_images`` or the split's own ``images/``; else ``train``."""
    if config.teacher is None and config.reconstruct == 0:
        return train
    images = TeacherImages(config.dataset_root, "train", train.image_size, config.teacher_images)
    return WithTeacherImages(train, images)


class SeededSamples(Dataset):
    """Wraps a dataset so that item (epoch, index) is drawn with torch's RNG seeded by (seed, epoch, index)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        epoch, index = item if isinstance(item, tuple) else (0, item)
        state = np.random.SeedSequence([self.seed, epoch, index]).generate_state(2, np.uint64)[0]
        torch.default_generator.manual_seed(int(state))
        return self.dataset[index]


class EpochSampler(DistributedSampler):
    """This process's share of the epoch's (seed, epoch) order, as (epoch, index) pairs; ``skip`` drops a prefix."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.skip = 0

    def __iter__(self):
        return ((self.epoch, index) for index in list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


def build_loaders(train: Dataset, val: Dataset, config: TrainConfig, rank: int, world_size: int, pin_memory: bool):
    """(train loader, its EpochSampler, val loader). Training drops the last partial batch."""
    sampler = EpochSampler(train, world_size, rank, config.seed)
    if sampler.num_samples < config.batch_size:
        raise TrainingError(
            f"{config.dataset_root}/train has {len(train)} samples ({sampler.num_samples} per process), fewer than "
            f"--batch_size {config.batch_size}: lower --batch_size"
        )
    common = dict(
        num_workers=config.workers,
        collate_fn=collate_faces,
        pin_memory=pin_memory,
        persistent_workers=config.workers > 0,
        worker_init_fn=ignore_stop_signals,  # the main process handles SIGINT/SIGTERM and saves
    )
    train_loader = DataLoader(
        SeededSamples(train, config.seed),
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=True,
        generator=torch.Generator().manual_seed(config.seed),
        **common,
    )
    val_loader = DataLoader(SeededSamples(val, config.seed), batch_size=config.batch_size, shuffle=False, **common)
    return train_loader, sampler, val_loader


def subset_loader(loader: DataLoader, count: int) -> DataLoader:
    """``loader`` (the validation loader) over its dataset's first ``count`` items, in order."""
    return DataLoader(
        Subset(loader.dataset, range(count)),
        batch_size=loader.batch_size,
        shuffle=False,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
    )


def close_loaders(*loaders: DataLoader | None) -> None:
    """Stop the loaders' persistent workers now. They ignore SIGTERM (:func:`ignore_stop_signals`), which is
    how the interpreter's exit would stop workers still running, so a run stops its own before it returns."""
    for loader in loaders:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()  # what the iterator's __del__ does, at a known time
        if loader is not None:
            loader._iterator = None


def check_splits(datasets: dict[str, Dataset], progress: bool = False) -> dict[str, dict[str, tuple[str, str]]]:
    """The pre-flight check: every latent of every split read once (header, dtype, shape, finiteness) before the
    first step -> ``{split: {path: (kind, message)}}`` of the bad files. RGB splits are not checked here."""
    return {
        split: {path: (e.kind, str(e)) for path, e in ds.check_latents(progress).items()}
        if isinstance(ds, NestedLatentWiderFaceDataset)
        else {}
        for split, ds in datasets.items()
    }


def apply_bad_latent_policy(
    datasets: dict[str, Dataset], bad: dict[str, dict[str, tuple[str, str]]], policy: str, log
) -> dict:
    """``raise``: a :class:`BadLatentError` naming the first bad file (before any training); ``skip``: each bad
    file is logged once and leaves its split. Returns the record for summary.json:
    ``{split: {"files": n, "samples_left_out": m, "kinds": {kind: n}, "paths": {path: message}}}``."""
    found = [(split, path, message) for split, files in bad.items() for path, (_, message) in files.items()]
    if found and policy == "raise":
        counts = ", ".join(f"{len(files)} in {split}" for split, files in bad.items() if files)
        raise BadLatentError(
            f"{found[0][2]} (the pre-flight check found {len(found)} bad latent files before training: {counts}; "
            "--on_bad_latent skip leaves them out, counted)"
        )
    record = {}
    for split, files in bad.items():
        for _, message in files.values():
            log(f"skipping bad latent (--on_bad_latent skip): {message}")
        dropped = datasets[split].leave_out(files) if files else 0
        record[split] = {
            "files": len(files),
            "samples_left_out": dropped,
            "kinds": dict(collections.Counter(kind for kind, _ in files.values())),
            "paths": {path: message for path, (_, message) in files.items()},
        }
    return record


def preflight(splits: dict[str, Dataset], config: TrainConfig, procs, measure, log) -> dict:
    """The check of every split before the first step (rank 0, timed with ``measure("pre-flight check")``),
    then ``--on_bad_latent`` applied on every rank, and the data summary line. Returns the bad-latent record
    for summary.json (:func:`apply_bad_latent_policy`)."""
    bad = None
    if procs.is_main:
        started = time.perf_counter()
        with measure("pre-flight check"):
            bad = check_splits(splits, progress=config.progress)
        took = time.perf_counter() - started
    record = apply_bad_latent_policy(splits, procs.broadcast(bad), config.on_bad_latent, log)
    left_out = [f"{split} {r['files']} ({_kinds(r['kinds'])})" for split, r in record.items() if r["files"]]
    if procs.is_main:
        log(
            "data: "
            + "; ".join(f"{split} {data_line(ds)}" for split, ds in splits.items())
            + (f"; bad latents left out (--on_bad_latent skip): {', '.join(left_out)}" if left_out else "")
            + (f"; checked in {took:.1f} s" if config.input == "latent" else "")
        )
    return record


def data_line(ds: Dataset) -> str:
    """``8 samples, 12 faces``."""
    return f"{len(ds.keys)} samples, {sum(len(r) for r in ds.records.values())} faces"


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
