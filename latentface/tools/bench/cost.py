"""The cost sections: inference cost of every model (``cost``) and one training step, latent vs RGB (``train``)."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from latentface.data.dataset import NestedLatentWiderFaceDataset, measure_loading_throughput
from latentface.data.images import RGBWiderFaceDataset
from latentface.loss import MultiBoxLoss
from latentface.model import LatentRetinaFace, RGBRetinaFace
from latentface.model.bridge import BRIDGES
from latentface.tools.bench.accuracy import decoded_root
from latentface.tools.bench.measure import (
    activation_peak,
    inference_call,
    latency,
    model_cost,
    model_input,
    parameters,
    saved_for_backward,
)
from latentface.tools.bench.profiles import BASELINE, Profile


def cost_models(profile: Profile) -> dict[str, tuple[str, Callable[[], nn.Module]]]:
    """Row name -> (description, constructor) of every model in the cost table."""
    default_bridge = LatentRetinaFace.PRESETS["default"]["bridge"]
    rows: dict[str, tuple[str, Callable[[], nn.Module]]] = {
        BASELINE: ("RGB RetinaFace-R50 (baseline: same FPN P2-P6, SSH, heads)", lambda: RGBRetinaFace("resnet50")),
        "rgb_r50_3level": (
            "RGB RetinaFace-R50, P3-P5, 2 anchors (public configuration)",
            lambda: RGBRetinaFace("resnet50", anchors="three_level"),
        ),
        "latent_r50_seed": ("latent R50, seed preset (bilinear bridge)", lambda: LatentRetinaFace.preset("seed")),
        "latent_r50_default": (
            f"latent R50, default preset ({default_bridge} bridge)",
            lambda: LatentRetinaFace.preset("default"),
        ),
    }
    for bridge in BRIDGES:
        if bridge not in ("bilinear", default_bridge):
            rows[f"latent_r50_{bridge}"] = (
                f"latent R50, {bridge} bridge",
                lambda b=bridge: LatentRetinaFace("resnet50", bridge=b),
            )
    for depth in ("18", "34"):
        rows[f"rgb_r{depth}"] = (f"RGB RetinaFace-R{depth} (same neck)", lambda d=depth: RGBRetinaFace(f"resnet{d}"))
        rows[f"latent_r{depth}"] = (
            f"latent R{depth}, {default_bridge} bridge",
            lambda d=depth: LatentRetinaFace.preset("default", backbone=f"resnet{d}"),
        )
    fast = LatentRetinaFace.PRESETS["fast"]
    rows["fast"] = (
        f"fast preset (R{fast['backbone'][6:]}, {fast.get('blocks') or 'all'} block(s)/stage, "
        f"{fast['out_channels']}-wide neck{', light P2' if fast.get('light_p2') else ''}, "
        f"{fast['bridge']} bridge)",
        lambda: LatentRetinaFace.preset("fast"),
    )
    return rows


def cost_section(profile: Profile, device: torch.device, log=print) -> dict:
    """Parameters, MACs, activation memory and latency of every cost row, in one interleaved run."""
    rows = cost_models(profile)
    models = {name: build().eval() for name, (_, build) in rows.items()}
    out: dict[str, dict] = {name: {"description": rows[name][0]} for name in rows}
    for name, model in models.items():
        log(f"cost: counting {name}")
        same = profile.measure_image == profile.image
        out[name].update(model_cost(model, model_input(model, profile.image, 1, torch.device("cpu")), same))
        if not same:
            x = model_input(model, profile.measure_image, 1, torch.device("cpu"))
            out[name]["activation_bytes"] = activation_peak(model, x)
    for batch in profile.batches:
        wanted = profile.latency_rows if batch == 1 else profile.big_batch_rows
        names = [n for n in models if wanted is None or n in wanted]
        if not names:
            continue
        for name in names:
            models[name].to(device)
        size = profile.measure_image
        cases = {n: inference_call(models[n], model_input(models[n], size, batch, device)) for n in names}
        repeats = profile.repeats if batch == 1 else profile.big_batch_repeats
        log(f"cost: {device.type} latency at batch {batch}, {repeats} repeats, {len(names)} models in turns")
        times = latency(cases, repeats, profile.warmup, device)
        if device.type == "cuda":
            amp = {n: inference_call(models[n], model_input(models[n], size, batch, device), amp=True) for n in names}
            amp_times = latency(amp, repeats, profile.warmup, device)
            for n in names:
                out[n][f"cuda_amp_latency_b{batch}"] = statistics.median(amp_times[n])
                torch.cuda.reset_peak_memory_stats(device)
                amp[n]()
                out[n][f"cuda_peak_bytes_b{batch}"] = torch.cuda.max_memory_allocated(device)
        for n in names:
            out[n][f"latency_b{batch}"] = statistics.median(times[n])
            out[n][f"latency_b{batch}_all"] = times[n]
        for name in names:
            models[name].to("cpu")
    return {
        "rows": out,
        "image": profile.image,
        "measure_image": profile.measure_image,
        "batches": list(profile.batches),
        "repeats": profile.repeats,
        "device": device.type,
        "threads": torch.get_num_threads(),
    }


def train_step_cost(
    models: Mapping[str, nn.Module],
    image: int,
    batch: int,
    repeats: int = 3,
    warmup: int = 1,
    device: str | torch.device = "cpu",
) -> dict[str, dict]:
    """Seconds per SGD step (forward, MultiBoxLoss, backward, update; in turns) and bytes saved for backward."""
    device = torch.device(device)
    criterion = MultiBoxLoss()
    # Three faces per image, a few sizes: the loss does its real matching and mining work.
    boxes = torch.tensor([[0.1, 0.1, 0.2, 0.22], [0.4, 0.3, 0.6, 0.55], [0.7, 0.6, 0.74, 0.65]]) * image
    target = {
        "boxes": boxes,
        "landmarks": (boxes[:, None, :2] + boxes[:, None, 2:]).expand(-1, 5, -1) / 2,
        "has_landmarks": torch.ones(3, dtype=torch.bool),
        "key": "synthetic",
    }
    targets = [dict(target) for _ in range(batch)]
    steps, saved = {}, {}
    for name, model in models.items():
        model.to(device).train()
        x = model_input(model, image, batch, device)
        anchors = model.anchors(x)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        loss_fn = lambda out, a=anchors: criterion(out, targets, a)["total"]  # noqa: E731

        def step(model=model, x=x, optimizer=optimizer, loss_fn=loss_fn):
            loss = loss_fn(model(x))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        steps[name] = step
        saved[name] = saved_for_backward(model, x, loss_fn)
    times = latency(steps, repeats, warmup, device)
    out = {}
    for name, model in models.items():
        weights = parameters(model) * 4
        out[name] = {
            "step_s": statistics.median(times[name]),
            "step_s_all": times[name],
            "saved_bytes": saved[name],
            "state_bytes": 3 * weights,  # weights, gradients, momentum
            "images_per_s": batch / statistics.median(times[name]),
        }
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            steps[name]()
            out[name]["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device)
        model.to("cpu")
    return out


def train_section(profile: Profile, device: torch.device, data_root: Path, log=print) -> dict:
    """Training step cost, latent (default preset's bridge) vs RGB at the same backbone and batch; loading speed."""
    bb = profile.train_backbone
    out_ch = 256 if bb == "resnet50" else 64
    models = {
        "rgb": RGBRetinaFace(bb, out_channels=out_ch),
        "latent": LatentRetinaFace.preset("default", backbone=bb, out_channels=out_ch),
    }
    log(f"train: {bb} step cost at {profile.train_image}x{profile.train_image}, batch {profile.train_batch}")
    steps = train_step_cost(models, profile.train_image, profile.train_batch, profile.train_repeats, 1, device)
    log("train: data loading throughput")
    loading = {}
    workers = min(2, os.cpu_count() or 1) if profile.name != "quick" else 0
    latents = NestedLatentWiderFaceDataset(data_root, "train", f"latent_{profile.main_rate}.npy", dtype="auto")
    rgb = RGBWiderFaceDataset(decoded_root(data_root, profile.main_rate), "train")
    for name, dataset in (("latent", latents), ("rgb", rgb)):
        result = measure_loading_throughput(
            dataset, workers=workers, batch_size=profile.loading_batch, seconds=profile.loading_seconds
        )
        loading[name] = {
            "per_s": result["latents_per_s"],
            "workers": workers,
            "image": dataset.image_size[0],
            "batch": profile.loading_batch,
        }
    return {
        "backbone": bb,
        "out_channels": out_ch,
        "image": profile.train_image,
        "batch": profile.train_batch,
        "repeats": profile.train_repeats,
        "steps": steps,
        "loading": loading,
    }
