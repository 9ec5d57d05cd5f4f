"""The accuracy sections: the synthetic data, the trained variants, the bridge comparison at equal
budget (``accuracy``) and AP at every rate (``rates``)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from latentface.checkpoint import RunDir, load_checkpoint
from latentface.data.dataset import NestedLatentWiderFaceDataset, load_latent
from latentface.data.images import RGBWiderFaceDataset
from latentface.data.labels import read_labels
from latentface.data.layout import (
    CODEC_FILE,
    LABELS_FILE,
    LANDMARKS_FILE,
    dataset_codec,
    latent_path,
    read_codec_description,
)
from latentface.data.synth import generate_dataset
from latentface.inference.detector import Detector, predict_dataset
from latentface.metrics.report import evaluation_report
from latentface.model import LatentRetinaFace, build_model
from latentface.model.bridge import BRIDGES
from latentface.tools.bench.measure import macs, model_input, parameters
from latentface.tools.bench.profiles import Profile
from latentface.training import TrainConfig, TrainingError, train
from latentface.util.io import read_json, write_image, write_json

#: Files a bench run directory holds beside the training run's own.
DATA_MARKER = "bench_data.json"
RUN_CONFIG = "bench_config.json"
RUN_WALL = "bench_wall_s.txt"
FINAL_WEIGHTS = RunDir.FINAL


def prepare_data(root: Path, profile: Profile, log=print, codec: str = "dct") -> Path:
    """The synthetic set of this profile with latents of ``codec`` (generated once; reused while its
    description matches)."""
    wanted = {
        "size": profile.data_size,
        "rates": sorted(set(profile.rates) | {profile.main_rate}),
        "seed": profile.seed,
        "n_train": profile.n_train,
        "n_val": profile.n_val,
    }
    if codec != "dct":  # a dct set's description stays as it was, so stored sets are reused
        wanted["codec"] = codec
    marker = root / DATA_MARKER
    if marker.is_file() and read_json(marker, "bench data description") == wanted and (root / CODEC_FILE).is_file():
        return root
    log(
        f"data: generating {profile.n_train}+{profile.n_val} synthetic images at {profile.data_size}px "
        f"({codec} latents) under {root}"
    )
    generate_dataset(
        root,
        profile.n_train,
        profile.n_val,
        size=profile.data_size,
        rates=wanted["rates"],
        seed=profile.seed,
        progress=False,
        overwrite=True,
        codec=codec,
    )
    for rate in wanted["rates"]:
        shutil.rmtree(root.parent / f"{root.name}-decoded{rate}", ignore_errors=True)
    write_json(marker, wanted)
    return root


def decoded_root(root: Path, rate: int) -> Path:
    """A copy of ``root``'s labels with ``images/`` holding each latent at ``rate`` decoded with the codec
    ``root/codec.json`` names (``dct`` or ``learned``): the RGB baseline then sees exactly the information
    the latent model sees."""
    out = root.parent / f"{root.name}-decoded{rate}"
    codec = dataset_codec(root)  # the codec that wrote the latents, its weights checked
    if codec is None:
        raise ValueError(
            f"{root}: no {CODEC_FILE}, so the codec that decodes its latents for the RGB baseline is unknown"
        )
    source = read_codec_description(root)
    done = out / "done"  # holds the codec.json the images were decoded from: reused only while it matches
    if done.is_file() and done.read_text() == json.dumps(source, sort_keys=True):
        return out
    shutil.rmtree(out, ignore_errors=True)
    for split in ("train", "val"):
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        for name in (LABELS_FILE, LANDMARKS_FILE):
            if (root / split / name).is_file():
                shutil.copyfile(root / split / name, out / split / name)
        for key in read_labels(root / split / LABELS_FILE):
            latent = load_latent(latent_path(root, split, key, rate)).numpy()
            write_image(out / split / "images" / f"{key}.png", codec.decode(latent))
    done.write_text(json.dumps(source, sort_keys=True))
    return out


@dataclass(frozen=True)
class Variant:
    """One trained model of the accuracy study: what it is and what differs from the common schedule."""

    name: str
    description: str
    input: str = "latent"
    bridge: str | None = None
    preset: str | None = None
    latent_type: str | None = None  # None: the profile's main rate
    train_rate: int | None = None  # RGB: which rate's decoded images
    overrides: dict = field(default_factory=dict)
    keep_architecture: bool = False  # True: the preset's own backbone and width, not the profile's


def accuracy_variants(profile: Profile) -> list[Variant]:
    """Every model of the study: the RGB baseline, one latent model per bridge, the profile's extras, mixed rates."""
    rate = profile.main_rate
    variants = [Variant("rgb", f"RGB baseline on images decoded from rate {rate}", input="rgb", train_rate=rate)]
    for bridge in profile.bridges:
        if bridge in BRIDGES:
            variants.append(Variant(f"latent_{bridge}", f"latent, {bridge} bridge", bridge=bridge))
    default_bridge = LatentRetinaFace.PRESETS["default"]["bridge"]
    extras = {
        "fast": Variant("fast", "fast preset (its own backbone and width)", preset="fast", keep_architecture=True),
        "six": Variant(
            f"latent_{default_bridge}_six",
            f"latent, {default_bridge} bridge, 'six' anchors (base 8, two ratios)",
            bridge=default_bridge,
            overrides={"anchors": "six"},
        ),
        "rgb_six": Variant(
            "rgb_six",
            f"RGB baseline on images decoded from rate {rate}, 'six' anchors",
            input="rgb",
            train_rate=rate,
            overrides={"anchors": "six"},
        ),
        "2x": Variant(
            f"latent_{default_bridge}_2x",
            f"latent, {default_bridge} bridge, twice the epochs",
            bridge=default_bridge,
            overrides={"epochs": 2 * profile.epochs},
        ),
    }
    variants += [extras[name] for name in profile.extra_variants]
    variants.append(
        Variant(
            "latent_mixed",
            "latent, trained on all rates (one drawn per sample)",
            bridge=default_bridge,
            latent_type="mixed",
        )
    )
    return variants


def train_variant(
    variant: Variant,
    profile: Profile,
    data_root: Path,
    runs: Path,
    device: torch.device,
    log=print,
    reuse_only: bool = False,
) -> Path | None:
    """Train one variant with the profile's common schedule (or reuse its finished run of the same config).

    ``reuse_only``: never train; None when the variant has no finished run.
    """
    rgb = variant.input == "rgb"
    settings = dict(
        dataset_root=str(decoded_root(data_root, variant.train_rate or profile.main_rate) if rgb else data_root),
        input=variant.input,
        latent_type=variant.latent_type or f"latent_{profile.main_rate}.npy",
        preset=variant.preset,
        bridge=variant.bridge,
        model=None if variant.keep_architecture else profile.backbone,
        out_channels=None if variant.keep_architecture else profile.out_channels,
        epochs=profile.epochs,
        batch_size=profile.batch_size,
        lr=profile.lr,
        seed=profile.seed,
        workers=0 if profile.name != "full" else 4,
        device=device.type,
        no_wandb=True,
        progress=False,
        val_every=10**6,
        out=str(runs),
        name=variant.name,
    )
    settings.update(variant.overrides)
    config = TrainConfig(**settings)
    run_dir = runs / variant.name
    finished = (run_dir / FINAL_WEIGHTS).is_file() and (run_dir / RUN_CONFIG).is_file()
    if finished and read_json(run_dir / RUN_CONFIG, "bench run config") == config.to_dict():
        return run_dir
    if reuse_only:
        return None
    shutil.rmtree(run_dir, ignore_errors=True)
    log(f"accuracy: training {variant.name} ({variant.description})")
    start = time.perf_counter()
    train(config)
    if not (run_dir / FINAL_WEIGHTS).is_file():  # stopped by a signal: not a finished run of this budget
        raise TrainingError(f"{run_dir} stopped before its last step; run the bench again to train it from the start")
    write_json(run_dir / RUN_CONFIG, config.to_dict())
    (run_dir / RUN_WALL).write_text(f"{time.perf_counter() - start:.1f}")
    return run_dir


def evaluate_run(run_dir: Path, data_root: Path, rate: int, device: torch.device) -> dict:
    """AP@0.5, AP by face size and COCO mAP of a run's final weights on the validation split at ``rate``."""
    detector = Detector.from_checkpoint(run_dir / FINAL_WEIGHTS, device=device)
    if detector.model.config["kind"] == "rgb":
        dataset = RGBWiderFaceDataset(decoded_root(data_root, rate), "val")
    else:
        dataset = NestedLatentWiderFaceDataset(data_root, "val", f"latent_{rate}.npy")
    predictions, _ = predict_dataset(detector, dataset, batch_size=8, progress=False)
    report = evaluation_report(predictions, dataset.records)
    return {
        "ap": report["ap"],
        "ap_by_size": report["ap_by_size"],
        "coco_map": report["coco"]["mAP"],
        "faces": report["faces"],
    }


def _model_of(config: dict) -> nn.Module:
    return build_model(config)


def run_summary(run_dir: Path) -> dict:
    """Steps, epochs, model config, last training loss, wall time and parameters of a finished run."""
    payload = load_checkpoint(run_dir / FINAL_WEIGHTS)
    history = payload.get("metrics") or [{}]
    wall = run_dir / RUN_WALL
    return {
        "steps": payload.get("step"),
        "epochs": history[-1].get("epoch"),
        "model": payload["config"],
        "train_loss": history[-1].get("train_total"),
        "wall_s": float(wall.read_text()) if wall.is_file() else None,
        "params": parameters(_model_of(payload["config"])),
    }


def bridge_comparison(
    profile: Profile,
    data_root: Path,
    runs: Path,
    device: torch.device,
    variants: Sequence[Variant] | None = None,
    log=print,
    reuse_only: bool = False,
) -> dict[str, dict]:
    """Train every variant on the same schedule and seed, evaluate each at the main rate."""
    results = {}
    for variant in variants if variants is not None else accuracy_variants(profile):
        if variant.latent_type == "mixed":
            continue  # part of the rates section
        run_dir = train_variant(variant, profile, data_root, runs, device, log, reuse_only)
        if run_dir is None:
            log(f"accuracy: {variant.name} has no finished run; left out (--reuse_only)")
            continue
        result = evaluate_run(run_dir, data_root, profile.main_rate, device)
        result.update(run_summary(run_dir), description=variant.description)
        model = _model_of(result["model"])
        result["macs_640"] = macs(model.eval(), model_input(model, 640, 1, torch.device("cpu")))
        results[variant.name] = result
        log(f"accuracy: {variant.name} AP@0.5 {result['ap']:.3f}")
    return results


def rates_section(
    profile: Profile, data_root: Path, runs: Path, device: torch.device, log=print, reuse_only: bool = False
) -> dict:
    """AP at every rate of: latent trained at the main rate, latent trained on mixed rates, RGB on decoded images."""
    default_bridge = LatentRetinaFace.PRESETS["default"]["bridge"]
    variants = {v.name: v for v in accuracy_variants(profile)}
    trained = {
        f"latent, trained at rate {profile.main_rate}": variants[f"latent_{default_bridge}"],
        "latent, trained on mixed rates": variants["latent_mixed"],
        f"RGB, trained on decoded rate {profile.main_rate}": variants["rgb"],
    }
    out: dict[str, dict] = {}
    for label, variant in trained.items():
        run_dir = train_variant(variant, profile, data_root, runs, device, log, reuse_only)
        if run_dir is None:
            continue
        out[label] = {str(rate): evaluate_run(run_dir, data_root, rate, device)["ap"] for rate in profile.rates}
        log(f"rates: {label}: " + ", ".join(f"{r}: {ap:.3f}" for r, ap in out[label].items()))
    return {"curves": out, "rates": list(profile.rates)}
