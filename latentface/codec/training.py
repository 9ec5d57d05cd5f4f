"""Training and measuring the ``learned`` codec (``latentface codec train`` / ``codec report``).

Training data: synthetic images from a ``draw(rng, size) -> RGB uint8`` function (the
command line passes :func:`latentface.data.synth.draw_image`: the data layer sits above
the codec layer, so it is handed in, not imported), rendered on the fly (nothing is
written to disk), plus, optionally, the images of a folder; random
square crops and horizontal flips. Each sample gets one of the five rates at random; the
loss is ``bpp + lambda[rate] * MSE`` (MSE of RGB in 0..255), the rate estimated with
uniform noise, the reconstruction decoded from straight-through rounded symbols.

Reproducible and resumable: everything random in step ``i`` comes from generators seeded
by ``(seed, i)``, and a checkpoint (model, optimiser, step, elapsed time) is written
atomically every few minutes, so ``--resume`` continues exactly where a run stopped.
At the end the weights are exported as float16 (``learned.pt``) with a JSON of the
settings and the training record (``learned_train.json``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from latentface.codec import dct, learned
from latentface.errors import LatentfaceError
from latentface.util.io import IMAGE_SUFFIXES, read_image, write_json

CHECKPOINT_NAME = "learned_checkpoint.pth"
TRAIN_RECORD_NAME = "learned_train.json"
REPORT_NAME = "learned.json"
#: Seed of the held-out synthetic images of the report (training draws from ``(seed, step)``).
REPORT_SEED = 2_000_003
#: ``draw(rng, size)`` -> a synthetic RGB uint8 image [size, size, 3].
Draw = Callable[[np.random.Generator, int], np.ndarray]


@dataclasses.dataclass
class CodecTrainSettings:
    """Everything that decides a training run (recorded in ``learned_train.json``)."""

    steps: int = 2000
    minutes: float = 60.0  # wall-clock cap over all resumed runs together
    seed: int = 0
    batch: int = 8
    crop: int = 128
    render: int = 192  # size of the synthetic images the crops are taken from
    lr: float = 5e-4
    lr_final: float = 5e-5  # cosine decay from lr to lr_final over ``steps``
    #: the decay also follows the time budget (``minutes``) when that runs out first, so a run cut by the
    #: time cap still ends at ``lr_final``; the weights then depend on the machine's speed
    time_schedule: bool = True
    clip: float = 1.0
    #: one lambda per rate (QUALITIES order): loss = bpp + lambda * MSE(RGB 0..255)
    lambdas: tuple[float, ...] = (0.002, 0.006, 0.02, 0.06, 0.2)
    width: int = 64
    chroma_width: int = 32
    groups: int = 4
    hyper_width: int = 64
    z_channels: int = 32
    images: str | None = None  # an extra image folder; half the samples come from it
    checkpoint_minutes: float = 5.0
    threads: int = 1

    def model_config(self) -> dict:
        return {
            "width": self.width,
            "chroma_width": self.chroma_width,
            "groups": self.groups,
            "hyper_width": self.hyper_width,
            "z_channels": self.z_channels,
        }


def _folder_images(folder: str | None) -> list[Path]:
    if not folder:
        return []
    root = Path(folder)
    if not root.is_dir():
        raise LatentfaceError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LatentfaceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return files


def _crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    if min(h, w) < size:  # upscale small images so that a crop fits
        scale = size / min(h, w)
        image = cv2.resize(
            image, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        h, w = image.shape[:2]
    y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    out = image[y0 : y0 + size, x0 : x0 + size]
    return out[:, ::-1] if rng.random() < 0.5 else out


def batch_for_step(
    settings: CodecTrainSettings, step: int, files: list[Path], draw: Draw
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training batch of ``step``: RGB 0..255 float [B, 3, crop, crop] and rate indices [B]; a pure function."""
    rng = np.random.default_rng([settings.seed, step])
    crops = []
    for _ in range(settings.batch):
        if files and rng.random() < 0.5:
            image = read_image(files[int(rng.integers(len(files)))])
        else:
            image = draw(rng, max(settings.render, settings.crop))
        crops.append(_crop(image, settings.crop, rng))
    rgb = torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))).float()
    rates = torch.from_numpy(rng.integers(0, len(learned.QUALITIES), settings.batch)).long()
    return rgb, rates


def _lr(settings: CodecTrainSettings, step: int, seconds: float) -> float:
    """Cosine decay over the run's progress: the step budget's share done, or the time budget's if larger."""
    t = step / max(1, settings.steps)
    if settings.time_schedule:
        t = max(t, seconds / (settings.minutes * 60))
    t = min(1.0, t)
    return settings.lr_final + 0.5 * (settings.lr - settings.lr_final) * (1 + math.cos(math.pi * t))


def _save_checkpoint(path: Path, model, optimiser, step: int, elapsed: float, settings, history) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "step": step,
            "elapsed": elapsed,
            "settings": dataclasses.asdict(settings),
            "history": history,
        },
        tmp,
    )
    os.replace(tmp, path)


def _arch(d: dict) -> dict:
    return {k: d[k] for k in ("width", "chroma_width", "groups", "hyper_width", "z_channels")}


def train_codec(
    settings: CodecTrainSettings,
    draw: Draw,
    out: str | os.PathLike = learned.WEIGHTS_DIR,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train (or, with ``resume``, continue) and export the weights into ``out``; returns the training record.

    ``stop_after``: stop after that many steps of this call, as an interruption would (no export).
    """
    torch.set_num_threads(settings.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = _folder_images(settings.images)
    ckpt_path = out / CHECKPOINT_NAME
    torch.manual_seed(settings.seed)
    model = learned.LearnedCodecModel(**settings.model_config())
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    step, elapsed, history = 0, 0.0, []
    if resume and ckpt_path.is_file():
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            raise LatentfaceError(f"{ckpt_path}: not a readable codec checkpoint ({why})") from None
        if _arch(ckpt["settings"]) != _arch(dataclasses.asdict(settings)):
            raise LatentfaceError(
                f"{ckpt_path} was trained with {_arch(ckpt['settings'])}, not {_arch(dataclasses.asdict(settings))}"
            )
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        step, elapsed, history = ckpt["step"], ckpt["elapsed"], ckpt["history"]
    # each call leaves a mark in the history: where it started and with which budget (a resumed run's recipe)
    history.append({"run_from_step": step, "steps": settings.steps, "minutes": settings.minutes, "lr": settings.lr})
    lambdas = torch.tensor(settings.lambdas, dtype=torch.float32)
    if len(lambdas) != len(learned.QUALITIES):
        raise LatentfaceError(f"need {len(learned.QUALITIES)} lambdas (one per rate), got {len(lambdas)}")
    start, last_save, done_here = time.monotonic(), time.monotonic(), 0
    bar = tqdm(total=settings.steps, initial=step, disable=not progress, desc="codec", dynamic_ncols=True)
    window: list[tuple[float, float, float]] = []
    model.train()
    while step < settings.steps and elapsed + (time.monotonic() - start) < settings.minutes * 60:
        if stop_after is not None and done_here >= stop_after:
            break
        rgb, rates = batch_for_step(settings, step, files, draw)
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
        for group in optimiser.param_groups:
            group["lr"] = _lr(settings, step, elapsed + time.monotonic() - start)
        result = model(rgb, rates, generator)
        loss = (result["bpp"] + lambdas[rates] * result["mse"]).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
        optimiser.step()
        step += 1
        done_here += 1
        window.append(tuple(float(v.detach().mean()) for v in (loss, result["bpp"], result["mse"])))
        if step % 50 == 0 or step == settings.steps:
            mean = np.mean(window, axis=0)
            history.append(
                {
                    "step": step,
                    "loss": round(float(mean[0]), 5),
                    "bpp": round(float(mean[1]), 5),
                    "mse": round(float(mean[2]), 3),
                }
            )
            window = []
            bar.set_postfix(loss=f"{mean[0]:.3f}", bpp=f"{mean[1]:.3f}", mse=f"{mean[2]:.1f}")
        bar.update(1)
        if time.monotonic() - last_save > settings.checkpoint_minutes * 60:
            _save_checkpoint(ckpt_path, model, optimiser, step, elapsed + time.monotonic() - start, settings, history)
            last_save = time.monotonic()
    bar.close()
    elapsed += time.monotonic() - start
    _save_checkpoint(ckpt_path, model, optimiser, step, elapsed, settings, history)
    record = {
        "settings": dataclasses.asdict(settings),
        "steps_done": step,
        "minutes": round(elapsed / 60, 2),
        "finished": step >= settings.steps,
        "history": history,
    }
    if stop_after is None:
        weights = learned.save_weights(model, out / learned.WEIGHTS_FILE.name)
        record["weights"] = weights.name
        record["weights_sha256"] = learned.weights_digest(weights)
        record["weights_bytes"] = weights.stat().st_size
        write_json(out / TRAIN_RECORD_NAME, record)
    return record


# -- the report -------------------------------------------------------------------------------
def report_images(draw: Draw, n: int, size: int = 256) -> list[np.ndarray]:
    """``n`` held-out synthetic images (a seed training never uses)."""
    return [draw(np.random.default_rng([REPORT_SEED, i]), size) for i in range(n)]


def _dct_entropy_bpp(coefficients: list[np.ndarray], quality: int, pixels: int) -> float:
    """Zeroth-order empirical entropy of the dct codec's quantised coefficients, per channel, in bits per pixel."""
    steps = dct.quantisation_steps(quality)[:, None]
    symbols = np.concatenate([np.round(c.reshape(c.shape[0], -1) / steps) for c in coefficients], axis=1)
    total = 0.0
    for row in symbols.astype(np.int64):
        _, counts = np.unique(row, return_counts=True)
        p = counts / counts.sum()
        total += float(-(counts * np.log2(p)).sum())
    return total / pixels


def codec_report(
    images: list[np.ndarray], weights: str | os.PathLike | None = None, progress: bool = True, source: str = ""
) -> dict:
    """PSNR (RGB, dB) and bpp of the learned codec per rate on ``images`` (held out), with the dct codec's."""
    path = Path(weights or learned.WEIGHTS_FILE)
    model = learned.load_model(path)
    n_images = len(images)
    pixels = sum(img.shape[0] * img.shape[1] for img in images)
    coefficients = [dct.transform(img) for img in images]
    rows = []
    for quality in tqdm(learned.QUALITIES, disable=not progress, desc="report"):
        psnr_l, bits, skipped, psnr_d = [], 0.0, [], []
        for img, coef in zip(images, coefficients):
            est = learned.estimate(img, quality, model)
            psnr_l.append(learned.psnr(img, learned.decode(est["latent"], model)))
            bits += est["bits"]
            skipped.append(est["skipped"])
            psnr_d.append(learned.psnr(img, dct.decode(dct.quantise(coef, quality))))
        rows.append(
            {
                "rate": quality,
                "learned_psnr": round(float(np.mean(psnr_l)), 2),
                "learned_bpp": round(bits / pixels, 4),
                "learned_skipped": round(float(np.mean(skipped)), 3),
                "dct_psnr": round(float(np.mean(psnr_d)), 2),
                "dct_bpp_entropy": round(_dct_entropy_bpp(coefficients, quality, pixels), 4),
            }
        )
    return {
        "weights": path.name,
        "weights_sha256": learned.weights_digest(path),
        "images": {
            "count": n_images,
            "sizes": sorted({f"{i.shape[1]}x{i.shape[0]}" for i in images}),
            "source": source,
        },
        "notes": {
            "learned_psnr": "mean PSNR (RGB, dB) of decode(encode(image, rate)), float16 latent",
            "learned_bpp": "estimated bits per pixel: Gaussian-conditional cost of the coded symbols + hyperprior z",
            "learned_skipped": "share of latent samples whose residual is skipped (y_hat = mu)",
            "dct_psnr": "mean PSNR (RGB, dB) of the dct codec at the same quality",
            "dct_bpp_entropy": "dct codec has no entropy coder: zeroth-order empirical entropy of its quantised "
            "coefficients, per channel over the whole set (an estimate, not a file size)",
        },
        "rows": rows,
    }


def format_report(report: dict) -> str:
    head = f"{'rate':>5} {'learned PSNR':>13} {'learned bpp':>12} {'skipped':>8} {'dct PSNR':>9} {'dct bpp*':>9}"
    lines = [head]
    for r in report["rows"]:
        lines.append(
            f"{r['rate']:>5} {r['learned_psnr']:>13.2f} {r['learned_bpp']:>12.4f} "
            f"{r['learned_skipped']:>8.3f} {r['dct_psnr']:>9.2f} {r['dct_bpp_entropy']:>9.4f}"
        )
    imgs = report["images"]
    lines.append(
        f"({imgs['count']} held-out images at {', '.join(imgs['sizes'])} px; "
        "dct bpp*: empirical entropy of the quantised coefficients, no entropy coder)"
    )
    return "\n".join(lines)
