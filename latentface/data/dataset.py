"""The retina-modify dataset: latents in per-image folders plus WIDER labels.

The layout and its paths are :mod:`latentface.data.layout`'s. The key is the latent folder's name and the
label's image basename without extension.

Bad input policy: every mismatch between labels and folders is counted and logged
once when the dataset is built (:meth:`NestedLatentWiderFaceDataset.summary`). Boxes are
clipped to the image and dropped when empty (:func:`latentface.data.labels.sanitize`).
A latent that is unreadable, mis-shaped or non-finite raises :class:`BadLatentError`
naming the file; with ``on_bad_latent="skip"`` it is logged, counted and the next
sample is returned instead. A bad latent never becomes a zero tensor.
"""

from __future__ import annotations

import collections
import logging
import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, default_collate
from tqdm import tqdm

from latentface import LATENT_STRIDE
from latentface.data.labels import FaceRecord, merge_landmarks, read_labels, sanitize
from latentface.data.layout import (
    LABELS_FILE,
    LANDMARKS_FILE,
    RATE_FILE_PATTERN,
    read_codec_name,
    resolve_latent_types,
)
from latentface.errors import LatentfaceError

logger = logging.getLogger("latentface.data")
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


class BadLatentError(LatentfaceError, ValueError):
    """A latent file that cannot be used; the message starts with the file's path. ``kind`` says why in one
    word: ``unreadable``, ``dtype``, ``shape``, ``empty``, ``non-finite`` (``unusable`` when not told)."""

    def __init__(self, message: str, kind: str = "unusable"):
        super().__init__(message)
        self.kind = kind


def read_latent_header(path: str | os.PathLike, check: bool = False) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a .npy file; the data is only mapped, not read.

    ``check``: also raise :class:`BadLatentError` when the shape is not [1,C,H,W]/[C,H,W] or has a size of 0.
    """
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
        raise BadLatentError(f"{path}: cannot read latent ({type(e).__name__}: {e})", "unreadable") from None
    if check:
        _checked_chw(path, tuple(arr.shape))
    return tuple(arr.shape), arr.dtype


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    return tuple(shape) if len(shape) == 3 else None


def _checked_chw(path: str | os.PathLike, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``shape`` as (C, H, W), or :class:`BadLatentError` when it is not [1,C,H,W]/[C,H,W] or has a size of 0."""
    chw = _chw(shape)
    if chw is None:
        raise BadLatentError(f"{path}: latent shape {list(shape)}, expected [1,C,H,W] or [C,H,W]", "shape")
    if min(chw) <= 0:
        raise BadLatentError(f"{path}: latent shape {list(shape)} is empty (C, H and W must be at least 1)", "empty")
    return chw


def load_latent(
    path: str | os.PathLike, expected_shape: Sequence[int] | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Read one latent file (memory-mapped) -> tensor [C, H, W] of ``dtype``, or raise :class:`BadLatentError`.

    ``torch.float16`` is for transport: float16 files (the real data's and the built-in codec's) then
    cross from loader workers to the training process at half the bytes and no conversion on the CPU,
    and become float32 on the device.
    """
    _check_dtype(dtype)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
        raise BadLatentError(f"{path}: cannot read latent ({type(e).__name__}: {e})", "unreadable") from None
    if arr.dtype not in _FLOAT_DTYPES:
        raise BadLatentError(f"{path}: latent dtype {arr.dtype}, expected float16, float32 or float64", "dtype")
    chw = _checked_chw(path, arr.shape)
    if expected_shape is not None and chw != tuple(expected_shape):
        raise BadLatentError(
            f"{path}: latent shape {list(arr.shape)}, expected [C,H,W] = {list(expected_shape)}", "shape"
        )
    half = dtype == torch.float16
    # numpy converts float16 -> float32 several times faster than torch does on CPU (and checks finiteness faster).
    with np.errstate(over="ignore"):  # an overflow to float16 is reported below, naming the file
        latent = np.array(arr, dtype=np.float16 if half else np.float32).reshape(chw)
    bad = _non_finite(latent)
    if bad:
        narrowed = " once converted to float16" if half and arr.dtype != np.float16 else ""
        raise BadLatentError(f"{path}: latent has {bad} non-finite values (NaN/inf){narrowed}", "non-finite")
    return torch.from_numpy(latent)


def _check_dtype(dtype) -> None:
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"dtype must be torch.float32 or torch.float16, got {dtype}")


def _non_finite(latent: np.ndarray) -> int:
    """How many values are NaN or inf; for float16 from the exponent bits (all ones), 5x faster than isfinite."""
    if latent.dtype == np.float16:
        return int(np.count_nonzero((latent.view(np.uint16) & 0x7C00) == 0x7C00))
    return int(latent.size - np.count_nonzero(np.isfinite(latent)))


def read_split_labels(split_dir: Path) -> tuple[dict[str, FaceRecord], int]:
    """A split's labels: labels.txt with the landmark file merged in when both exist, else either one.

    Returns the records by key and the number of images whose landmark-file boxes differ.
    """
    wider, lms = split_dir / LABELS_FILE, split_dir / LANDMARKS_FILE
    if wider.is_file():
        labels = read_labels(wider)
        if lms.is_file():
            return merge_landmarks(labels, read_labels(lms))
        return labels, 0
    if lms.is_file():
        return read_labels(lms), 0
    raise FileNotFoundError(f"no label file in {split_dir} (looked for {LABELS_FILE} and {LANDMARKS_FILE})")


def record_target(record: FaceRecord) -> dict:
    """The training target of a record (COMMON interface): boxes, landmarks, has_landmarks, key."""
    return {
        "boxes": torch.from_numpy(record.boxes.copy()),
        "landmarks": torch.from_numpy(record.landmarks.copy()),
        "has_landmarks": torch.from_numpy(record.has_landmarks.copy()),
        "key": record.key,
    }


def _examples(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


class NestedLatentWiderFaceDataset(Dataset):
    """Latent + face target per image of ``<root>/<split>`` (see the module docstring).

    ``latent_type``: a rate file (``"latent_75.npy"``), a list of them, or ``"mixed"``
    (all five rates). With several, each sample draws one of its available rates at
    random (``torch`` RNG, so DataLoader workers differ and seeds reproduce).
    ``expected_shape`` (C, H, W): when None, the most common shape among the first
    eight samples' headers fixes it. ``transform(latent, target) -> (latent, target)``.
    ``dtype``: of the latents returned (see :func:`load_latent`); ``"auto"``: as training loads them
    (:func:`transport_dtype`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        latent_type: str | int | Sequence[str | int] = "latent_75.npy",
        transform=None,
        on_bad_latent: str = "raise",
        expected_shape: Sequence[int] | None = None,
        dtype: torch.dtype | str = torch.float32,
    ):
        if dtype != "auto":
            _check_dtype(dtype)
        if on_bad_latent not in ("raise", "skip"):
            raise ValueError(f"on_bad_latent must be 'raise' or 'skip', got {on_bad_latent!r}")
        self.root = Path(root)
        self.split = split
        self.latent_types = resolve_latent_types(latent_type)
        self.transform = transform
        self.on_bad_latent = on_bad_latent
        self.codec = read_codec_name(self.root)
        self.bad_latents: dict[str, str] = {}

        split_dir = self.root / split
        labels, self._landmark_mismatches = read_split_labels(split_dir)
        latent_dir = split_dir / "latent"
        if not latent_dir.is_dir():
            raise FileNotFoundError(f"latent folder not found: {latent_dir}")
        folders = {e.name for e in os.scandir(latent_dir) if e.is_dir()}

        keys, files, missing_rate = [], [], collections.Counter()
        without_latent, without_any_rate = [], []
        for key in labels:
            if key not in folders:
                without_latent.append(key)
                continue
            present = set(os.listdir(latent_dir / key))
            available = [t for t in self.latent_types if t in present]
            missing_rate.update(t for t in self.latent_types if t not in present)
            if not available:
                without_any_rate.append(key)
                continue
            keys.append(key)
            files.append(available)
        if not keys:
            found = sorted(
                {n for f in folders for n in os.listdir(latent_dir / f) if RATE_FILE_PATTERN.fullmatch(n)},
                key=lambda n: int(n[7:-4]),
            )
            raise ValueError(
                f"{split_dir}: no labelled image has a latent folder with {' or '.join(self.latent_types)} "
                f"({len(labels)} labelled images, {len(folders)} latent folders, {len(without_latent)} labelled "
                f"images without a folder, {len(without_any_rate)} folders without the rate); "
                + (f"rates found: {', '.join(found)} (pass --latent_type)" if found else "no rate file found")
            )
        self.keys: list[str] = keys
        self._files = files
        self.expected_shape = tuple(expected_shape) if expected_shape is not None else self._infer_shape()
        _, h, w = self.expected_shape
        self.image_size = (w * LATENT_STRIDE, h * LATENT_STRIDE)  # (width, height) of the input image
        self.dtype = transport_dtype(self) if dtype == "auto" else dtype

        self.records: dict[str, FaceRecord] = {}
        dropped = outside = 0
        for key in keys:
            rec = labels[key]
            b = rec.boxes
            outside += int(
                ((b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > self.image_size[0]) | (b[:, 3] > self.image_size[1])).sum()
            )
            self.records[key], n = sanitize(rec, *self.image_size)
            dropped += n
        self._summary = {
            "split_dir": str(split_dir),
            "latent_types": self.latent_types,
            "labelled_images": len(labels),
            "latent_folders": len(folders),
            "samples": len(keys),
            "faces": int(sum(len(r) for r in self.records.values())),
            "images_without_faces": int(sum(len(r) == 0 for r in self.records.values())),
            "labels_without_latent_folder": len(without_latent),
            "latent_folders_without_labels": len(folders - set(labels)),
            "missing_rate_files": dict(missing_rate),
            "labels_without_any_requested_rate": len(without_any_rate),
            "boxes_outside_image": outside,
            "boxes_dropped": dropped,
            "landmark_label_mismatches": self._landmark_mismatches,
        }
        self._log_summary(without_latent, sorted(folders - set(labels)), without_any_rate)

    def _infer_shape(self) -> tuple[int, int, int]:
        shapes = collections.Counter()
        for key, available in list(zip(self.keys, self._files))[:8]:
            try:
                shape, _ = read_latent_header(self.root / self.split / "latent" / key / available[0], check=True)
            except BadLatentError:
                continue
            shapes[_chw(shape)] += 1
        if not shapes:
            raise BadLatentError(
                f"{self.root / self.split / 'latent'}: none of the first latents has a readable "
                "non-empty [1,C,H,W] or [C,H,W] shape; pass expected_shape"
            )
        return shapes.most_common(1)[0][0]

    def _log_summary(self, without_latent: list[str], without_labels: list[str], without_rate: list[str]) -> None:
        s = self._summary
        problems = []
        if without_latent:
            problems.append(
                f"{len(without_latent)} labelled images have no latent folder ({_examples(without_latent)})"
            )
        if without_labels:
            problems.append(f"{len(without_labels)} latent folders have no labels ({_examples(without_labels)})")
        for name, count in s["missing_rate_files"].items():
            problems.append(f"{count} latent folders lack {name}")
        if without_rate:
            problems.append(
                f"{len(without_rate)} labelled images have none of {self.latent_types} and are left out "
                f"({_examples(without_rate)})"
            )
        if s["boxes_outside_image"]:
            problems.append(
                f"{s['boxes_outside_image']} boxes extend outside the "
                f"{self.image_size[0]}x{self.image_size[1]} image (clipped; "
                f"{s['boxes_dropped']} empty boxes dropped)"
            )
        elif s["boxes_dropped"]:
            problems.append(f"{s['boxes_dropped']} zero-size boxes dropped")
        if s["landmark_label_mismatches"]:
            problems.append(
                f"{s['landmark_label_mismatches']} images whose {LANDMARKS_FILE} boxes differ from "
                f"{LABELS_FILE} (kept without landmarks)"
            )
        head = f"{s['split_dir']}: {s['samples']} samples, {s['faces']} faces"
        if problems:
            logger.warning("%s; %s", head, "; ".join(problems))
        else:
            logger.info("%s; labels and latents match", head)

    def summary(self) -> dict:
        """Counts of samples, faces and every mismatch (plus latents skipped so far in this process)."""
        return {**self._summary, "bad_latents_skipped": len(self.bad_latents)}

    def check_latents(self, progress: bool = False) -> dict[str, BadLatentError]:
        """Every requested latent file read once, as loading reads it (header, dtype, shape, finiteness):
        ``{path: BadLatentError}`` of the bad ones. Nothing changes; :meth:`leave_out` drops them."""
        bad = {}
        files = [p for i in range(len(self)) for p in self.latent_files(i)]
        for path in tqdm(files, desc=f"check {self.split}", unit="latent", disable=not progress, leave=False):
            try:
                load_latent(path, self.expected_shape, self.dtype)
            except BadLatentError as e:
                bad[str(path)] = e
        return bad

    def leave_out(self, paths) -> int:
        """Drop these latent files (and the samples left with none) from the split; returns the samples dropped.
        Their faces leave the split too: a validation sample left out is neither found nor missed."""
        paths = {str(p) for p in paths}
        keys, files = [], []
        for index, key in enumerate(self.keys):
            kept = [name for name, path in zip(self._files[index], self.latent_files(index)) if str(path) not in paths]
            if kept:
                keys.append(key)
                files.append(kept)
            else:
                del self.records[key]
        dropped = len(self.keys) - len(keys)
        if not keys:
            raise BadLatentError(f"{self.root / self.split}: every latent is unusable ({len(paths)} bad files)")
        self.keys, self._files = keys, files
        self._summary.update(
            samples=len(keys),
            faces=int(sum(len(r) for r in self.records.values())),
            images_without_faces=int(sum(len(r) == 0 for r in self.records.values())),
            bad_latents_left_out=len(paths),
            samples_left_out=self._summary.get("samples_left_out", 0) + dropped,
        )
        return dropped

    def __len__(self) -> int:
        return len(self.keys)

    def latent_files(self, index: int) -> list[Path]:
        """The available requested latent files of sample ``index``."""
        folder = self.root / self.split / "latent" / self.keys[index]
        return [folder / name for name in self._files[index]]

    def target(self, index: int) -> dict:
        return record_target(self.records[self.keys[index]])

    def __getitem__(self, index: int):
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            files = self.latent_files(i)
            path = files[int(torch.randint(len(files), ())) if len(files) > 1 else 0]
            try:
                latent = load_latent(path, self.expected_shape, self.dtype)
            except BadLatentError as e:
                if self.on_bad_latent == "raise":
                    raise
                if str(path) not in self.bad_latents:
                    self.bad_latents[str(path)] = str(e)
                    logger.warning("skipping bad latent (on_bad_latent='skip'): %s", e)
                continue
            target = self.target(i)
            if self.transform is not None:
                latent, target = self.transform(latent, target)
            return latent, target
        raise BadLatentError(f"{self.root / self.split}: every latent is unusable; {self.bad_latents}")


def transport_dtype(dataset: NestedLatentWiderFaceDataset) -> torch.dtype:
    """The dtype training loads ``dataset``'s latents in: float16 when every file is float16 (exact, half the
    bytes between loader processes, cast on the device), else float32 -- never narrowing a float32 file.

    Decided from every file's header (only mapped, not read), so not from whichever file comes first;
    unreadable files do not count (loading them reports them).
    """
    stored = set()
    for index in range(len(dataset)):
        for path in dataset.latent_files(index):
            try:
                stored.add(read_latent_header(path)[1])
            except BadLatentError:
                continue
            if stored != {np.dtype(np.float16)}:
                return torch.float32
    return torch.float16 if stored else torch.float32


def collate_faces(batch):
    """(latent, target) pairs -> (latents [B,C,H,W], list of targets); face counts may differ."""
    latents = [b[0] for b in batch]
    shapes = {tuple(x.shape) for x in latents}
    if len(shapes) > 1:
        keys = [b[1].get("key") for b in batch]
        raise ValueError(
            f"latents of different shapes in one batch: {sorted(shapes)} (keys {keys}); "
            "crop them to one size (RandomLatentCrop) or use batch_size=1"
        )
    # default_collate stacks straight into shared memory inside a worker (one copy, not two)
    return default_collate(latents), [b[1] for b in batch]


def measure_loading_throughput(
    dataset: Dataset, workers: int = 2, batch_size: int = 32, seconds: float = 10.0, warmup_batches: int = 2
) -> dict:
    """Latents per second through a shuffled ``DataLoader`` (after ``warmup_batches``), looping epochs.

    Also reports the CPU time (this process + its workers) per latent loaded, which a
    busy machine does not distort the way it distorts wall-clock rates.
    """
    sampler = RandomSampler(dataset, num_samples=1 << 40)  # reshuffled passes, one iterator
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_faces)
    cpu0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    iterator = iter(loader)
    start, count, loaded = None, 0, 0
    for seen, (latents, _) in enumerate(iterator, 1):
        loaded += len(latents)
        if start is None:
            if seen >= warmup_batches:
                start = time.perf_counter()
            continue
        count += len(latents)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    del iterator  # joins the workers, so their CPU time is counted below
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0[0] + children.ru_utime - cpu0[1].ru_utime + children.ru_stime - cpu0[1].ru_stime
    return {
        "latents_per_s": count / elapsed,
        "latents": count,
        "seconds": elapsed,
        "workers": workers,
        "batch_size": batch_size,
        "cpu_ms_per_latent": 1000 * cpu / loaded,
    }
